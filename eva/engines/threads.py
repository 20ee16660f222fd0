"""Running blocking engine generators in worker threads, seen from asyncio as async iterators.

Each engine kind gets its own single-thread executor (``EnginePools``): model inference is
serialised per engine, the engines' own native thread counts are the fixed CPU budget, and
one slow stage never queues behind another kind of work.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eva.engines.base import LLMEngine

T = TypeVar("T")

# How often a worker blocked on a full queue looks at its stop flag. Short enough that a
# cancelled turn frees its thread within a frame of audio, long enough to cost nothing.
_STOP_POLL_S = 0.02
# Items a worker may run ahead of its consumer: enough to absorb jitter, small enough that
# a client that stops reading holds back the models instead of filling memory.
DEFAULT_QUEUE_ITEMS = 64
# How long cleanup waits for a stopped worker to notice. Every engine checks its stop flag
# between tokens or clauses, which takes milliseconds; this only bounds a stuck backend.
_JOIN_TIMEOUT_S = 5.0

_ITEM, _ERROR, _END = "item", "error", "end"


# The longest an LLM waits for synthesis to finish before writing its next token. A clause
# takes 40-200 ms to synthesize; the bound keeps a busy server from starving anyone's LLM.
MAX_LLM_PAUSE_S = 0.3


class SpeechPriority:
    """Audio is what the person waits for: while a clause is being synthesized, LLM
    generation pauses between tokens, so the two do not split the CPU cores. The LLM writes
    many times faster than speech plays, so the pause costs nothing audible.

    An LLM in another process cannot be paused between the tokens Eva reads: it is told
    (``pause`` when synthesis begins, ``resume`` when none is left, or after
    ``MAX_LLM_PAUSE_S`` at the latest)."""

    def __init__(
        self, pause: Callable[[], None] = lambda: None, resume: Callable[[], None] = lambda: None
    ) -> None:
        self._active = 0
        self._quiet = threading.Condition()
        self._pause, self._resume = pause, resume
        self._deadline: threading.Timer | None = None

    @contextlib.contextmanager
    def speaking(self) -> Iterator[None]:
        with self._quiet:
            self._active += 1
            if self._active == 1:
                self._pause()
                self._deadline = threading.Timer(MAX_LLM_PAUSE_S, self._resume)
                self._deadline.daemon = True
                self._deadline.start()
        try:
            yield
        finally:
            with self._quiet:
                self._active -= 1
                if self._active == 0:
                    if self._deadline is not None:
                        self._deadline.cancel()
                    self._resume()
                self._quiet.notify_all()

    def wait_until_quiet(self, timeout: float = MAX_LLM_PAUSE_S) -> None:
        with self._quiet:
            self._quiet.wait_for(lambda: self._active == 0, timeout)

    def speak(self, chunks: Iterator[T]) -> Iterator[T]:
        """``chunks``, computed with priority over the LLM."""
        with self.speaking():
            yield from chunks

    def pace(self, tokens: Iterator[T]) -> Iterator[T]:
        """``tokens``, pausing before each next one while speech is being synthesized."""
        try:
            for token in tokens:
                yield token
                self.wait_until_quiet()
        finally:
            close = getattr(tokens, "close", None)
            if close is not None:
                close()


@dataclass
class EnginePools:
    """One worker thread per engine kind (as many for the LLM as it serves streams at
    once: a model server batches them), and the priority of speech over text."""

    stt: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="eva-stt")
    )
    llm: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="eva-llm")
    )

    @classmethod
    def for_llm(cls, llm: LLMEngine) -> EnginePools:
        return cls(
            llm=ThreadPoolExecutor(llm.concurrent_streams, thread_name_prefix="eva-llm"),
            speech=SpeechPriority(llm.pause_for_speech, llm.resume_after_speech),
        )

    tts: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="eva-tts")
    )
    speech: SpeechPriority = field(default_factory=SpeechPriority)
    # The end-of-turn model: ~50 ms per judgement, on its own thread so that it never waits
    # behind a transcription (the judgement decides sooner than the transcript arrives).
    turn: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="eva-turn")
    )

    def shutdown(self) -> None:
        for pool in (self.stt, self.llm, self.tts, self.turn):
            pool.shutdown(wait=True, cancel_futures=True)


async def iterate_in_thread(
    executor: ThreadPoolExecutor,
    make_iterator: Callable[[threading.Event], Iterator[T]],
    stop: threading.Event,
    max_items: int = DEFAULT_QUEUE_ITEMS,
) -> AsyncGenerator[T, None]:
    """Yield the items of ``make_iterator(stop)`` computed in ``executor``.

    ``stop`` is set when the consumer leaves early (break, error, cancellation), and the
    worker closes its generator and returns; cleanup waits for it so that no work outlives
    the turn that asked for it. Setting ``stop`` from elsewhere ends the iteration early.
    """
    loop = asyncio.get_running_loop()
    # Unbounded queue, bounded by ``slots``: the end marker must always get through, even
    # when the consumer has stopped reading.
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    slots = threading.Semaphore(max_items)

    def deliver(entry: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(queue.put_nowait, entry)

    def pump() -> None:
        final: tuple[str, Any] = (_END, None)
        try:
            iterator = make_iterator(stop)
            try:
                for item in iterator:
                    while not slots.acquire(timeout=_STOP_POLL_S):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    deliver((_ITEM, item))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            final = (_ERROR, exc)
        finally:
            deliver(final)

    worker = loop.run_in_executor(executor, pump)
    try:
        while True:
            kind, value = await queue.get()
            if kind == _ITEM:
                slots.release()
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(worker), _JOIN_TIMEOUT_S)
