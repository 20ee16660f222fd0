"""Replies still writing their opening words go before replies that are already heard.

On a CPU-bound model server every stream it batches slows the others down: a new turn's
prompt and first clause, which someone waits for in silence, share the cores with replies
whose first audio is out and whose listener has seconds of speech still to hear. Under
load that sharing made a new reply's first token come 1-5 s after it asked (prompt eval at
20-40 ms a token instead of ~4). vLLM's scheduler answers this by putting prefills first;
llama-server has no priorities, so Eva makes them with the tools it has: a reply past its
opening (``OPENING_TOKENS``) stops its request while another reply is in its opening, and
continues it afterwards from the text it wrote (the server keeps that prompt in the slot,
so continuing costs a few tokens). A reply is written ahead of its speech (5-10 tokens a
second under load, about 3 spoken), and a yield lasts ``MAX_YIELD_S`` at most, so the
person should hear no gap (playback gaps are not measured yet).

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
# How often a yielding reply looks at its cancel flag: a turn cut by the person frees its
# worker thread within a frame of audio.
_CANCEL_POLL_S = 0.02


class Reply:
    """One reply's place: in its opening, then under way (and yielding to openings)."""

    def __init__(self, priority: OpeningPriority, claims: bool) -> None:
        self._priority = priority
        self.opening = claims
        self._ran_since = priority.clock()

    def wrote(self, tokens: int) -> None:
        """The reply has written ``tokens`` so far: past its opening, it gives way."""
        if self.opening and tokens >= self._priority.opening_tokens:
            self._priority.opening_done(self)

    def should_yield(self) -> bool:
        """Whether to stop the request now: another reply is in its opening, and this one
        is past its own and has run for ``MIN_RUN_S`` since it last yielded."""
        return (
            not self.opening
            and self._priority.openings > 0
            and self._priority.clock() - self._ran_since >= self._priority.min_run_s
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.opening_tokens = opening_tokens
        self.max_openings = max_openings
        self.max_opening_wait_s = max_opening_wait_s
        self.max_yield_s = max_yield_s
        self.min_run_s = min_run_s
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
