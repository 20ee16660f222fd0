"""Admission to Eva, driven from asyncio: conversations, turns, and draining.

``TurnGate`` owns what this process has admitted: the conversations open (a WebSocket
session is one for as long as it is open), the turns waiting for or holding the language
model (a ``FairTurnQueue``), and whether the process is draining (SIGTERM: no new
conversations or turns; those in flight finish). Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from eva.conversation.admission import Channel, FairTurnQueue, Refusal, Ticket

# A draining process tells clients to come back after this long: the balancer has taken
# it out of rotation by then (its health check runs every second or two).
DRAIN_RETRY_AFTER_S = 2
# Conversations refused together must not come back together. Told the same Retry-After,
# the twenty sessions a full Eva refused at once asked again within the same few
# milliseconds every time, and the last of each herd was told "busy" 100-130 ms after it
# asked, against 8 ms alone (eva loadtest, 2026-12-04). Each refusal's wait is spread over
# up to half as long again (the jitter of "backoff with jitter"), so a herd comes back
# thinned out and thins further on every retry. Turns are not spread: people do not ask
# again in step, and a speaker told to wait must not wait longer by chance.
CONVERSATION_RETRY_SPREAD = 0.5


class ServerBusyError(Exception):
    """Refused at once rather than queued: come back after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Capacity:
    """What ``/health`` and ``/metrics`` report, and what a balancer routes on."""

    conversations: int
    max_conversations: int
    turns_running: int
    turns_limit: int
    turns_waiting_spoken: int
    turns_waiting_typed: int
    llm_slots: int
    turn_hold_s: float
    draining: bool

    @property
    def accepting(self) -> bool:
        return not self.draining and self.conversations < self.max_conversations


class TurnGate:
    def __init__(
        self,
        slots: int,
        max_conversations: int,
        max_turn_wait_s: float,
        first_output_target_s: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
        jitter: random.Random | None = None,
    ) -> None:
        self.queue = FairTurnQueue(slots, max_turn_wait_s, first_output_target_s)
        self.max_conversations = max_conversations
        self.conversations = 0
        self.draining = False
        self.refusals: dict[str, int] = {"conversation": 0, "turn": 0, "draining": 0}
        self._clock = clock
        self._jitter = jitter or random.Random()
        self._grants: dict[Ticket, asyncio.Future[None]] = {}
        self._due_timer: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # --- conversations

    def open_conversation(self) -> None:
        """Count a new conversation in, or ServerBusyError."""
        if self.draining:
            self.refusals["draining"] += 1
            raise ServerBusyError("this Eva is shutting down", DRAIN_RETRY_AFTER_S)
        if self.conversations >= self.max_conversations:
            self.refusals["conversation"] += 1
            raise ServerBusyError(
                f"Eva is already in {self.max_conversations} conversations",
                self._conversation_retry_after_s(),
            )
        self.conversations += 1

    def _conversation_retry_after_s(self) -> int:
        """About one turn's hold (a place frees when a conversation's turn ends), spread
        by up to ``CONVERSATION_RETRY_SPREAD`` of it; whole seconds, as HTTP's Retry-After."""
        wait = max(1, round(self.queue.hold_s))
        return wait + self._jitter.randint(0, math.ceil(wait * CONVERSATION_RETRY_SPREAD))

    def close_conversation(self) -> None:
        self.conversations -= 1

    # --- turns

    def check(self, owner: str, channel: Channel) -> None:
        """ServerBusyError if a turn asked for now would be refused; queues nothing."""
        self._refuse_if(self.queue.would_refuse(owner, channel, self._clock()))

    def keep_place_for_speaker(self, owner: str) -> None:
        """A speaker paused: ServerBusyError if their turn would be refused now, else a
        place is kept for it until it asks (``FairTurnQueue.keep_place_for_speaker``)."""
        self._refuse_if(self.queue.keep_place_for_speaker(owner, self._clock()))

    def admit(self, owner: str, channel: Channel, waiting_since: float | None = None) -> Ticket:
        """A place in the queue for one turn, or ServerBusyError at once. ``waiting_since``
        (this gate's clock): when the person began to wait, if before now."""
        self._refuse_if(None)  # draining
        answer = self.queue.ask(owner, channel, self._clock(), waiting_since)
        self._refuse_if(answer)
        assert isinstance(answer, Ticket)
        self._grants[answer] = asyncio.get_running_loop().create_future()
        self._idle.clear()
        self._start_next()
        return answer

    def _refuse_if(self, answer: Ticket | Refusal | None) -> None:
        if self.draining:
            self.refusals["draining"] += 1
            raise ServerBusyError("this Eva is shutting down", DRAIN_RETRY_AFTER_S)
        if isinstance(answer, Refusal):
            self.refusals["turn"] += 1
            raise ServerBusyError(answer.reason, answer.retry_after_s)

    @asynccontextmanager
    async def holding(self, ticket: Ticket) -> AsyncIterator[None]:
        """Wait for the ticket's slot of the model, hold it while the block runs (the LLM
        writing), give it back on the way out, also when cancelled while waiting."""
        try:
            await self._grants[ticket]
            yield
        finally:
            self.queue.finish(ticket, self._clock())
            self._start_next()

    def first_output(self, ticket: Ticket) -> None:
        """The turn's first audio (or text, for a text turn) is ready: timed against the
        target, it adapts how many turns run at once."""
        self.queue.first_output(ticket, self._clock())

    def speech_ran_dry(self, ticket: Ticket) -> None:
        """The turn's reply left its listener a gap: fewer turns run at once."""
        self.queue.speech_ran_dry(ticket)

    def release(self, ticket: Ticket) -> None:
        """The turn is over, its reply stored or abandoned. Idempotent."""
        grant = self._grants.pop(ticket, None)
        if grant is None:
            return
        grant.cancel()  # no-op once granted
        self.queue.finish(ticket, self._clock())  # no-op once its hold ended
        self._start_next()
        if not self._grants:
            self._idle.set()

    def _start_next(self) -> None:
        for ticket in self.queue.start_next(self._clock()):
            grant = self._grants.get(ticket)
            if grant is not None and not grant.done():
                grant.set_result(None)
        # A waiting turn's promise comes due even when no turn ends by then: wake for it.
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        now = self._clock()
        due = self.queue.next_due(now)
        if due is not None:
            self._due_timer = asyncio.get_running_loop().call_later(due - now, self._start_next)

    # --- draining

    def drain(self) -> None:
        self.draining = True

    async def wait_idle(self) -> None:
        """Until no turn is in flight: none waits for the model, none is being written,
        spoken or stored."""
        await self._idle.wait()

    def capacity(self) -> Capacity:
        waiting = self.queue.waiting_by_channel()
        return Capacity(
            conversations=self.conversations,
            max_conversations=self.max_conversations,
            turns_running=len(self.queue.running),
            turns_limit=self.queue.places,
            turns_waiting_spoken=waiting[Channel.SPOKEN],
            turns_waiting_typed=waiting[Channel.TYPED],
            llm_slots=self.queue.slots,
            turn_hold_s=self.queue.hold_s,
            draining=self.draining,
        )
