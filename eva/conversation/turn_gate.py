"""Admission to Eva, driven from asyncio: conversations, turns, and draining.

``TurnGate`` owns what this process has admitted: the conversations open (a WebSocket
session is one for as long as it is open), the turns waiting for or holding the language
model (a ``FairTurnQueue``), and whether the process is draining (SIGTERM: no new
conversations or turns; those in flight finish). Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from eva.conversation.admission import Channel, FairTurnQueue, Refusal, Ticket

# A draining process tells clients to come back after this long: the balancer has taken
# it out of rotation by then (its health check runs every second or two).
DRAIN_RETRY_AFTER_S = 2


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
    ) -> None:
        self.queue = FairTurnQueue(slots, max_turn_wait_s, first_output_target_s)
        self.max_conversations = max_conversations
        self.conversations = 0
        self.draining = False
        self.refusals: dict[str, int] = {"conversation": 0, "turn": 0, "draining": 0}
        self._clock = clock
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
                max(1, round(self.queue.hold_s)),
            )
        self.conversations += 1

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
