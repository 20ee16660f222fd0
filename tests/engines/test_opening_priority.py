"""When a reply gives way to another's opening words, and for how long: pure timing, on a
virtual clock (a yield's real wait is bounded by polling, proved with short real bounds)."""

from __future__ import annotations

import threading
import time

from eva.engines.opening_priority import OpeningPriority

OPENING = 4
# Text enough for a minute of speech: far more written ahead than any yield lasts.
AHEAD = 60 * 20


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _priority(clock: VirtualClock, min_run_s: float = 1.0) -> OpeningPriority:
    return OpeningPriority(opening_tokens=OPENING, max_yield_s=1.5, min_run_s=min_run_s,
                           clock=clock)  # fmt: skip


def test_a_reply_past_its_opening_gives_way_only_while_another_is_in_its_opening() -> None:
    clock = VirtualClock()
    priority = _priority(clock)
    with priority.reply() as heard:
        heard.wrote(OPENING, AHEAD)
        clock.now = 2.0
        assert not heard.should_yield(), "nobody else is opening"
        with priority.reply() as new:
            assert heard.should_yield()
            assert not new.should_yield(), "a reply in its opening never gives way"
            new.wrote(OPENING - 1, 20)
            assert heard.should_yield()
            new.wrote(OPENING, AHEAD)
            assert not heard.should_yield(), "the new reply's opening is written"


def test_a_reply_gives_way_only_with_more_speech_written_ahead_than_the_yield_lasts() -> None:
    clock = VirtualClock()
    priority = OpeningPriority(opening_tokens=OPENING, max_yield_s=1.5, min_run_s=0.0,
                               speech_chars_per_s=20.0, yield_cushion_s=0.5,
                               clock=clock)  # fmt: skip
    with priority.reply() as heard:
        heard.wrote(OPENING, 20 * 3)  # three seconds of speech, written at once
        with priority.reply():
            clock.now = 0.5
            assert heard.should_yield(), "2.5 s ahead covers a 1.5 s yield and its cushion"
            clock.now = 1.01
            assert not heard.should_yield(), "under 2 s ahead: the listener would hear a gap"
            heard.wrote(OPENING + 10, 20 * 4)
            assert heard.should_yield(), "written further ahead again"


def test_two_replies_in_their_openings_do_not_stop_each_other() -> None:
    clock = VirtualClock()
    priority = _priority(clock)
    with priority.reply() as first, priority.reply() as second:
        clock.now = 5.0
        assert not first.should_yield() and not second.should_yield()


def test_a_priming_request_does_not_claim_an_opening() -> None:
    clock = VirtualClock()
    priority = _priority(clock)
    with priority.reply() as heard:
        heard.wrote(OPENING, AHEAD)
        clock.now = 2.0
        with priority.reply(claims=False):
            assert priority.openings == 0
            assert not heard.should_yield()


def test_a_reply_that_ends_in_its_opening_releases_it() -> None:
    clock = VirtualClock()
    priority = _priority(clock)
    with priority.reply() as short:
        short.wrote(1, 4)
    assert priority.openings == 0


def test_after_giving_way_a_reply_runs_its_minimum_before_giving_way_again() -> None:
    clock = VirtualClock()
    priority = _priority(clock, min_run_s=1.0)
    cancel = threading.Event()
    with priority.reply() as heard:
        heard.wrote(OPENING, AHEAD)
        clock.now = 1.0
        with priority.reply():
            assert heard.should_yield()
            # the opening outlasts the yield: the virtual clock runs past max_yield_s
            waiter = threading.Thread(target=heard.wait_turn, args=(cancel,))
            waiter.start()
            time.sleep(0.05)
            clock.now = 3.0
            waiter.join(timeout=2)
            assert not waiter.is_alive(), "the yield outlasted max_yield_s"
            assert not heard.should_yield(), "it gives way again before its minimum run"
            clock.now = 3.99
            assert not heard.should_yield()
            clock.now = 4.0
            assert heard.should_yield()
    assert priority.yields == 1


def test_a_waiting_reply_continues_as_soon_as_the_opening_is_written() -> None:
    priority = OpeningPriority(opening_tokens=OPENING, max_yield_s=30.0, min_run_s=0.0)
    with priority.reply() as heard:
        heard.wrote(OPENING, AHEAD)
        with priority.reply() as new:
            waiter = threading.Thread(target=heard.wait_turn, args=(threading.Event(),))
            started = time.monotonic()
            waiter.start()
            time.sleep(0.1)
            assert waiter.is_alive()
            new.wrote(OPENING, AHEAD)
            waiter.join(timeout=5)
            assert not waiter.is_alive()
            assert time.monotonic() - started < 5, "it waited out max_yield_s"


def test_a_cancelled_reply_stops_waiting_within_a_poll() -> None:
    priority = OpeningPriority(opening_tokens=OPENING, max_yield_s=30.0, min_run_s=0.0)
    cancel = threading.Event()
    with priority.reply() as heard:
        heard.wrote(OPENING, AHEAD)
        with priority.reply():
            waiter = threading.Thread(target=heard.wait_turn, args=(cancel,))
            waiter.start()
            time.sleep(0.1)
            cancel.set()
            waiter.join(timeout=1)
            assert not waiter.is_alive()


def test_a_third_opening_waits_until_one_of_two_is_written() -> None:
    priority = OpeningPriority(opening_tokens=OPENING, max_openings=2, max_opening_wait_s=30.0)
    with priority.reply() as first, priority.reply():
        began = threading.Event()

        def third() -> None:
            with priority.reply():
                began.set()

        waiter = threading.Thread(target=third)
        waiter.start()
        assert not began.wait(0.2), "a third opening began beside two"
        first.wrote(OPENING, AHEAD)
        assert began.wait(5)
        waiter.join(5)


def test_a_waiting_opening_begins_after_its_longest_wait_or_when_cancelled() -> None:
    clock = VirtualClock()
    priority = OpeningPriority(opening_tokens=OPENING, max_openings=1, max_opening_wait_s=2.0,
                               clock=clock)  # fmt: skip
    with priority.reply():
        began = threading.Event()

        def second(cancel: threading.Event) -> None:
            with priority.reply(cancel=cancel):
                began.set()

        waiter = threading.Thread(target=second, args=(threading.Event(),))
        waiter.start()
        assert not began.wait(0.1)
        clock.now = 2.0  # its longest wait is over
        assert began.wait(5)
        waiter.join(5)
        cancel = threading.Event()
        cancelled = threading.Thread(target=second, args=(cancel,))
        began.clear()
        cancelled.start()
        assert not began.wait(0.1)
        cancel.set()
        assert began.wait(5)
        cancelled.join(5)
