"""One error shape for every client: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from eva.audio import AudioDecodeError, AudioTooLongError
from eva.engines.base import EngineError
from eva.engines.voices import UnknownVoiceError
from eva.store.sqlite import UnknownSessionError

log = logging.getLogger("eva.server")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(
    status: int, code: str, message: str, request_id: str | None = None
) -> JSONResponse:
    error: dict[str, str] = {"code": code, "message": message}
    if request_id is not None:
        error["request_id"] = request_id  # what to quote when reporting a problem
    return JSONResponse({"error": error}, status_code=status)


def _rid(request: Request) -> str | None:
    value = request.scope.get("eva.request_id")  # set by logs.RequestLogMiddleware
    return value if isinstance(value, str) else None


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return "invalid_json", "the request body is not valid JSON"
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "invalid_request", "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, _rid(request))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _validation_message(exc)
        return error_response(400 if code == "invalid_json" else 422, code, message, _rid(request))

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
        return error_response(415, "invalid_audio", str(exc), _rid(request))

    @app.exception_handler(EngineError)
    async def _engine(request: Request, exc: EngineError) -> JSONResponse:
        log.warning("backend failure on %s: %s", request.url.path, exc)
        request.app.state.stats.count_error(request.url.path)
        return error_response(503, "backend_unavailable", str(exc), _rid(request))
