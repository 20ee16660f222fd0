"""The fallback chain over real backends: llama.cpp's server first, the embedded model last."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from eva.config import Settings
from eva.engines import llm_openai, registry
from eva.engines.base import ChatMessage, EngineError, LLMEngine
from eva.engines.llm_fallback import FallbackLLM, create_chain
from eva.engines.llm_llamacpp import LlamaCppLLM

if TYPE_CHECKING:
    from tests.engines.conftest import LlamaServer, LoopbackServers

SILENT_TIMEOUT_S = 0.5


def question() -> list[ChatMessage]:
    return [
        ChatMessage("system", "You are Eva, a friendly voice companion."),
        ChatMessage("user", f"What is a good name for a cat? (ref {uuid.uuid4().hex})"),
    ]


def chain_settings(base_url: str, timeout_s: float = 30.0) -> Settings:
    return Settings(
        llm_backends=["openai", "llamacpp"],
        openai_base_url=base_url,
        openai_first_token_timeout_s=timeout_s,
        llm_threads=1,
        llm_context=1024,
    )


def shared_model_factory(settings: Settings, embedded: LlamaCppLLM) -> Callable[[str], LLMEngine]:
    """Builds the remote client for real and reuses the session's loaded embedded model."""
    return lambda name: embedded if name == "llamacpp" else llm_openai.create(settings)


def fallback_chain(settings: Settings, embedded: LlamaCppLLM) -> FallbackLLM:
    chain = create_chain(settings, shared_model_factory(settings, embedded))
    assert isinstance(chain, FallbackLLM)
    return chain


def reply(llm: LLMEngine, max_tokens: int = 16) -> str:
    return "".join(llm.stream(question(), max_tokens=max_tokens, cancel=threading.Event()))


def test_chain_of_two_backends_is_named_after_them(llamacpp_llm: LlamaCppLLM) -> None:
    chain = fallback_chain(chain_settings("http://127.0.0.1:9/v1"), llamacpp_llm)
    assert chain.name == "openai>llamacpp"
    assert isinstance(chain, LLMEngine)
    assert chain.failures == {"openai": 0, "llamacpp": 0}


def test_single_backend_is_returned_without_a_chain(llamacpp_llm: LlamaCppLLM) -> None:
    settings = Settings(llm_backends=["llamacpp"])
    assert create_chain(settings, shared_model_factory(settings, llamacpp_llm)) is llamacpp_llm


def test_chain_answers_from_the_running_llama_server(
    llama_server: str, llamacpp_llm: LlamaCppLLM
) -> None:
    chain = fallback_chain(chain_settings(llama_server), llamacpp_llm)
    assert reply(chain).strip()
    assert chain.failures == {"openai": 0, "llamacpp": 0}


def test_chain_falls_back_to_the_embedded_model_once_the_server_is_stopped(
    own_llama_server: LlamaServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = chain_settings(own_llama_server.base_url)
    chain = create_chain(settings, lambda name: registry.create("llm", name, settings))
    assert isinstance(chain, FallbackLLM)
    assert reply(chain).strip()
    assert chain.failures["openai"] == 0

    own_llama_server.stop()
    with caplog.at_level(logging.WARNING, logger="eva.llm"):
        assert reply(chain).strip()
    assert chain.failures == {"openai": 1, "llamacpp": 0}
    assert "trying llamacpp" in caplog.text
    chain.close()


def test_rate_limited_server_falls_back(
    loopback: LoopbackServers, llamacpp_llm: LlamaCppLLM
) -> None:
    server = loopback.status(429, "rate limited", {"Retry-After": "30"})
    chain = fallback_chain(chain_settings(server.base_url), llamacpp_llm)
    assert reply(chain).strip()
    assert chain.failures == {"openai": 1, "llamacpp": 0}


def test_silent_server_falls_back_after_the_first_token_timeout(
    loopback: LoopbackServers, llamacpp_llm: LlamaCppLLM
) -> None:
    server = loopback.silent()
    chain = fallback_chain(chain_settings(server.base_url, SILENT_TIMEOUT_S), llamacpp_llm)
    started = time.monotonic()
    assert reply(chain).strip()
    assert time.monotonic() - started >= SILENT_TIMEOUT_S * 0.9
    assert chain.failures["openai"] == 1


def test_failure_after_the_first_delta_propagates_without_falling_back(
    loopback: LoopbackServers, llamacpp_llm: LlamaCppLLM
) -> None:
    server = loopback.one_delta_then_cut()
    chain = fallback_chain(chain_settings(server.base_url), llamacpp_llm)
    received: list[str] = []
    with pytest.raises(EngineError, match=server.base_url):
        for delta in chain.stream(question(), max_tokens=16, cancel=threading.Event()):
            received.append(delta)
    assert received == ["Hello"]  # nothing from the embedded model was spliced on
    assert chain.failures == {"openai": 1, "llamacpp": 0}


def test_all_backends_failing_raises_one_error_naming_each(
    closed_port_url: str, llamacpp_llm: LlamaCppLLM
) -> None:
    chain = fallback_chain(chain_settings(closed_port_url), llamacpp_llm)
    longer_than_the_context = [ChatMessage("user", "word " * 5000)]
    with pytest.raises(EngineError) as caught:
        list(chain.stream(longer_than_the_context, max_tokens=8, cancel=threading.Event()))
    message = str(caught.value)
    assert "openai:" in message and closed_port_url in message
    assert "llamacpp:" in message
    assert chain.failures == {"openai": 1, "llamacpp": 1}


def test_closing_the_chain_stream_early_frees_the_embedded_model(
    closed_port_url: str, llamacpp_llm: LlamaCppLLM
) -> None:
    chain = fallback_chain(chain_settings(closed_port_url), llamacpp_llm)
    stream = chain.stream(question(), max_tokens=200, cancel=threading.Event())
    assert next(stream)
    stream.close()
    cancel = threading.Event()
    timer = threading.Timer(30.0, cancel.set)  # turns a deadlock into a failure, not a hang
    timer.start()
    try:
        assert list(llamacpp_llm.stream(question(), max_tokens=4, cancel=cancel))
    finally:
        timer.cancel()


def test_warm_up_warms_every_engine_that_can_be(
    closed_port_url: str, llamacpp_llm: LlamaCppLLM
) -> None:
    chain = fallback_chain(chain_settings(closed_port_url), llamacpp_llm)
    chain.warm_up()  # the unreachable remote server must not make this fail
    assert chain.failures == {"openai": 0, "llamacpp": 0}
