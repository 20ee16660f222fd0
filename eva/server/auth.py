"""API keys: parsing ``EVA_API_KEYS``, reading a request's key, and finding its owner.

A key is a bearer secret: ``Authorization: Bearer <key>`` on HTTP and on the WebSocket
handshake, or a ``token`` query parameter on the WebSocket (browsers cannot set headers
there). The owner of the key is the user the request acts for (see identity.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import HTTPConnection

# Owners become user ids, which end up in SQL parameters and logs: short and plain.
USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# A guessable key is no key: 16 characters of a random token are well past guessing.
MIN_KEY_CHARS = 16
# Keys travel in headers and query strings: printable ASCII without spaces or separators.
_KEY_PATTERN = re.compile(r"[!-~]+")


def parse_api_keys(pairs: list[str]) -> dict[str, str]:
    """``["owner:key", ...]`` as {key: owner}; a ValueError naming the bad pair (by its
    position and owner, never its key) for a malformed pair or a key given twice."""
    owners: dict[str, str] = {}
    for position, pair in enumerate(pairs, start=1):
        owner, colon, key = pair.strip().partition(":")
        where = f"EVA_API_KEYS pair {position}"
        if not colon or not owner or not key:
            raise ValueError(f"{where} is not of the form owner:key")
        if not USER_ID_PATTERN.fullmatch(owner) or ":" in owner:
            raise ValueError(f"{where}: the owner must be 1-64 letters, digits or any of _.-")
        if not _KEY_PATTERN.fullmatch(key) or "," in key:
            raise ValueError(f"{where} ({owner}): the key must be printable ASCII, no spaces")
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"{where} ({owner}): the key is shorter than {MIN_KEY_CHARS}")
        if key in owners:
            raise ValueError(f"{where} ({owner}) repeats the key of {owners[key]}")
        owners[key] = owner
    return owners


class ApiKeys:
    """The configured keys; ``owner`` compares in constant time against every one of them,
    so the time taken says nothing about which key, or how much of one, was right."""

    def __init__(self, owners: dict[str, str]) -> None:
        # Digests, so that every comparison is of equal length: compare_digest returns at
        # once on a length mismatch, which would tell a guesser the key's length.
        self._keys = [(_digest(key), owner) for key, owner in owners.items()]

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def owner(self, presented: str | None) -> str | None:
        if not presented:
            return None
        candidate = _digest(presented)
        found: str | None = None
        for key, owner in self._keys:
            if hmac.compare_digest(candidate, key):
                found = owner
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


# How a browser, which cannot set headers on a WebSocket, hands OpenAI's Realtime API its
# client secret: as one of the subprotocols it offers.
SUBPROTOCOL_KEY_PREFIX = "openai-insecure-api-key."
REALTIME_PATH = "/v1/realtime"


def offered_subprotocols(connection: HTTPConnection) -> list[str]:
    header = connection.headers.get("sec-websocket-protocol", "")
    return [part.strip() for part in header.split(",") if part.strip()]


def presented_key(connection: HTTPConnection) -> str | None:
    """The key this request or WebSocket handshake carries, if any."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if connection.scope["type"] == "websocket":
        for offered in offered_subprotocols(connection):
            if offered.startswith(SUBPROTOCOL_KEY_PREFIX):
                return offered.removeprefix(SUBPROTOCOL_KEY_PREFIX) or None
        return connection.query_params.get("token") or None
    return None


def key_owner(connection: HTTPConnection) -> str | None:
    """The owner of the valid key this connection carries; None without one. On the
    Realtime socket a client secret minted by a key's owner counts as that key."""
    keys: ApiKeys = connection.app.state.api_keys
    presented = presented_key(connection)
    owner = keys.owner(presented)
    if owner is None and presented and _is_realtime(connection):
        secrets: ClientSecrets = connection.app.state.client_secrets
        owner = secrets.owner(presented)
    return owner


def _is_realtime(connection: HTTPConnection) -> bool:
    return connection.scope["type"] == "websocket" and connection.url.path == REALTIME_PATH


class ClientSecrets:
    """Short-lived secrets for browsers (OpenAI's client secrets): a key's owner mints
    one, a page uses it for one Realtime connection's handshake without holding the key."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._secrets: dict[bytes, tuple[str | None, float, dict[str, Any]]] = {}

    def mint(self, owner: str | None, ttl_s: float, session: dict[str, Any]) -> tuple[str, float]:
        """A new secret of ``owner`` (None where Eva runs without keys: it then opens
        nothing that was closed) and when it expires."""
        self._forget_expired()
        if len(self._secrets) >= MAX_CLIENT_SECRETS:
            raise OverflowError("too many live client secrets")
        value = f"ek_{secrets.token_urlsafe(24)}"
        expires_at = self._clock() + ttl_s
        self._secrets[_digest(value)] = (owner, expires_at, session)
        return value, expires_at

    def owner(self, presented: str) -> str | None:
        found = self._secrets.get(_digest(presented))
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    def session(self, presented: str) -> dict[str, Any]:
        """The session configuration minted with the secret ({} for a key)."""
        found = self._secrets.get(_digest(presented))
        return dict(found[2]) if found is not None else {}

    def _forget_expired(self) -> None:
        now = self._clock()
        for digest in [d for d, (_, expires, _) in self._secrets.items() if expires <= now]:
            del self._secrets[digest]


# Client secrets alive at once: each is a few hundred bytes; a key's owner minting in a
# loop is bounded here (and by the rate limit).
MAX_CLIENT_SECRETS = 10_000
