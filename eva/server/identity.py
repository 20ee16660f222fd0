"""Who is asking: the user a request or WebSocket acts for.

Every route and socket resolves its user here and nowhere else, so that sessions (and the
memories of issue 5) are scoped the same way everywhere.

With API keys configured, the user is the owner of the request's key, and a ``user_id`` the
client sends is ignored: it can neither widen nor change what the key gives access to.
Without keys the client names itself with a ``user_id`` (the browser keeps none; other
clients may send one); that is a label, not a secret.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from eva.server.auth import USER_ID_PATTERN, key_owner
from eva.server.errors import ApiError

__all__ = ["USER_ID_PATTERN", "resolve_user"]


def resolve_user(connection: HTTPConnection, claimed: str | None) -> str | None:
    """The user this HTTP request or WebSocket acts for; None for an anonymous one.

    ``claimed`` is the ``user_id`` the client sent (body or query parameter), if any.
    """
    if connection.app.state.api_keys.required:
        owner = key_owner(connection)
        if owner is None:  # the access middleware refuses these first; never fall through
            raise ApiError(401, "unauthorized", "a valid API key is required")
        return owner
    if claimed is None or claimed == "":
        return None
    if not USER_ID_PATTERN.fullmatch(claimed):
        raise ApiError(
            400, "invalid_user_id", "user_id must be 1-64 letters, digits or any of _.:-"
        )
    return claimed
