"""One error shape for every client: ``{"error": {"code", "message", "type", "param"}}``.

It is OpenAI's shape (``type`` and ``param`` are what its SDKs read), with Eva's ``code``s,
so an OpenAI client and Eva's own clients read the same errors. The SDKs pick their
exception class by the HTTP status alone.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from eva.audio import AudioDecodeError, AudioTooLongError
from eva.conversation.turn_gate import ServerBusyError
from eva.engines.base import EngineError
from eva.engines.voices import UnknownVoiceError
from eva.store.sqlite import UnknownSessionError

log = logging.getLogger("eva.server")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param  # the request field at fault, where there is one


# OpenAI's error types, by status.
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str | None = None,
    param: str | None = None,
) -> JSONResponse:
    error: dict[str, str | None] = {
        "code": code,
        "message": message,
        "type": error_type(status),
        "param": param,
    }
    if request_id is not None:
        error["request_id"] = request_id  # what to quote when reporting a problem
    return JSONResponse({"error": error}, status_code=status)


def _rid(request: Request) -> str | None:
    value = request.scope.get("eva.request_id")  # set by logs.RequestLogMiddleware
    return value if isinstance(value, str) else None


def _where(error: Any) -> str:
    return ".".join(str(p) for p in error.get("loc", ()) if p != "body")


def _validation_message(exc: RequestValidationError) -> tuple[str, str, str | None]:
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return "invalid_json", "the request body is not valid JSON", None
    parts = [f"{_where(e) or 'body'}: {e.get('msg', 'invalid')}" for e in errors[:5]]
    return "invalid_request", "; ".join(parts), (_where(errors[0]) or None) if errors else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, _rid(request), exc.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, param = _validation_message(exc)
        # OpenAI answers a bad parameter with 400 (its SDKs: BadRequestError); Eva's own
        # routes keep FastAPI's 422.
        openai = request.url.path.startswith("/v1/")
        status = 400 if code == "invalid_json" or openai else 422
        return error_response(status, code, message, _rid(request), param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, code, str(exc.detail), _rid(request))

    @app.exception_handler(UnknownSessionError)
    async def _session(request: Request, exc: UnknownSessionError) -> JSONResponse:
        return error_response(404, "unknown_session", f"no session {exc.args[0]!r}", _rid(request))

    @app.exception_handler(UnknownVoiceError)
    async def _voice(request: Request, exc: UnknownVoiceError) -> JSONResponse:
        return error_response(400, "unknown_voice", str(exc), _rid(request))

    @app.exception_handler(AudioTooLongError)
    async def _too_long(request: Request, exc: AudioTooLongError) -> JSONResponse:
        return error_response(413, "audio_too_long", str(exc), _rid(request))

    @app.exception_handler(AudioDecodeError)
    async def _not_audio(request: Request, exc: AudioDecodeError) -> JSONResponse:
        # OpenAI answers a file it cannot read with 400 (its SDKs: BadRequestError).
        status = 400 if request.url.path.startswith("/v1/") else 415
        return error_response(status, "invalid_audio", str(exc), _rid(request), "file")

    @app.exception_handler(ServerBusyError)
    async def _busy(request: Request, exc: ServerBusyError) -> JSONResponse:
        response = error_response(503, "busy", str(exc), _rid(request))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(EngineError)
    async def _engine(request: Request, exc: EngineError) -> JSONResponse:
        log.warning("backend failure on %s: %s", request.url.path, exc)
        request.app.state.stats.count_error(request.url.path)
        return error_response(503, "backend_unavailable", str(exc), _rid(request))
