"""The OpenAI-compatible client against llama.cpp's real server, and against small scripted
loopback servers for what a healthy server never does (429, silence, a refused port)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from eva.config import Settings
from eva.engines.base import ChatMessage, EngineError, LLMEngine
from eva.engines.llm_openai import (
    BackendUnavailableError,
    FirstTokenTimeoutError,
    OpenAICompatibleLLM,
    RateLimitedError,
    _without_echo,
    create,
)

if TYPE_CHECKING:
    from tests.engines.conftest import LoopbackServers

SILENT_TIMEOUT_S = 0.5
# Generous slack over SILENT_TIMEOUT_S for a loaded 2-core machine, still far below "hangs".
SILENT_SLACK_S = 2.0


def question() -> list[ChatMessage]:
    return [
        ChatMessage("system", "You are Eva, a friendly voice companion."),
        ChatMessage("user", f"Tell me about the sea. (ref {uuid.uuid4().hex})"),
    ]


def client_for(base_url: str, **overrides: Any) -> OpenAICompatibleLLM:
    return create(Settings(openai_base_url=base_url, **overrides))


def test_openai_client_implements_the_llm_protocol() -> None:
    llm = client_for("http://127.0.0.1:9/v1")
    assert isinstance(llm, LLMEngine)
    assert llm.name == "openai"


def test_streams_several_deltas_from_the_real_llama_server(llama_server: str) -> None:
    model_id = httpx.get(f"{llama_server}/models").json()["data"][0]["id"]
    llm = client_for(llama_server, openai_model=model_id, openai_first_token_timeout_s=30.0)
    deltas = list(llm.stream(question(), max_tokens=24, cancel=threading.Event()))
    llm.close()
    assert len(deltas) >= 3
    assert all(deltas)
    assert "".join(deltas).strip()


def test_cancel_stops_the_real_server_stream(llama_server: str) -> None:
    llm = client_for(llama_server, openai_first_token_timeout_s=30.0)
    cancel = threading.Event()
    stream = llm.stream(question(), max_tokens=200, cancel=cancel)
    assert next(stream)
    cancel.set()
    assert list(stream) == []
    llm.close()


def test_api_key_is_sent_as_a_bearer_header(loopback: LoopbackServers) -> None:
    server = loopback.sse(["Hel", "lo", "!"])
    llm = client_for(server.base_url, openai_api_key="sk-test-123", openai_model="tiny")
    deltas = list(llm.stream(question(), max_tokens=16, cancel=threading.Event()))
    assert deltas == ["Hel", "lo", "!"]
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"
    assert request["body"]["model"] == "tiny"
    assert request["body"]["stream"] is True
    assert request["body"]["max_tokens"] == 16
    assert request["body"]["messages"][0] == {"role": "system", "content": question()[0].content}


def test_no_api_key_sends_no_authorization_header(loopback: LoopbackServers) -> None:
    server = loopback.sse(["Hi"])
    list(client_for(server.base_url).stream(question(), max_tokens=4, cancel=threading.Event()))
    assert "Authorization" not in server.requests[0]["headers"]


def test_http_429_raises_rate_limited_with_retry_after(loopback: LoopbackServers) -> None:
    server = loopback.status(429, '{"error": "slow down"}', {"Retry-After": "7"})
    llm = client_for(server.base_url, openai_api_key="sk-secret-key")
    with pytest.raises(RateLimitedError) as caught:
        list(llm.stream(question(), max_tokens=8, cancel=threading.Event()))
    assert caught.value.retry_after_s == 7.0
    assert server.base_url in str(caught.value)
    assert "sk-secret-key" not in str(caught.value)


def test_server_error_reports_status_and_start_of_body(loopback: LoopbackServers) -> None:
    server = loopback.status(500, "model exploded " + "x" * 1000)
    llm = client_for(server.base_url)
    with pytest.raises(EngineError, match="HTTP 500: model exploded") as caught:
        list(llm.stream(question(), max_tokens=8, cancel=threading.Event()))
    assert not isinstance(caught.value, RateLimitedError)
    assert len(str(caught.value)) < 400  # the body is cut to its start


def test_silent_server_raises_first_token_timeout_in_about_the_timeout(
    loopback: LoopbackServers,
) -> None:
    server = loopback.silent()
    llm = client_for(server.base_url, openai_first_token_timeout_s=SILENT_TIMEOUT_S)
    started = time.monotonic()
    with pytest.raises(FirstTokenTimeoutError, match=server.base_url):
        list(llm.stream(question(), max_tokens=8, cancel=threading.Event()))
    elapsed = time.monotonic() - started
    assert SILENT_TIMEOUT_S * 0.9 <= elapsed < SILENT_TIMEOUT_S + SILENT_SLACK_S


def test_closed_port_raises_backend_unavailable_quickly(closed_port_url: str) -> None:
    base_url = closed_port_url
    llm = client_for(base_url, openai_api_key="sk-secret-key")
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=base_url) as caught:
        list(llm.stream(question(), max_tokens=8, cancel=threading.Event()))
    assert time.monotonic() - started < 1.0
    assert "sk-secret-key" not in str(caught.value)


def test_malformed_event_raises_engine_error(loopback: LoopbackServers) -> None:
    server = loopback.status(200, "data: {not json\n\n", {"Content-Type": "text/event-stream"})
    llm = client_for(server.base_url)
    with pytest.raises(EngineError, match="malformed event"):
        list(llm.stream(question(), max_tokens=8, cancel=threading.Event()))


def test_connection_cut_mid_reply_raises_engine_error(loopback: LoopbackServers) -> None:
    server = loopback.one_delta_then_cut()
    stream = client_for(server.base_url).stream(question(), max_tokens=8, cancel=threading.Event())
    assert next(stream) == "Hello"
    with pytest.raises(EngineError, match=server.base_url):
        list(stream)


def test_answer_without_an_event_stream_raises_engine_error(loopback: LoopbackServers) -> None:
    whole = '{"choices": [{"message": {"role": "assistant", "content": "Hi"}}]}'
    server = loopback.status(200, whole, {"Content-Type": "application/json"})
    llm = client_for(server.base_url)
    with pytest.raises(EngineError, match="without a reply"):
        list(llm.stream(question(), max_tokens=8, cancel=threading.Event()))


def test_a_llama_cpp_server_gets_each_conversations_own_slot_and_other_servers_none(
    loopback: LoopbackServers,
) -> None:
    server = loopback.sse(["Hi."])
    slotted = OpenAICompatibleLLM(
        server.base_url, "m", connect_timeout_s=1.0, first_token_timeout_s=5.0,
        llama_cpp_slots=2,
    )  # fmt: skip
    plain = OpenAICompatibleLLM(
        server.base_url, "m", connect_timeout_s=1.0, first_token_timeout_s=5.0
    )
    for llm, session in [(slotted, "a"), (slotted, "b"), (slotted, "a"), (plain, "a")]:
        assert "".join(
            llm.stream([ChatMessage("user", "Hi")], max_tokens=4, cancel=threading.Event(),
                       session=session)
        ) == "Hi."  # fmt: skip
    bodies = [request["body"] for request in server.requests]
    assert [body.get("id_slot") for body in bodies] == [0, 1, 0, None]
    assert [body.get("cache_prompt") for body in bodies] == [True, True, True, None]
    slotted.close()
    plain.close()


def _continued(deltas: list[str], written: str) -> list[str]:
    def stream() -> Generator[str, None, None]:
        yield from deltas

    return list(_without_echo(stream(), written))


def test_a_continuation_drops_the_text_it_continues_when_the_server_echoes_it() -> None:
    # llama-server sends the assistant text it was given back first, in one event or more
    assert _continued(["The sea is calm", " tonight", "."], "The sea is calm") == [
        " tonight", ".",
    ]  # fmt: skip
    assert _continued(["The sea", " is calm tonight"], "The sea is calm") == [" tonight"]


def test_a_continuation_keeps_everything_from_a_server_that_does_not_echo() -> None:
    assert _continued([" tonight", "."], "The sea is calm") == [" tonight", "."]
    assert _continued(["The", " moon"], "The sea") == ["The moon"]
