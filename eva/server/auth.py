"""API keys: parsing ``EVA_API_KEYS``, reading a request's key, and finding its owner.

A key is a bearer secret: ``Authorization: Bearer <key>`` on HTTP and on the WebSocket
handshake, or a ``token`` query parameter on the WebSocket (browsers cannot set headers
there). The owner of the key is the user the request acts for (see identity.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re

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


def presented_key(connection: HTTPConnection) -> str | None:
    """The key this request or WebSocket handshake carries, if any."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if connection.scope["type"] == "websocket":
        return connection.query_params.get("token") or None
    return None


def key_owner(connection: HTTPConnection) -> str | None:
    """The owner of the valid key this connection carries; None without one."""
    keys: ApiKeys = connection.app.state.api_keys
    return keys.owner(presented_key(connection))
