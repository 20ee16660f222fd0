"""What a route needs from the app, and the checks every route shares."""

from __future__ import annotations

from fastapi import Request, UploadFile

from eva.conversation.service import Conversation
from eva.server.client_text import text_problem
from eva.server.errors import ApiError


def conversation(request: Request) -> Conversation:
    """The conversation service, or a 503 while the models are still loading."""
    service: Conversation | None = request.app.state.conversation
    if service is None:
        failure = request.app.state.load_error
        if failure:
            raise ApiError(503, "backend_unavailable", f"models failed to load: {failure}")
        raise ApiError(503, "not_ready", "Eva is still loading her models; retry shortly")
    request.app.state.stats.count_request(request.url.path)
    return service


def checked_text(text: str, limit: int, field: str = "message") -> str:
    stripped = text.strip()
    if not stripped:
        raise ApiError(400, f"empty_{field}", f"the {field} is empty")
    problem = text_problem(stripped)
    if problem is not None:
        raise ApiError(400, f"invalid_{field}", f"the {field} {problem}")
    if len(stripped) > limit:
        raise ApiError(
            413, f"{field}_too_long", f"the {field} has {len(stripped)} characters; at most {limit}"
        )
    return stripped


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes, refusing more than ``limit`` without reading it all."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "upload_too_large", f"the upload is over {limit} bytes")
    if not data:
        raise ApiError(400, "empty_upload", "the uploaded file is empty")
    return data


def checked_message(service: Conversation, text: str) -> str:
    """A typed turn as the model can take it: ``checked_text``, and short enough in tokens."""
    text = checked_text(text, service.settings.max_message_chars)
    problem = service.too_long_for_model(text)
    if problem is not None:
        raise ApiError(413, "message_too_long", problem)
    return text
