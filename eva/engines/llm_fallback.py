"""An ordered chain of language models: the first one that starts answering gives the reply.

Typical use is a fast remote server first and the embedded model last
(``EVA_LLM_BACKENDS=openai,llamacpp``): a server that is down, rate limited or slow to its
first token costs at most its timeout, and the turn is still answered. Once a backend has
produced text the reply is its own: a failure after that propagates, because a sentence
cannot be finished by a different model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Sequence

from eva.config import Settings
from eva.engines.base import COMPANION_SAMPLING, ChatMessage, EngineError, LLMEngine, Sampling

logger = logging.getLogger("eva.llm")


class FallbackLLM:
    """Tries each engine in order until one yields its first delta."""

    def __init__(self, engines: Sequence[LLMEngine]) -> None:
        if not engines:
            raise ValueError("a fallback chain needs at least one engine")
        self.engines = list(engines)
        self.name = ">".join(engine.name for engine in self.engines)
        # Priming helps the engine that answers when all is well: the first.
        self.reuses_prompt_prefix = self.engines[0].reuses_prompt_prefix
        self.concurrent_streams = max(engine.concurrent_streams for engine in self.engines)
        # Streams run in worker threads, possibly several at once: the counters are guarded.
        self._failures_lock = threading.Lock()
        self._failures = {engine.name: 0 for engine in self.engines}

    @property
    def failures(self) -> dict[str, int]:
        """How many times each backend has failed, by name (a snapshot)."""
        with self._failures_lock:
            return dict(self._failures)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Generator[str, None, None]:
        reasons: list[str] = []
        for position, engine in enumerate(self.engines):
            if cancel.is_set():
                return
            deltas = engine.stream(
                messages, max_tokens=max_tokens, cancel=cancel, session=session, sampling=sampling
            )
            try:
                try:
                    first = next(deltas)
                except StopIteration:
                    return  # an empty reply (or cancelled before any text) is still an answer
                except EngineError as exc:
                    self._count_failure(engine.name)
                    reasons.append(f"{engine.name}: {exc}")
                    following = self.engines[position + 1 :]
                    logger.warning(
                        "LLM backend %s failed before its first token (%s); %s",
                        engine.name,
                        exc,
                        f"trying {following[0].name}" if following else "no backend left",
                    )
                    continue
                yield first
                try:
                    yield from deltas
                except EngineError:
                    self._count_failure(engine.name)
                    raise
                return
            finally:
                # Stops the backend's work (and frees its lock or connection) when the
                # consumer leaves early, or after it failed.
                close = getattr(deltas, "close", None)
                if close is not None:
                    close()
        raise EngineError("every language model backend failed: " + "; ".join(reasons))

    def warm_up(self, prefix: Sequence[ChatMessage] = ()) -> None:
        """Warm every engine that can be; one that fails is logged, the others still serve."""
        for engine in self.engines:
            try:
                engine.warm_up(prefix)
            except EngineError as exc:
                logger.warning("LLM backend %s failed to warm up: %s", engine.name, exc)

    def pause_for_speech(self) -> None:
        for engine in self.engines:
            engine.pause_for_speech()

    def resume_after_speech(self) -> None:
        for engine in self.engines:
            engine.resume_after_speech()

    def close(self) -> None:
        for engine in self.engines:
            engine.close()

    def _count_failure(self, name: str) -> None:
        with self._failures_lock:
            self._failures[name] = self._failures.get(name, 0) + 1


def create_chain(settings: Settings, factory: Callable[[str], LLMEngine]) -> LLMEngine:
    """The one engine named in ``settings.llm_backends``, or a FallbackLLM over several."""
    names = settings.llm_backends
    if not names:
        raise EngineError("no language model backend configured (llm_backends is empty)")
    if len(names) == 1:
        return factory(names[0])
    return FallbackLLM([factory(name) for name in names])
