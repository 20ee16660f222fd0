"""Which Host a request may name and which browser pages may act on Eva: no I/O here.

DNS rebinding: a page on ``evil.example`` makes its own name resolve to 127.0.0.1, then
talks to Eva with ``Host: evil.example`` and ``Origin: http://evil.example``; comparing the
Origin with the Host lets it in. So the Host itself is checked against an allowlist (the
loopback names, EVA_HOST, EVA_ALLOWED_HOSTS), and a browser's Origin must be one of those
hosts or listed in EVA_ALLOWED_ORIGINS / EVA_CORS_ORIGINS, never "whatever Host says".
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
# Methods that change something: a browser sends them cross-site without asking first when
# they look like a form (multipart, urlencoded, text/plain), so the Origin must be checked.
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_name(value: str) -> str:
    """``"[::1]:8000"`` -> ``"::1"``, ``"Example.org:80"`` -> ``"example.org"``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class OriginPolicy:
    hosts: frozenset[str]
    any_host: bool
    origins: frozenset[str]

    @classmethod
    def of(
        cls, bind_host: str, allowed_hosts: list[str], allowed_origins: list[str]
    ) -> OriginPolicy:
        hosts = set(LOOPBACK_HOSTS) | {host_name(h) for h in allowed_hosts if h != "*"}
        if bind_host not in _WILDCARD_BINDS:
            hosts.add(host_name(bind_host))
        origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        return cls(frozenset(hosts), "*" in allowed_hosts, origins)

    def host_allowed(self, headers: Headers) -> bool:
        """A request without a Host (HTTP/1.0) names no other site and is let through."""
        host = headers.get("host")
        return host is None or self.any_host or host_name(host) in self.hosts

    def origin_allowed(self, origin: str) -> bool:
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        if origin.rstrip("/").lower() in self.origins:
            return True
        return host_name(parts.netloc) in self.hosts

    def browser_allowed(self, headers: Headers) -> bool:
        """A request a browser made on behalf of a page Eva does not trust is refused;
        programs send neither Origin nor Sec-Fetch-Site and are let through."""
        origin = headers.get("origin")
        if origin is not None:  # "null": a sandboxed page or a redirect, trusted by no one
            return origin != "null" and self.origin_allowed(origin)
        return headers.get("sec-fetch-site", "none") in ("same-origin", "none")
