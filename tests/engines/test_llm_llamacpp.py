"""The embedded llama.cpp model, run for real on the packaged SmolLM2 file."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

import pytest

from eva.config import Settings
from eva.engines.base import ChatMessage, EngineError, LLMEngine
from eva.engines.llm_llamacpp import LlamaCppLLM, create

# A second stream after an early stop must start at once; this only bounds a deadlock.
_UNBLOCK_TIMEOUT_S = 30.0


def fresh_messages(request: str = "Tell me a long story about a lighthouse.") -> list[ChatMessage]:
    nonce = uuid.uuid4().hex  # a prompt never seen before: no answer from a warm KV cache
    return [
        ChatMessage("system", "You are Eva, a friendly voice companion."),
        ChatMessage("user", f"{request} (ref {nonce})"),
    ]


def stream_in_thread(llm: LlamaCppLLM, max_tokens: int) -> list[str]:
    """Stream in another thread and fail, instead of hanging, if the model stays locked."""
    cancel = threading.Event()
    deltas: list[str] = []
    worker = threading.Thread(
        target=lambda: deltas.extend(
            llm.stream(fresh_messages("Say hello."), max_tokens=max_tokens, cancel=cancel)
        )
    )
    worker.start()
    worker.join(_UNBLOCK_TIMEOUT_S)
    if worker.is_alive():
        cancel.set()  # lets the waiting stream give up, so the test run ends
        worker.join()
        pytest.fail("the model was still locked by the earlier stream")
    return deltas


def test_llamacpp_implements_the_llm_protocol(llamacpp_llm: LlamaCppLLM) -> None:
    assert isinstance(llamacpp_llm, LLMEngine)
    assert llamacpp_llm.name == "llamacpp"


def test_unique_message_streams_several_nonempty_deltas(llamacpp_llm: LlamaCppLLM) -> None:
    started = time.monotonic()
    deltas: list[str] = []
    first_delta_s = None
    for delta in llamacpp_llm.stream(fresh_messages(), max_tokens=40, cancel=threading.Event()):
        first_delta_s = first_delta_s or time.monotonic() - started
        deltas.append(delta)
    assert len(deltas) >= 3
    assert all(deltas)
    assert "".join(deltas).strip()
    assert first_delta_s is not None and first_delta_s < 5.0


def test_max_tokens_bounds_the_reply(llamacpp_llm: LlamaCppLLM) -> None:
    deltas = list(llamacpp_llm.stream(fresh_messages(), max_tokens=5, cancel=threading.Event()))
    # every delta holds at least one token; llama.cpp may merge tokens, never split one
    assert 1 <= len(deltas) <= 5


def test_cancel_after_first_delta_stops_the_stream_and_frees_the_model(
    llamacpp_llm: LlamaCppLLM,
) -> None:
    cancel = threading.Event()
    stream = llamacpp_llm.stream(fresh_messages(), max_tokens=200, cancel=cancel)
    assert next(stream)
    cancel.set()
    started = time.monotonic()
    after_cancel = list(stream)
    assert after_cancel == []  # cancel is checked before every delta
    assert time.monotonic() - started < 1.0
    assert stream_in_thread(llamacpp_llm, max_tokens=8)


def test_closing_the_generator_early_frees_the_model(llamacpp_llm: LlamaCppLLM) -> None:
    stream = llamacpp_llm.stream(fresh_messages(), max_tokens=200, cancel=threading.Event())
    assert next(stream)
    stream.close()
    assert stream_in_thread(llamacpp_llm, max_tokens=8)


def test_stream_waiting_for_a_busy_model_gives_up_when_cancelled(
    llamacpp_llm: LlamaCppLLM,
) -> None:
    busy = llamacpp_llm.stream(fresh_messages(), max_tokens=200, cancel=threading.Event())
    assert next(busy)  # holds the model
    cancel = threading.Event()
    cancel.set()
    try:
        waiting = list(llamacpp_llm.stream(fresh_messages(), max_tokens=8, cancel=cancel))
    finally:
        busy.close()
    assert waiting == []


def test_prompt_longer_than_the_context_raises_engine_error(llamacpp_llm: LlamaCppLLM) -> None:
    too_long = [ChatMessage("user", "word " * 5000)]
    with pytest.raises(EngineError):
        list(llamacpp_llm.stream(too_long, max_tokens=8, cancel=threading.Event()))
    assert stream_in_thread(llamacpp_llm, max_tokens=8)  # the failure released the model


def test_create_loads_the_packaged_model_for_smollm2(smollm2_path: Path) -> None:
    llm = create(Settings(llm_model="smollm2", llm_threads=1, llm_context=512))
    try:
        assert llm.model_path == smollm2_path
        assert smollm2_path.name.endswith(".gguf")
    finally:
        llm.close()


def test_create_with_a_missing_model_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(EngineError, match=re.escape(str(missing))):
        create(Settings(llm_model=str(missing), llm_threads=1, llm_context=512))
