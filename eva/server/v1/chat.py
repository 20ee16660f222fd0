"""``POST /v1/chat/completions``: OpenAI's chat request and response, streamed or whole.

``model: "eva"`` is Eva herself: her persona, the user's memories, the session's history and
her reply bounds, and the turn is stored and remembered like any other. The session is the
one named in ``metadata.session_id``; without one, a new session is made and the earlier
turns of the request become its history (OpenAI clients resend the conversation each time).
Its id comes back in the ``X-Eva-Session-Id`` header (and ``session_id`` in a whole reply).

The language model's own id is the plain model: the messages as given, nothing stored.
What OpenAI offers that Eva does not do (several choices, tools, images, audio output,
log-probabilities, structured output) is refused with a 400, never silently ignored;
docs/openai.md has the whole table.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from eva.conversation.prompt import estimate_tokens
from eva.conversation.service import Conversation, turn_owner
from eva.conversation.turn import TextDelta, TurnDone
from eva.conversation.turn_gate import ServerBusyError
from eva.engines.base import ChatMessage, EngineError, Sampling
from eva.server.client_text import text_problem
from eva.server.deps import checked_message, conversation
from eva.server.errors import ApiError, error_type
from eva.server.identity import resolve_user
from eva.server.v1.models import Models
from eva.server.v1.sse import sse_data

router = APIRouter()
Service = Annotated[Conversation, Depends(conversation)]

SESSION_HEADER = "X-Eva-Session-Id"
# OpenAI allows up to four stop sequences.
MAX_STOP_SEQUENCES = 4
# The plain model's longest answer when the request sets none: about two minutes of
# generation for the 1.5B model on two cores (7-10 tokens/s), and a quarter of its context.
PLAIN_MAX_TOKENS = 512
# Room kept in the context for the chat template's own tokens, as for Eva's prompts.
_TEMPLATE_MARGIN_TOKENS = 64


class StreamOptions(BaseModel):
    include_usage: bool = False


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class CompletionRequest(BaseModel):
    # OpenAI's other fields (penalties, logit_bias, store, ...) are accepted and ignored,
    # as docs/openai.md lists; those Eva cannot honour are refused in ``_refuse_unsupported``.
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[MessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    n: int | None = None
    metadata: dict[str, str] | None = None


def _refuse(param: str, message: str) -> ApiError:
    return ApiError(400, "unsupported_parameter", message, param=param)


def _refuse_unsupported(body: CompletionRequest) -> None:
    extra = body.model_extra or {}
    if body.n not in (None, 1):
        raise _refuse("n", "Eva writes one reply per request: n must be 1")
    for name in ("tools", "functions"):
        if extra.get(name):
            raise _refuse(name, "tools and function calls are not supported")
    if extra.get("tool_choice") not in (None, "none"):
        raise _refuse("tool_choice", "tools and function calls are not supported")
    if "audio" in (extra.get("modalities") or []) or extra.get("audio"):
        raise _refuse("modalities", "audio output is on /v1/audio/speech and /v1/realtime")
    if extra.get("logprobs") or extra.get("top_logprobs"):
        raise _refuse("logprobs", "log-probabilities are not returned")
    response_format = extra.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise _refuse("response_format", "only text replies: response_format must be text")


def _text_of(message: MessageIn, position: int) -> str:
    """A message's text: a string, or text parts joined; any other part is refused."""
    param = f"messages.{position}.content"
    if message.role in ("tool", "function"):
        raise _refuse(f"messages.{position}.role", "tool results are not supported")
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        text = content
    else:
        texts = []
        for part in content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _refuse(param, f"only text content: a {part.get('type')!r} part was sent")
            texts.append(part["text"])
        text = "\n".join(texts)
    problem = text_problem(text)
    if problem is not None:
        raise ApiError(400, "invalid_message", f"the message {problem}", param=param)
    return text


def _sampling(body: CompletionRequest) -> Sampling:
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > MAX_STOP_SEQUENCES or not all(stops):
        raise ApiError(
            400, "invalid_stop", f"stop takes 1 to {MAX_STOP_SEQUENCES} non-empty strings", "stop"
        )
    return Sampling(body.temperature, body.top_p, body.seed, tuple(stops))


class _Completion:
    """The shapes of one completion's response, whole or in chunks."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def _base(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, text: str, finish: str, usage: dict[str, int]) -> dict[str, Any]:
        message = {"role": "assistant", "content": text, "refusal": None}
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        return {**self._base("chat.completion"), "choices": [choice], "usage": usage}

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse_data({**self._base("chat.completion.chunk"), "choices": [choice]})

    def usage_chunk(self, usage: dict[str, int]) -> bytes:
        return sse_data({**self._base("chat.completion.chunk"), "choices": [], "usage": usage})


def _usage(prompt: list[str], completion: str) -> dict[str, int]:
    """Token counts by Eva's estimate (prompt.estimate_tokens), not the model's tokenizer."""
    prompt_tokens = sum(estimate_tokens(text) for text in prompt)
    completion_tokens = estimate_tokens(completion) if completion else 0
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@router.post("/v1/chat/completions", summary="OpenAI's chat completion (model eva: Eva herself)")
async def chat_completions(
    body: CompletionRequest, service: Service, models: Models, request: Request
) -> Response:
    model = models.check("chat", body.model)
    _refuse_unsupported(body)
    sampling = _sampling(body)
    texts = [_text_of(m, i) for i, m in enumerate(body.messages)]
    limit = body.max_completion_tokens or body.max_tokens
    completion = _Completion(model)
    if model == models.companion:
        return await _companion(body, texts, limit, sampling, service, request, completion)
    return await _plain(body, texts, limit, sampling, service, completion)


async def _companion(
    body: CompletionRequest,
    texts: list[str],
    limit: int | None,
    sampling: Sampling,
    service: Conversation,
    request: Request,
    completion: _Completion,
) -> Response:
    if body.messages[-1].role != "user":
        raise ApiError(400, "invalid_messages", "the last message must be the user's", "messages")
    user_text = checked_message(service, texts[-1])
    instructions = "\n".join(
        t for m, t in zip(body.messages, texts, strict=True) if m.role in ("system", "developer")
    )
    user = resolve_user(request, body.user)
    named = (body.metadata or {}).get("session_id")
    owner = turn_owner(named, user)
    service.check_admission(owner)  # 503 busy before a session is made or a stream starts
    session = await service.open_session(named, user)
    if named is None:
        await service.seed_history(session.id, _earlier_turns(body.messages[:-1], texts[:-1]))
    headers = {SESSION_HEADER: session.id}
    turn = service.reply(
        session.id,
        user_text,
        audio=False,
        instructions=instructions,
        max_tokens=limit,
        sampling=sampling,
        owner=owner,
    )
    prompt = [instructions, user_text]
    if not body.stream:
        done: TurnDone | None = None
        async for event in turn:
            if isinstance(event, TurnDone):
                done = event
        assert done is not None  # run_turn always ends with TurnDone
        whole = completion.whole(done.text, "stop", _usage(prompt, done.text))
        return JSONResponse({**whole, "session_id": session.id}, headers=headers)

    async def deltas() -> AsyncIterator[str]:
        async for event in turn:
            if isinstance(event, TextDelta):
                yield event.text

    return _streamed(deltas(), body, prompt, completion, headers)


def _earlier_turns(messages: list[MessageIn], texts: list[str]) -> list[tuple[str, str]]:
    """The request's earlier exchanges as (what the person said, what Eva answered)."""
    turns: list[tuple[str, str]] = []
    said: list[str] = []
    answered: list[str] = []
    for message, text in zip(messages, texts, strict=True):
        if message.role == "user":
            if answered:
                turns.append(("\n".join(said), "\n".join(answered)))
                said, answered = [], []
            said.append(text)
        elif message.role == "assistant" and said:
            answered.append(text)
    if said and answered:
        turns.append(("\n".join(said), "\n".join(answered)))
    return turns


async def _plain(
    body: CompletionRequest,
    texts: list[str],
    limit: int | None,
    sampling: Sampling,
    service: Conversation,
    completion: _Completion,
) -> Response:
    roles = {"developer": "system", "system": "system", "user": "user", "assistant": "assistant"}
    messages = [
        ChatMessage(roles[m.role], t)  # type: ignore[arg-type]
        for m, t in zip(body.messages, texts, strict=True)
    ]
    prompt_tokens = sum(estimate_tokens(t) for t in texts)
    room = service.settings.llm_context - prompt_tokens - _TEMPLATE_MARGIN_TOKENS
    if room < (limit or 1):
        raise ApiError(
            400,
            "context_length_exceeded",
            f"the messages need about {prompt_tokens} tokens and the model's context is "
            f"{service.settings.llm_context}, with room for the reply",
            param="messages",
        )
    max_tokens = min(limit or PLAIN_MAX_TOKENS, room)
    service.check_admission(turn_owner(None, None))  # 503 busy before a stream starts
    deltas = service.complete(messages, max_tokens, sampling)
    if body.stream:
        return _streamed(deltas, body, texts, completion, {})
    text = "".join([delta async for delta in deltas])
    return JSONResponse(completion.whole(text, "stop", _usage(texts, text)))


def _streamed(
    deltas: AsyncIterator[str],
    body: CompletionRequest,
    prompt: list[str],
    completion: _Completion,
    headers: dict[str, str],
) -> StreamingResponse:
    include_usage = body.stream_options is not None and body.stream_options.include_usage

    async def events() -> AsyncIterator[bytes]:
        yield completion.chunk({"role": "assistant", "content": ""})
        written: list[str] = []
        try:
            async for delta in deltas:
                written.append(delta)
                yield completion.chunk({"content": delta})
        except (EngineError, ServerBusyError) as exc:
            # Mid-stream, the status is sent: OpenAI's SDKs raise on an "error" event.
            code = "busy" if isinstance(exc, ServerBusyError) else "backend_unavailable"
            error = {"message": str(exc), "type": error_type(503), "code": code}
            yield sse_data({"error": {**error, "param": None}})
            return
        yield completion.chunk({}, finish="stop")
        if include_usage:
            yield completion.usage_chunk(_usage(prompt, "".join(written)))
        yield b"data: [DONE]\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", **headers},
    )
