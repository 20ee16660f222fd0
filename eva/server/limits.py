"""Limits on how much one client can ask of Eva: requests per minute, concurrent sessions.

In memory, for one process: Eva serves from one process, and the limits protect the two CPU
cores of that process. Memory is bounded: a fixed number of clients is tracked, each with at
most ``limit`` timestamps.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from eva.config import Settings
from eva.server.auth import key_owner

# The window of a "per minute" limit.
WINDOW_S = 60.0
# Clients tracked at once: enough for every address a small deployment sees in a minute;
# past it the least recently seen client is forgotten (and starts afresh), so a flood of
# spoofed addresses costs bounded memory.
MAX_TRACKED_CLIENTS = 10_000


class SlidingWindowLimiter:
    """At most ``limit`` hits per client in any ``window_s`` seconds (a sliding log)."""

    def __init__(
        self,
        limit: int,
        window_s: float = WINDOW_S,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, client: str) -> float | None:
        """Count one hit; None if allowed, else the seconds until one would be."""
        if self.limit <= 0:
            return None
        now = self._clock()
        hits = self._hits.get(client)
        if hits is None:
            hits = deque(maxlen=self.limit)
            self._hits[client] = hits
            while len(self._hits) > self.max_clients:
                self._hits.popitem(last=False)
        self._hits.move_to_end(client)
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return hits[0] + self.window_s - now
        hits.append(now)
        return None

    def remaining(self, client: str) -> tuple[int, float]:
        """Hits left to ``client`` now, and the seconds until its budget is whole again."""
        now = self._clock()
        recent = [t for t in self._hits.get(client, ()) if t > now - self.window_s]
        reset = recent[-1] + self.window_s - now if recent else 0.0
        return max(0, self.limit - len(recent)), reset

    def __len__(self) -> int:
        return len(self._hits)


@dataclass
class RateLimits:
    per_key: SlidingWindowLimiter
    per_address: SlidingWindowLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            SlidingWindowLimiter(settings.rate_limit_per_key),
            SlidingWindowLimiter(settings.rate_limit_per_address),
        )

    def hit(self, connection: HTTPConnection) -> int | None:
        """Count one request or typed turn against the key's budget, or the address's when
        there is no valid key; None if allowed, else the whole seconds to wait (for
        ``Retry-After``). A keyed user never shares a budget with strangers at the same
        address (a NAT, a proxy, anyone who can reach the port)."""
        owner = key_owner(connection)
        if owner is not None:
            wait = self.per_key.hit(owner)
        else:
            wait = self.per_address.hit(client_address(connection))
        return None if wait is None else max(1, math.ceil(wait))


def budget(connection: HTTPConnection) -> tuple[int, int, float]:
    """The connection's rate limit: its size, what is left, and the seconds until whole."""
    limits: RateLimits = connection.app.state.rate_limits
    owner = key_owner(connection)
    limiter = limits.per_key if owner is not None else limits.per_address
    left, reset = limiter.remaining(owner if owner is not None else client_address(connection))
    return limiter.limit, left, reset


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


def rate_limited(connection: HTTPConnection) -> int | None:
    """Count a typed turn on a WebSocket; the seconds to wait if it is over the limit."""
    limits: RateLimits = connection.app.state.rate_limits
    return limits.hit(connection)


@dataclass
class SessionSlots:
    """Concurrent WebSocket sessions: in total, per user, and per address for sessions
    without a key (whose user_id anyone can invent)."""

    total_limit: int
    per_user_limit: int
    anonymous_per_address_limit: int = 0  # 0: no cap
    total: int = 0
    per_user: dict[str, int] = field(default_factory=dict)
    anonymous_per_address: dict[str, int] = field(default_factory=dict)

    def acquire(self, user: str | None, anonymous_address: str | None = None) -> str | None:
        """Take a slot; None if granted, else why not. ``anonymous_address``: the client's
        address when it has no key."""
        if self.total >= self.total_limit:
            return f"Eva already serves {self.total_limit} sessions; try again later"
        if user is not None and self.per_user.get(user, 0) >= self.per_user_limit:
            return f"this user already has {self.per_user_limit} open sessions"
        limit = self.anonymous_per_address_limit
        taken = self.anonymous_per_address.get(anonymous_address or "", 0)
        if anonymous_address is not None and 0 < limit <= taken:
            return f"this address already has {limit} sessions without a key"
        self.total += 1
        _add(self.per_user, user, 1)
        if limit > 0:
            _add(self.anonymous_per_address, anonymous_address, 1)
        return None

    def release(self, user: str | None, anonymous_address: str | None = None) -> None:
        self.total -= 1
        _add(self.per_user, user, -1)
        if self.anonymous_per_address_limit > 0:
            _add(self.anonymous_per_address, anonymous_address, -1)


def _add(counts: dict[str, int], name: str | None, step: int) -> None:
    if name is None:
        return
    left = counts.get(name, 0) + step
    if left > 0:
        counts[name] = left
    else:
        counts.pop(name, None)
