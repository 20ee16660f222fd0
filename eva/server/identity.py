"""Who is asking: the user a request or WebSocket acts for.

Every route and socket resolves its user here and nowhere else, so that sessions (and the
memories of issue 5) are scoped the same way everywhere. Without API keys the client names
itself with a ``user_id`` (the browser keeps a random one in local storage); that is a label,
not a secret. The hardening work replaces the body of :func:`resolve_user` with the owner of
the request's API key when keys are configured.
"""

from __future__ import annotations

import re

from starlette.requests import HTTPConnection

from eva.server.errors import ApiError

# Client-chosen ids end up in SQL parameters and logs: keep them short and plain.
USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def resolve_user(connection: HTTPConnection, claimed: str | None) -> str | None:
    """The user this HTTP request or WebSocket acts for; None for an anonymous one.

    ``claimed`` is the ``user_id`` the client sent (body or query parameter), if any.
    """
    if claimed is None or claimed == "":
        return None
    if not USER_ID_PATTERN.fullmatch(claimed):
        raise ApiError(
            400, "invalid_user_id", "user_id must be 1-64 letters, digits or any of _.:-"
        )
    return claimed
