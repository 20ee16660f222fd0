"""Which turn gets the language model next, and which are told to come back later.

Sans-I/O: ``FairTurnQueue`` is fed requests, finishes and the time, and says which turns
start and which are refused; ``eva.conversation.turn_gate`` drives it from asyncio.

- **Capacity.** The model serves up to ``slots`` turns at once (llama-server's slots), but
  every turn it batches slows the others: on two cores four at once take several times as
  long to their first audio as one alone. So the turns let in at once (``limit``) adapt to
  the latency target as TCP's congestion window does. The limit starts at two (slow start:
  a whole place more for each turn in time, until the first late one). A turn whose first
  output came later than ``target_s`` after it asked shrinks it, and so does a reply whose
  speech ran dry before it was all made (a gap the listener hears: more turns at once than
  the machine speaks in real time). A turn well in time grows it, if it ran with every
  place taken (RFC 7661's validation: a turn beside fewer says nothing about one more).
  A turn that would wait longer than ``max_wait_s`` for its place is refused at once with
  the seconds after which it would not, instead of queueing for minutes: a person told
  "busy, try in 3 s" can act; one left in silence cannot. An admitted turn is promised its
  place within ``max_wait_s`` and gets it then even beyond the limit (up to ``slots``), so
  the promise holds when holds run long or the limit shrinks after it was made. The wait
  is estimated from how long turns have recently held a place, as TCP estimates round
  trips: a smoothed mean and deviation (``hold_bound_s``).
- **Spoken before typed.** A person speaking waits in silence; a typed turn's reader sees
  the words arrive. A spoken turn goes before every waiting typed one. While someone has
  spoken lately, typed turns leave one of the limit's places free for the next spoken turn,
  and a spoken turn may always run beside one other (``SPOKEN_PLACES_AT_LEAST``). A
  speaker's turn is checked when they pause, and a place is kept for it while its words
  are transcribed (``keep_place_for_speaker``): another speaker who pauses meanwhile is
  told "busy" at once rather than after their own transcription.
- **Fair between people.** Within a channel, turns are ordered by start-time fair queueing
  over owners (a user, or a session when there is no user): each turn's tag is one more
  than its owner's previous tag, and never below the tag of the turn last started. One
  person's rapid turns get ever larger tags, so someone else's first turn goes before
  their third, however quickly they were sent.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from enum import IntEnum


class Channel(IntEnum):
    """How the person takes part in the turn; lower goes first."""

    SPOKEN = 0
    TYPED = 1


# The hold is estimated as TCP estimates a round trip (Jacobson/Karels, RFC 6298): a
# smoothed mean and a smoothed mean deviation. A promise made on the mean alone is broken
# by every hold longer than average, and under load holds vary several-fold (6-13 s here).
HOLD_SMOOTHING = 0.125
DEVIATION_SMOOTHING = 0.25
# A place is promised on the mean plus this many deviations: most holds end by then.
HOLD_DEVIATIONS = 2.0
# Before any turn is measured. The estimate matters only when every place is taken, i.e.
# under load, so this is a hold under load: replies written beside three others on 2
# cores held the model 6-20 s (docs/scaling.md). A shorter guess let a busy start admit
# turns that then waited 6-10 s for a place. Learnt within a few turns.
DEFAULT_HOLD_S = 8.0
# A late turn cuts the limit by this factor; one in time adds 1/limit (one place per round
# of turns in time; see GROW_WITHIN for which count), as TCP's AIMD.
LIMIT_DECREASE = 0.75
# Slow start, as TCP's: a process that has timed no turn yet lets this many in at once, and
# each turn in time adds a whole place until the first late one (or gap) cuts the limit.
# Starting at the model's slots, the load test's first four turns, asked together as the
# sessions connected, were batched and all took 7.3-7.7 s to their first audio: the
# slowest replies of the run, against p95 4.7 s for the turns after them (docs/scaling.md).
# Two, not one: two people talking to a fresh Eva at once are both answered (two at once
# on two cores reach their first audio in 1.5-2.5 s), where one would tell the second to
# come back in some 15 s.
INITIAL_LIMIT = 2.0
# The limit grows only on a turn whose first output came within this share of the target,
# and that ran with every place taken (TCP's congestion window validation, RFC 7661): a
# turn in time beside fewer others says nothing about one place more. Growing on any turn
# in time put the limit at three a fifth of a load run, and the turns started at three
# had their first audio 5.6-5.8 s after asking. Between this and the target it holds.
GROW_WITHIN = 0.8
# A speaker's place is kept from typed turns rather than added on top of the limit. The
# speaker waits in silence; under saturation typed turns kept every place taken, and going
# first in line alone left four voice sessions 1-2 turns in 150 s of the load test. A place
# beyond the limit (as before) made three replies at once on two cores, whose first audio
# came 3-5 s late and whose speech ran dry: the cores write only about 2.5 replies as fast
# as they are spoken. So while someone has spoken recently, typed turns leave one of the
# limit's places free, and a spoken turn may always run beside one other.
SPOKEN_PLACES_AT_LEAST = 2
# A spoken turn this recent means a person is talking with Eva by voice and will speak
# again soon: the load test's voice conversations ask every 10-20 s (speak, hear the reply).
SPEAKER_AROUND_S = 30.0
# A speaker whose turn Eva would take when they pause keeps that place while the words are
# transcribed and the end of the turn decided (0.3-1.1 s under load), at most this long.
# Only checked at the pause, the place went to another speaker meanwhile in every load
# run, and that turn was told "busy" after its transcription, 0.4-1 s after the pause,
# instead of at once. Long enough for the transcription's p95 under load, short enough
# that a pause which was not the end of the turn keeps nobody else out for long.
PLACE_KEPT_FOR_SPEAKER_S = 1.5


@dataclass(eq=False)
class Ticket:
    """One turn's place: waiting, then running, then finished."""

    owner: str
    channel: Channel
    tag: float
    order: int  # arrival, to break ties
    asked_at: float = 0.0
    waiting_since: float = 0.0  # when the person began to wait (a speaker: speech's end)
    due_at: float = math.inf  # it starts by then, whatever the limit (slots allowing)
    started_at: float | None = None
    measured: bool = False  # its first output was timed
    shrank: bool = False  # it cut the limit (late, or its speech ran dry)
    crowd: int = 0  # the most turns holding the model, itself included, before its output
    shared: bool = False  # others held or waited for the model when it was admitted


@dataclass(frozen=True)
class Refusal:
    retry_after_s: int
    reason: str


@dataclass
class FairTurnQueue:
    slots: int
    max_wait_s: float
    target_s: float = math.inf  # first output after the person began to wait; inf: no target
    hold_s: float = DEFAULT_HOLD_S
    hold_dev_s: float = DEFAULT_HOLD_S / 2  # RFC 6298's first RTTVAR: half the first mean
    limit: float = 0.0  # turns let in at once, 1..slots (all of them without a target)
    slow_start: bool = True  # no turn has cut the limit yet
    running: set[Ticket] = field(default_factory=set)
    waiting: list[Ticket] = field(default_factory=list)
    _last_tag: dict[str, float] = field(default_factory=dict)
    _virtual: float = 0.0  # the tag of the turn last started
    _spoken_at: float = -math.inf  # when a spoken turn last asked
    _kept_until: dict[str, float] = field(default_factory=dict)  # a speaker's place
    _arrivals: int = 0

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots must be >= 1, got {self.slots}")
        if not self.limit:
            adapts = math.isfinite(self.target_s)
            self.limit = min(float(self.slots), INITIAL_LIMIT) if adapts else float(self.slots)

    @property
    def places(self) -> int:
        """Turns that may hold the model at once now."""
        return max(1, min(self.slots, int(self.limit)))

    def places_for(self, channel: Channel, now: float) -> int:
        """Turns that may hold the model at once when the next is of ``channel``: a spoken
        one may run beside another whatever the limit, and typed ones leave a place free
        for the next spoken turn while someone speaks to Eva."""
        if channel is Channel.SPOKEN:
            return min(self.slots, max(self.places, SPOKEN_PLACES_AT_LEAST))
        if now - self._spoken_at < SPEAKER_AROUND_S:
            return max(1, self.places - 1)
        return self.places

    def first_output(self, ticket: Ticket, now: float) -> None:
        """The turn's first audio (or text) is out: was it in time? Adapts ``limit``: a
        late turn shrinks it; one well in time grows it, if it ran with every place of the
        limit taken (only then does it say the limit is not too many)."""
        if ticket.measured:
            return
        ticket.measured = True
        waited = now - ticket.waiting_since
        if waited > self.target_s:
            self._shrink(ticket)
        elif waited <= GROW_WITHIN * self.target_s and ticket.crowd >= self.places:
            grow = 1.0 if self.slow_start else 1.0 / self.limit
            self.limit = min(float(self.slots), self.limit + grow)

    def speech_ran_dry(self, ticket: Ticket) -> None:
        """The turn's reply was made slower than it plays: the listener heard a gap.
        Shrinks ``limit`` as a late turn does (once a turn, as TCP cuts once a loss)."""
        self._shrink(ticket)

    def _shrink(self, ticket: Ticket) -> None:
        if not ticket.shrank:
            ticket.shrank = True
            self.slow_start = False
            self.limit = max(1.0, self.limit * LIMIT_DECREASE)

    def ask(
        self, owner: str, channel: Channel, now: float, waiting_since: float | None = None
    ) -> Ticket | Refusal:
        """A place for a new turn, or why not and when to come back. ``waiting_since``:
        when the person began to wait for it, if before now (a speaker waits from the end
        of their speech, the transcription included); its first output is timed from then."""
        self._kept_until.pop(owner, None)  # the place kept for this turn is its own
        ticket = self._candidate(owner, channel, now)
        if waiting_since is not None:
            ticket.waiting_since = min(now, waiting_since)
        refusal = self._refusal(ticket, now)
        if refusal is not None:
            return refusal
        self._arrivals += 1
        self._last_tag[owner] = ticket.tag
        ticket.due_at = now + self.max_wait_s
        ticket.shared = bool(self.running or self.waiting)
        self.waiting.append(ticket)
        return ticket

    def would_refuse(self, owner: str, channel: Channel, now: float) -> Refusal | None:
        """What ``ask`` would answer now, without queueing anything (for a route that must
        answer 503 before it starts a stream)."""
        return self._refusal(self._candidate(owner, channel, now), now)

    def keep_place_for_speaker(self, owner: str, now: float) -> Refusal | None:
        """A speaker paused: what ``ask`` would answer their turn now, and if it would let
        it in, a place kept for it until it asks (``PLACE_KEPT_FOR_SPEAKER_S`` at most).
        Other turns count the kept place as taken; it is not a hold of the model."""
        refusal = self.would_refuse(owner, Channel.SPOKEN, now)
        if refusal is None:
            for speaker in [o for o, until in self._kept_until.items() if until <= now]:
                del self._kept_until[speaker]  # kept too long: freed (and not piling up)
            self._kept_until[owner] = now + PLACE_KEPT_FOR_SPEAKER_S
        return refusal

    def _kept_for_others(self, ticket: Ticket, now: float) -> int:
        """The places kept for speakers other than the ticket's owner that it must leave
        (one kept too long no longer counts). A typed turn leaves one less: while someone
        speaks, typed turns already leave a place free for the next spoken turn."""
        kept = sum(
            1
            for speaker, until in self._kept_until.items()
            if speaker != ticket.owner and now < until
        )
        return max(0, kept - 1) if ticket.channel is Channel.TYPED else kept

    def _candidate(self, owner: str, channel: Channel, now: float) -> Ticket:
        if channel is Channel.SPOKEN:  # asked or only checked: someone speaks to Eva
            self._spoken_at = now
        tag = max(self._virtual, self._last_tag.get(owner, 0.0)) + 1.0
        return Ticket(owner, channel, tag, self._arrivals, asked_at=now, waiting_since=now)

    def _order(self, ticket: Ticket, now: float) -> tuple[int, int, float, int]:
        """Spoken first, then typed turns that have waited past what they were promised
        (``max_wait_s``), then the other typed ones; fair between owners within each. A
        typed turn once overdue is not passed by newer typed turns again."""
        overdue = now - ticket.asked_at > self.max_wait_s
        return (int(ticket.channel), 0 if overdue else 1, ticket.tag, ticket.order)

    def _refusal(self, ticket: Ticket, now: float) -> Refusal | None:
        wait = self.expected_wait_s(ticket, now)
        if wait <= self.max_wait_s:
            return None
        return Refusal(
            retry_after_s=max(1, math.ceil(wait - self.max_wait_s)),
            reason=f"Eva is answering {len(self.running)} people and "
            f"{len(self.waiting)} are waiting",
        )

    @property
    def hold_bound_s(self) -> float:
        """How long a turn is expected to hold its place at most, as promises are made."""
        return self.hold_s + HOLD_DEVIATIONS * self.hold_dev_s

    def expected_wait_s(self, ticket: Ticket, now: float) -> float:
        """How long ``ticket`` would wait for a place if it were queued now: each turn
        ahead of it takes the place that frees first and holds it for ``hold_bound_s``; a
        running turn is expected to end ``hold_bound_s`` after it started, and one already
        past that, a deviation from now."""
        mine = self._order(ticket, now)
        ahead = sum(1 for other in self.waiting if self._order(other, now) < mine)
        ahead += self._kept_for_others(ticket, now)  # a kept place is taken first
        places = self.places_for(ticket.channel, now)
        if len(self.running) + ahead < places:
            return 0.0
        starts = [t.started_at for t in self.running if t.started_at is not None]
        frees = sorted(
            max(now + self.hold_dev_s, started + self.hold_bound_s) for started in starts
        )
        # With more running than places (the limit just shrank), the first ends only bring
        # them down to the limit: a place opens at the end after those.
        frees = frees[max(0, len(frees) - places) :]
        frees += [now] * (places - len(frees))
        heapq.heapify(frees)
        for _ in range(ahead):
            heapq.heappush(frees, heapq.heappop(frees) + self.hold_bound_s)
        return frees[0] - now

    def start_next(self, now: float) -> list[Ticket]:
        """The waiting turns that start now, in order, as places are free. A turn whose
        promise is due starts beyond the limit, as long as the model has a slot: the
        limit may have shrunk, or holds run long, after it was admitted, and an admitted
        turn must not wait longer than it was promised."""
        started: list[Ticket] = []
        while self.waiting and len(self.running) < self.slots:
            candidates = [
                turn
                for turn in self.waiting
                if turn.due_at <= now
                or len(self.running) + self._kept_for_others(turn, now)
                < self.places_for(turn.channel, now)
            ]
            if not candidates:
                break
            ticket = min(candidates, key=lambda waiting: self._order(waiting, now))
            self.waiting.remove(ticket)
            ticket.started_at = now
            self._virtual = max(self._virtual, ticket.tag)
            self.running.add(ticket)
            for other in self.running:
                if not other.measured:
                    other.crowd = max(other.crowd, len(self.running))
            started.append(ticket)
        return started

    def next_due(self, now: float) -> float | None:
        """When the next waiting turn's promise comes due, or a place kept for a speaker
        is freed, after ``now`` (``start_next`` then). One already due that has not
        started waits for a slot, i.e. a finish."""
        wakes = [t.due_at for t in self.waiting if now < t.due_at < math.inf]
        if self.waiting:
            wakes += [until for until in self._kept_until.values() if now < until]
        return min(wakes, default=None)

    def finish(self, ticket: Ticket, now: float) -> None:
        """The turn is over (or left while waiting); a hold it had updates the estimate."""
        if ticket in self.running:
            self.running.remove(ticket)
            assert ticket.started_at is not None
            error = (now - ticket.started_at) - self.hold_s
            self.hold_dev_s += DEVIATION_SMOOTHING * (abs(error) - self.hold_dev_s)
            self.hold_s += HOLD_SMOOTHING * error
        elif ticket in self.waiting:
            self.waiting.remove(ticket)
        if not self.running and not self.waiting:
            # Idle: forget old tags, so they stay small and nobody carries a debt forever.
            self._last_tag.clear()
            self._virtual = 0.0

    def waiting_by_channel(self) -> dict[Channel, int]:
        counts = dict.fromkeys(Channel, 0)
        for ticket in self.waiting:
            counts[ticket.channel] += 1
        return counts
