"""Replies still writing their opening words go before replies that are already heard.

On a CPU-bound model server every stream it batches slows the others down: a new turn's
prompt and first clause, which someone waits for in silence, share the cores with replies
whose first audio is out and whose listener has seconds of speech still to hear. Under
load that sharing made a new reply's first token come 1-5 s after it asked (prompt eval at
20-40 ms a token instead of ~4). vLLM's scheduler answers this by putting prefills first;
llama-server has no priorities, so Eva makes them with the tools it has: a reply past its
opening (``OPENING_TOKENS``) stops its request while another reply is in its opening, and
continues it afterwards from the text it wrote (the server keeps that prompt in the slot,
so continuing costs a few tokens). A reply gives way only with more speech written ahead
of what its listener can have heard than the yield lasts (``SPEECH_CHARS_PER_S``,
``YIELD_CUSHION_S``): under load the model writes only about twice as fast as speech
plays, and replies that gave way without that measure went silent for seconds mid-sentence
(eva loadtest counts the gaps; docs/scaling.md).

Only the timing lives here (``Reply.should_yield``, ``Reply.wait_turn``); the request that
stops and continues is the engine's (``eva.engines.llm_openai``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# A reply's opening: its first clause, which the person waits for in silence, and the
# next. The first clause is 24 characters at most (FIRST_CLAUSE_MAX_CHARS in turn.py);
# sixteen tokens (~12 words) cover both, and are ~4 s of speech, more than a yield lasts.
OPENING_TOKENS = 16
# The longest a reply past its opening stops for others' openings at a time: less than the
# speech it has usually written ahead (see above).
MAX_YIELD_S = 1.5
# After continuing, a reply runs at least this long before it yields again, so that a
# stream of new turns under overload slows the replies under way but never stops them.
MIN_RUN_S = 1.0
# Openings written at once; another waits for one of them to be written. llama-server
# batches every prompt it has: four new turns asked within a second on 2 cores all got
# their first token together, 4.3 s later, where two at once get theirs in 1-2 s.
MAX_OPENINGS = 2
# The longest a reply waits to begin its opening: about one opening's length under load,
# so a stalled one (its reader gone slow) holds nobody up for longer.
MAX_OPENING_WAIT_S = 2.5
# How fast the packaged voice speaks, in characters of text a second (Piper's
# en_US-joe-medium read 19 on three sentences; 20 errs towards speech being used up
# sooner). The speech a reply has written ahead is estimated from its text and the time
# since its first token, as if it had been heard from then on: an estimate on the side of
# giving way less.
SPEECH_CHARS_PER_S = 20.0
# Speech a reply keeps ahead beyond the yield itself: the time to synthesize what comes
# after it (0.1-0.5 s a clause on a loaded machine) and the player's cushion.
YIELD_CUSHION_S = 0.75
# How often a yielding reply looks at its cancel flag: a turn cut by the person frees its
# worker thread within a frame of audio.
_CANCEL_POLL_S = 0.02


class Reply:
    """One reply's place: in its opening, then under way (and yielding to openings)."""

    def __init__(self, priority: OpeningPriority, claims: bool) -> None:
        self._priority = priority
        self.opening = claims
        self._ran_since = priority.clock()
        self._first_at: float | None = None  # its first token
        self._chars = 0

    def wrote(self, tokens: int, chars: int) -> None:
        """The reply has written ``tokens`` (``chars`` of text) so far: past its opening,
        it gives way."""
        if self._first_at is None:
            self._first_at = self._priority.clock()
        self._chars = chars
        if self.opening and tokens >= self._priority.opening_tokens:
            self._priority.opening_done(self)

    def speech_ahead_s(self) -> float:
        """Seconds of speech written that its listener cannot have heard yet."""
        if self._first_at is None:
            return 0.0
        heard_s = self._priority.clock() - self._first_at
        return self._chars / self._priority.speech_chars_per_s - heard_s

    def should_yield(self) -> bool:
        """Whether to stop the request now: another reply is in its opening, and this one
        is past its own, has run for ``MIN_RUN_S`` since it last yielded, and has more
        speech written ahead than the yield lasts (``YIELD_CUSHION_S`` to spare)."""
        priority = self._priority
        return (
            not self.opening
            and priority.openings > 0
            and priority.clock() - self._ran_since >= priority.min_run_s
            and self.speech_ahead_s() >= priority.max_yield_s + priority.yield_cushion_s
        )

    def wait_turn(self, cancel: threading.Event) -> None:
        """Until no reply is in its opening, ``MAX_YIELD_S`` has passed, or ``cancel``."""
        self._priority.wait_for_openings(cancel)
        self._ran_since = self._priority.clock()


class OpeningPriority:
    """Counts the replies in their opening, for every stream of one model server."""

    def __init__(
        self,
        opening_tokens: int = OPENING_TOKENS,
        max_yield_s: float = MAX_YIELD_S,
        min_run_s: float = MIN_RUN_S,
        max_openings: int = MAX_OPENINGS,
        max_opening_wait_s: float = MAX_OPENING_WAIT_S,
        speech_chars_per_s: float = SPEECH_CHARS_PER_S,
        yield_cushion_s: float = YIELD_CUSHION_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.opening_tokens = opening_tokens
        self.max_openings = max_openings
        self.max_opening_wait_s = max_opening_wait_s
        self.max_yield_s = max_yield_s
        self.min_run_s = min_run_s
        self.speech_chars_per_s = speech_chars_per_s
        self.yield_cushion_s = yield_cushion_s
        self.clock = clock
        self.openings = 0
        self.yields = 0  # requests stopped for another's opening, since start
        self._changed = threading.Condition()

    @contextmanager
    def reply(self, claims: bool = True, cancel: threading.Event | None = None) -> Iterator[Reply]:
        """One reply's life. ``claims``: whether its opening goes first (a reply someone
        waits for); a request of a token or two (priming a prompt) does not. A claim waits
        while ``max_openings`` are being written (``max_opening_wait_s`` at most)."""
        if claims:
            self._claim(cancel or threading.Event())
        reply = Reply(self, claims)
        try:
            yield reply
        finally:
            self.opening_done(reply)

    def _claim(self, cancel: threading.Event) -> None:
        with self._changed:
            self._wait_while(
                lambda: self.openings >= self.max_openings, self.max_opening_wait_s, cancel
            )
            self.openings += 1

    def opening_done(self, reply: Reply) -> None:
        with self._changed:
            if reply.opening:
                reply.opening = False
                self.openings -= 1
                self._changed.notify_all()

    def wait_for_openings(self, cancel: threading.Event) -> None:
        with self._changed:
            self.yields += 1
            self._wait_while(lambda: self.openings > 0, self.max_yield_s, cancel)

    def _wait_while(
        self, busy: Callable[[], bool], longest_s: float, cancel: threading.Event
    ) -> None:
        """With the lock held: until ``busy()`` is false, ``longest_s`` or ``cancel``."""
        deadline = self.clock() + longest_s
        while busy() and not cancel.is_set():
            left = deadline - self.clock()
            if left <= 0:
                return
            self._changed.wait(min(left, _CANCEL_POLL_S))
