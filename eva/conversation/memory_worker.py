"""The model's reading of what the person said, kept off the latency path.

The pattern extractor runs right after each stored turn (microseconds). The model is
slower (a few hundred milliseconds to seconds per sentence on two cores) and shares the
one LLM thread with replies, so it reads the sentences the patterns found nothing in only
while no turn is in flight, after a quiet spell; a turn that starts meanwhile cancels it
within one token, and the sentence is tried again at the next quiet spell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from eva.config import Settings
from eva.conversation.facts.model import ask_model, leftover_sentences
from eva.conversation.memory import MemoryBook, PromptParts
from eva.engines.base import EngineError, LLMEngine
from eva.engines.runtime import Engines
from eva.engines.threads import EnginePools
from eva.store import MessageRecord, SessionStore

T = TypeVar("T")
# Primes the LLM's prompt cache with a session's next prompt (``Conversation.prime``).
Primer = Callable[[str], Awaitable[None]]

log = logging.getLogger("eva.memory")

# Sentences waiting for the model. A burst of long messages must not queue minutes of LLM
# work; when full, the oldest sentence is dropped (its message stays stored).
MAX_PENDING_SENTENCES = 16
# How long no turn must have been in flight before the model reads: people answer within a
# few seconds, and their next turn must not wait behind extraction.
QUIET_BEFORE_S = 2.0
# A sentence interrupted by turns this many times is given up: the person is talking
# continuously, and the patterns have already kept what they could.
MAX_TRIES = 3


@dataclass
class _Pending:
    user_id: str
    message_id: int
    sentence: str
    session_id: str | None = None
    tries: int = 0


class ModelExtraction:
    """One background task per conversation service; ``start`` it inside the event loop."""

    def __init__(
        self, llm: LLMEngine, pools: EnginePools, book: MemoryBook, prime: Primer | None = None
    ) -> None:
        self.llm = llm
        # Reading replaces the conversation's prompt in the LLM's cache: ``prime`` puts it
        # back afterwards, so the next reply does not re-evaluate the whole history.
        self.prime = prime
        self.pools = pools
        self.book = book
        self.language = book.language
        self._pending: deque[_Pending] = deque(maxlen=MAX_PENDING_SENTENCES)
        self._wake = asyncio.Event()
        self._turns = 0
        self._last_turn_at = 0.0
        self._cancel = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self.extracted = 0  # facts the model added, for tests and /stats

    def submit(
        self,
        user_id: str,
        message_id: int,
        text: str,
        found_keys: list[str],
        session_id: str | None = None,
    ) -> None:
        """Queue the sentences of ``text`` the patterns found nothing in (``found_keys``)."""
        for sentence in leftover_sentences(text, self.language, found_keys):
            self._pending.append(_Pending(user_id, message_id, sentence, session_id))
        if self._pending:
            self._wake.set()
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run())

    def turn_started(self) -> None:
        self._turns += 1
        self._cancel.set()

    def turn_ended(self) -> None:
        self._turns -= 1
        self._last_turn_at = time.monotonic()
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _quiet(self) -> None:
        while True:
            waited = time.monotonic() - self._last_turn_at
            if self._turns == 0 and waited >= QUIET_BEFORE_S:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, QUIET_BEFORE_S - waited))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        read_for: str | None = None  # the session whose prompt reading pushed out
        while self._pending:
            await self._quiet()
            item = self._pending.popleft()
            read_for = item.session_id
            self._cancel = cancel = threading.Event()
            try:
                facts = await loop.run_in_executor(
                    self.pools.llm, ask_model, self.llm, item.sentence, self.language, cancel
                )
            except EngineError as exc:
                log.warning("memory: the model could not read a sentence: %s", exc)
                continue
            if cancel.is_set():
                item.tries += 1
                if item.tries < MAX_TRIES:
                    self._pending.appendleft(item)
                continue
            if facts:
                await asyncio.to_thread(self.book.remember, item.user_id, facts, item.message_id)
                self.extracted += len(facts)
        if read_for is not None and self.prime is not None and self._turns == 0:
            await self.prime(read_for)

    async def aclose(self) -> None:
        self._pending.clear()
        self._cancel.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class MemoryKeeper:
    """Everything memory does around a turn, for ``Conversation``: the prompt's parts
    before the reply, learning after it (off the latency path), the greeting."""

    def __init__(
        self, settings: Settings, engines: Engines, store: SessionStore, prime: Primer | None = None
    ) -> None:
        self.store = store
        self.book = MemoryBook(store, settings.language, 2 * settings.history_turns)
        self.prime = prime
        self.model = (
            ModelExtraction(engines.llm, engines.pools, self.book, prime)
            if settings.memory_model_extraction
            else None
        )
        self._learning: set[asyncio.Task[None]] = set()

    async def prepare(self, session_id: str, user_text: str) -> PromptParts:
        await self.settled()  # what the last turn taught is in this prompt
        return await asyncio.to_thread(self.book.prepare, session_id, user_text)

    async def during_turn(self, events: AsyncIterator[T]) -> AsyncIterator[T]:
        """``events``, with the model's background reading paused while they flow."""
        if self.model is not None:
            self.model.turn_started()
        try:
            async for item in events:
                yield item
        finally:
            if self.model is not None:
                self.model.turn_ended()

    def learn_from(self, user_id: str | None, message: MessageRecord) -> None:
        """Learn from the person's stored message in the background (milliseconds)."""
        task = asyncio.create_task(self._learn(user_id, message))
        self._learning.add(task)
        task.add_done_callback(self._learning.discard)

    async def _learn(self, user_id: str | None, message: MessageRecord) -> None:
        folded = await asyncio.to_thread(self.book.summarize, message.session_id)
        if folded is not None and self.prime is not None:
            # The next prompt starts differently: evaluate it now, while the person listens.
            await self.prime(message.session_id)
        if user_id is None:
            return  # an anonymous person is not remembered
        learned = await asyncio.to_thread(self.book.learn, user_id, message)
        if self.model is not None:
            keys = [m.key for m in learned]
            self.model.submit(user_id, message.id, message.content, keys, message.session_id)

    async def settled(self) -> None:
        """Wait until the facts of every finished turn are stored."""
        if self._learning:
            await asyncio.gather(*self._learning, return_exceptions=True)

    async def greeting(self, session_id: str, user_id: str | None) -> str | None:
        """The welcome for a known person, stored as Eva's first message of the session;
        None for an anonymous or unknown person."""
        if user_id is None:
            return None
        await self.settled()
        text: str | None = await asyncio.to_thread(self.book.greeting, user_id, session_id)
        if text is not None:
            await asyncio.to_thread(self.store.add_assistant_message, session_id, text)
        return text

    async def aclose(self) -> None:
        await self.settled()
        if self.model is not None:
            await self.model.aclose()
