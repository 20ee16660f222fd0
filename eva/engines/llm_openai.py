"""A language model behind any OpenAI-compatible chat server: Groq, Ollama, vLLM, llama.cpp.

Replies are streamed (server-sent events) and parsed here line by line, so the first words
can be spoken while the rest is still being generated. Timeouts are short on purpose: a
remote server that is down or slow should hand the turn to the next backend (see
``eva.engines.llm_fallback``) before the silence becomes noticeable.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator, Sequence
from typing import Any

import httpx

from eva.config import Settings
from eva.engines.base import COMPANION_SAMPLING, ChatMessage, EngineError, Sampling
from eva.engines.llama_slots import ANY_SLOT, PromptKeeper, SlotTable, SlotTaken
from eva.engines.opening_priority import OpeningPriority
from eva.engines.special_tokens import defuse

TEMPERATURE = 0.7  # the same sampling temperature as the embedded model
# How much of an error body goes into the message: enough for the server's explanation,
# short enough for a log line.
_ERROR_BODY_CHARS = 200
# Sending a chat request is a few kilobytes; a write that stalls this long means a dead peer.
_WRITE_TIMEOUT_S = 5.0
_SSE_DATA = "data:"
_SSE_DONE = "[DONE]"


class BackendUnavailableError(EngineError):
    """The server could not be reached: connection refused, unknown host, connect timeout."""


class FirstTokenTimeoutError(EngineError):
    """The server accepted the request but produced no text in time."""


class RateLimitedError(EngineError):
    """HTTP 429. ``retry_after_s`` is the server's Retry-After, when it gave one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _parse_retry_after(value: str | None) -> float | None:
    """Delay seconds; the rarer HTTP-date form is treated as not given."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _sampling_fields(sampling: Sampling) -> dict[str, Any]:
    """The request fields a caller set, over the engine's defaults."""
    fields: dict[str, Any] = {}
    if sampling.temperature is not None:
        fields["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        fields["top_p"] = sampling.top_p
    if sampling.seed is not None:
        fields["seed"] = sampling.seed
    if sampling.stop:
        fields["stop"] = list(sampling.stop)
    return fields


def _delta_content(event: Any) -> str:
    """The text of one ``chat.completion.chunk`` event ("" for role-only or usage events)."""
    shown = str(event)[:_ERROR_BODY_CHARS]
    if not isinstance(event, dict):
        raise EngineError(f"unexpected event from the server: {shown}")
    if "error" in event:  # vLLM and llama.cpp report mid-stream failures this way
        raise EngineError(f"the server reported an error: {shown}")
    choices = event.get("choices")
    if not choices:
        return ""  # e.g. a final usage-only event
    try:
        content = choices[0].get("delta", {}).get("content")
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        raise EngineError(f"malformed event from the server: {shown}") from exc
    return content if isinstance(content, str) else ""


class OpenAICompatibleLLM:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        *,
        connect_timeout_s: float,
        first_token_timeout_s: float,
        concurrent_streams: int = 1,
        llama_cpp_slots: int = 0,
        extra_body: dict[str, Any] | None = None,
        opening_priority: OpeningPriority | None = None,
        prompt_keeper: PromptKeeper | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``llama_cpp_slots`` > 0: the server is llama.cpp's, with that many slots, and each
        conversation keeps to one of them. ``extra_body``: sampling fields the server reads
        beyond OpenAI's (llama.cpp's ``repeat_penalty``). ``opening_priority``: replies past
        their opening give way to others' openings (a local server whose cores they share;
        it must continue an assistant message given last, as llama.cpp's does).
        ``prompt_keeper``: where a conversation's prompt waits while another uses its slot
        (a llama.cpp server's slot save and restore)."""
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.concurrent_streams = concurrent_streams
        self._slots = SlotTable(llama_cpp_slots) if llama_cpp_slots > 0 else None
        # A server's prompt cache is Eva's to steer only through a slot of its own.
        self.reuses_prompt_prefix = self._slots is not None
        self._extra_body = dict(extra_body or {})
        self._priority = opening_priority
        self._prompt_keeper = prompt_keeper
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # The read timeout bounds every wait for bytes, the first one included: a server
        # that accepts the request and then says nothing is given up after it.
        timeout = httpx.Timeout(
            connect=connect_timeout_s,
            read=first_token_timeout_s,
            write=_WRITE_TIMEOUT_S,
            pool=connect_timeout_s,
        )
        self._first_token_timeout_s = first_token_timeout_s
        # One client for the engine's lifetime: its pool keeps the connection (and the TLS
        # session) open between turns. httpx.Client is safe to share between threads.
        self._client = httpx.Client(headers=headers, timeout=timeout, transport=transport)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Generator[str, None, None]:
        """Yield the reply's non-empty text deltas; close the response once cancelled."""
        # one slot for the whole reply, kept while it gives way: its prompt stays cached
        taken = self._slots.take(session) if self._slots is not None else SlotTaken(ANY_SLOT)
        slot = taken.index
        try:
            self._hand_over(taken, session)
            if self._priority is None:
                body = self._body(messages, max_tokens, sampling, slot)
                yield from self._stream_body(body, cancel)
            else:
                yield from self._giving_way(messages, max_tokens, sampling, slot, cancel)
        finally:
            if self._slots is not None:
                self._slots.give_back(slot)

    def _hand_over(self, taken: SlotTaken, session: str) -> None:
        """A slot passing to another conversation: its prompt kept, the newcomer's put back."""
        if (
            self._prompt_keeper is not None
            and taken.index != ANY_SLOT
            and taken.held_before != session
        ):
            self._prompt_keeper.hand_over(taken.index, taken.held_before, session)

    def _body(
        self, messages: Sequence[ChatMessage], max_tokens: int, sampling: Sampling, slot: int
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            # the server's vocabulary is unknown: the common special-token shapes defused
            "messages": [{"role": m.role, "content": defuse(m.content)} for m in messages],
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": TEMPERATURE,
            **self._extra_body,
            **_sampling_fields(sampling),
        }
        if self._slots is not None:
            body["id_slot"] = slot
            body["cache_prompt"] = True
        return body

    def _giving_way(
        self,
        messages: Sequence[ChatMessage],
        max_tokens: int,
        sampling: Sampling,
        slot: int,
        cancel: threading.Event,
    ) -> Generator[str, None, None]:
        """The reply in requests: one until it should give way (``OpeningPriority``), then,
        after the others' openings, one more that continues the text written so far."""
        assert self._priority is not None
        written = ""
        tokens = 0  # llama-server streams one token per event
        claims = max_tokens >= self._priority.opening_tokens  # not a one-token priming
        with self._priority.reply(claims, cancel) as reply:
            while not cancel.is_set():
                if written:
                    prefilled = [*messages, ChatMessage("assistant", written)]
                    body = self._body(prefilled, max_tokens - tokens, sampling, slot)
                    deltas = _without_echo(
                        self._stream_body(body, cancel, may_be_empty=True), defuse(written)
                    )
                else:
                    deltas = self._stream_body(
                        self._body(messages, max_tokens, sampling, slot), cancel
                    )
                gave_way = False
                try:
                    for delta in deltas:
                        tokens += 1
                        written += delta
                        reply.wrote(tokens, len(written))
                        yield delta
                        if reply.should_yield():
                            gave_way = True
                            break
                finally:
                    deltas.close()  # closing the request stops the server's work on it
                if not gave_way or tokens >= max_tokens:
                    return
                reply.wait_turn(cancel)

    def _stream_body(
        self, body: dict[str, Any], cancel: threading.Event, may_be_empty: bool = False
    ) -> Generator[str, None, None]:
        """The text deltas of one request. ``may_be_empty``: a continuation, which can end
        where the previous request stopped."""
        url = f"{self.base_url}/chat/completions"
        deadline = time.monotonic() + self._first_token_timeout_s
        yielded = False
        try:
            with self._client.stream("POST", url, json=body) as response:
                self._check_status(response)
                for line in response.iter_lines():
                    if cancel.is_set():
                        return
                    content = self._parse_line(line)
                    if content is None:
                        return
                    if content:
                        yielded = True
                        yield content
                    elif not yielded and time.monotonic() > deadline:
                        # keep-alives and role-only events reset the read timeout; this does not
                        raise FirstTokenTimeoutError(self._slow_message())
                if not yielded and not may_be_empty:
                    # e.g. a plain JSON answer from a server that ignored "stream": true
                    raise EngineError(f"{self.base_url} ended the stream without a reply")
        except httpx.ConnectTimeout as exc:
            raise BackendUnavailableError(
                f"{self.base_url} did not accept a connection in time"
            ) from exc
        except httpx.ConnectError as exc:
            raise BackendUnavailableError(f"cannot reach {self.base_url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            if not yielded:
                raise FirstTokenTimeoutError(self._slow_message()) from exc
            raise EngineError(f"{self.base_url} stopped sending mid-reply") from exc
        except httpx.HTTPError as exc:
            # RemoteProtocolError, ReadError: the connection broke, often mid-reply
            raise EngineError(f"the connection to {self.base_url} failed: {exc}") from exc

    def warm_up(self, prefix: Sequence[ChatMessage] = ()) -> None:
        """Nothing to do: the server may not be up yet, and that must not stop Eva starting."""

    def pause_for_speech(self) -> None:
        """Nothing to do: a remote server's CPU is not the one speech needs."""

    def resume_after_speech(self) -> None:
        """Nothing to do: a remote server's CPU is not the one speech needs."""

    def close(self) -> None:
        self._client.close()

    def _parse_line(self, line: str) -> str | None:
        """The text in one line of the event stream: None at the end, "" when there is none."""
        if not line.startswith(_SSE_DATA):
            return ""  # blank separators, ": keep-alive" comments, event: and id: fields
        payload = line[len(_SSE_DATA) :].strip()
        if payload == _SSE_DONE:
            return None
        try:
            event = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise EngineError(
                f"malformed event from {self.base_url}: {payload[:_ERROR_BODY_CHARS]}"
            ) from exc
        return _delta_content(event)

    def _slow_message(self) -> str:
        return f"{self.base_url} sent no text within {self._first_token_timeout_s:g} s"

    def _check_status(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        text = _read_start(response)
        if response.status_code == 429:
            retry_after = _parse_retry_after(response.headers.get("retry-after"))
            hint = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            raise RateLimitedError(
                f"{self.base_url} is rate limiting (HTTP 429){hint}: {text}", retry_after
            )
        raise EngineError(f"{self.base_url} answered HTTP {response.status_code}: {text}")


def _without_echo(deltas: Generator[str, None, None], prefix: str) -> Generator[str, None, None]:
    """A continuation's deltas without the text it continues: llama-server streams the
    assistant message it was given back first (in its first event)."""
    start: str | None = ""  # None once past the echo
    try:
        for delta in deltas:
            if start is not None:
                start += delta
                if prefix.startswith(start):
                    continue  # still the echo, or all of it so far
                delta = start[len(prefix) :] if start.startswith(prefix) else start
                start = None
                if not delta:
                    continue
            yield delta
    finally:
        deltas.close()


def _read_start(response: httpx.Response) -> str:
    """The first characters of an error body, without reading a huge one to the end."""
    data = b""
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= _ERROR_BODY_CHARS * 4:  # up to 4 UTF-8 bytes per character
                break
    except httpx.HTTPError:
        pass  # the status alone is the error; a body that also fails adds nothing
    return data.decode("utf-8", errors="replace")[:_ERROR_BODY_CHARS]


def create(settings: Settings) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(
        settings.openai_base_url,
        settings.openai_model,
        settings.openai_api_key,
        connect_timeout_s=settings.openai_connect_timeout_s,
        first_token_timeout_s=settings.openai_first_token_timeout_s,
        concurrent_streams=settings.openai_concurrent_streams,
        llama_cpp_slots=settings.openai_llama_cpp_slots,
    )
