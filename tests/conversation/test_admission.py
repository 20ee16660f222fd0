"""The fair queue for the model: pure logic, fed the time by hand."""

from __future__ import annotations

import pytest

from eva.conversation.admission import (
    LIMIT_DECREASE,
    PLACE_KEPT_FOR_SPEAKER_S,
    Channel,
    FairTurnQueue,
    Refusal,
    Ticket,
)


def _ticket(
    queue: FairTurnQueue, owner: str, channel: Channel = Channel.TYPED, now: float = 0.0
) -> Ticket:
    answer = queue.ask(owner, channel, now)
    assert isinstance(answer, Ticket), answer
    return answer


def test_turns_start_at_once_while_slots_are_free() -> None:
    queue = FairTurnQueue(slots=2, max_wait_s=10, hold_s=3.0, hold_dev_s=0.0)
    first, second = _ticket(queue, "a"), _ticket(queue, "b")
    assert queue.start_next(now=0.0) == [first, second]
    third = _ticket(queue, "c")
    assert queue.start_next(now=0.0) == []
    queue.finish(first, now=1.0)
    assert queue.start_next(now=1.0) == [third]


def test_a_spoken_turn_goes_before_every_waiting_typed_turn() -> None:
    queue = FairTurnQueue(slots=1, max_wait_s=100)
    running = _ticket(queue, "a")
    queue.start_next(0.0)
    typed = [_ticket(queue, f"typed{i}") for i in range(3)]
    spoken = _ticket(queue, "speaker", Channel.SPOKEN)
    queue.finish(running, 1.0)
    assert queue.start_next(1.0) == [spoken]
    queue.finish(spoken, 2.0)
    assert queue.start_next(2.0) == [typed[0]]


def test_one_persons_rapid_turns_do_not_starve_another() -> None:
    queue = FairTurnQueue(slots=1, max_wait_s=100)
    running = _ticket(queue, "other")
    queue.start_next(0.0)
    rapid = [_ticket(queue, "rapid") for _ in range(4)]
    late = _ticket(queue, "late")  # asked after all of rapid's turns
    order = []
    now = 0.0
    queue.finish(running, now)
    while queue.waiting:
        (started,) = queue.start_next(now)
        order.append(started)
        now += 1.0
        queue.finish(started, now)
    assert order.index(late) <= 1, [t.owner for t in order]  # FIFO would make it last
    assert [t for t in order if t.owner == "rapid"] == rapid  # one person's own order kept


def test_a_turn_that_would_wait_too_long_is_refused_with_when_to_come_back() -> None:
    queue = FairTurnQueue(slots=2, max_wait_s=2.0, hold_s=1.5, hold_dev_s=0.0)
    for owner in ("a", "b", "c", "d"):  # two running, two waiting: the next waits 3 s
        _ticket(queue, owner)
    queue.start_next(0.0)
    answer = queue.ask("e", Channel.TYPED, 0.0)
    assert isinstance(answer, Refusal)
    assert answer.retry_after_s >= 1 and "waiting" in answer.reason
    assert len(queue.waiting) == 2  # the refused turn took no place
    assert queue.would_refuse("e", Channel.TYPED, 0.0) is not None


def test_a_spoken_turn_is_admitted_where_a_typed_one_is_refused() -> None:
    queue = FairTurnQueue(slots=1, max_wait_s=1.0, hold_s=1.0, hold_dev_s=0.0)
    for owner in ("a", "b"):  # one running, one waiting
        _ticket(queue, owner)
    queue.start_next(0.0)
    assert isinstance(queue.ask("typist", Channel.TYPED, 0.0), Refusal)
    assert isinstance(queue.ask("speaker", Channel.SPOKEN, 0.0), Ticket)


def test_the_wait_estimate_follows_measured_holds() -> None:
    queue = FairTurnQueue(slots=1, max_wait_s=10, hold_s=3.0, hold_dev_s=0.0)
    for _ in range(60):
        ticket = _ticket(queue, "a")
        queue.start_next(0.0)
        queue.finish(ticket, 0.5)
    assert queue.hold_s == pytest.approx(0.5, abs=0.05)


def test_an_idle_queue_forgets_old_debts() -> None:
    queue = FairTurnQueue(slots=1, max_wait_s=100)
    for _ in range(5):
        ticket = _ticket(queue, "busy")
        queue.start_next(0.0)
        queue.finish(ticket, 1.0)
    fresh = _ticket(queue, "busy")
    assert fresh.tag == 1.0


def test_a_turn_that_leaves_while_waiting_gives_its_place_back() -> None:
    queue = FairTurnQueue(slots=1, max_wait_s=100)
    running, waiting = _ticket(queue, "a"), _ticket(queue, "b")
    queue.start_next(0.0)
    queue.finish(waiting, 0.5)
    assert queue.waiting == []
    queue.finish(running, 1.0)
    assert queue.start_next(1.0) == []


def test_the_wait_counts_down_as_the_running_turns_near_their_end() -> None:
    queue = FairTurnQueue(slots=1, max_wait_s=1.0, hold_s=3.0, hold_dev_s=0.0)
    _ticket(queue, "a")
    queue.start_next(0.0)
    assert isinstance(queue.ask("b", Channel.TYPED, 0.5), Refusal)  # 2.5 s to go
    assert isinstance(queue.ask("b", Channel.TYPED, 2.5), Ticket)  # 0.5 s to go


def test_a_refused_person_is_first_in_line_once_admitted() -> None:
    queue = FairTurnQueue(slots=1, max_wait_s=1.0, hold_s=2.0, hold_dev_s=0.0)
    first = _ticket(queue, "rapid")
    queue.start_next(0.0)
    assert isinstance(queue.ask("patient", Channel.TYPED, 0.1), Refusal)
    patient = _ticket(queue, "patient", now=1.5)
    again = queue.ask("rapid", Channel.TYPED, 1.6)  # the rapid one's next turn
    queue.finish(first, 2.0)
    assert queue.start_next(2.0) == [patient]
    assert isinstance(again, Refusal) or again in queue.waiting


def _together(queue: FairTurnQueue, owners: list[str], now: float) -> list[Ticket]:
    """Turns asked and started at the same moment, all of them."""
    tickets = [_ticket(queue, owner, now=now) for owner in owners]
    assert queue.start_next(now) == tickets
    return tickets


def test_a_new_queue_lets_two_turns_in_and_a_whole_place_more_per_full_turn_in_time() -> None:
    queue = FairTurnQueue(slots=4, max_wait_s=100, target_s=2.0)
    assert queue.places == 2  # nothing timed yet: two at once
    (alone,) = _together(queue, ["a"], 0.0)
    queue.first_output(alone, 1.0)
    queue.finish(alone, 1.0)
    assert queue.places == 2  # in time, but beside nobody: says nothing about two
    pair = _together(queue, ["b", "c"], 2.0)
    for ticket in pair:
        queue.first_output(ticket, 3.0)
        queue.finish(ticket, 3.0)
    assert queue.places == 3  # slow start: a whole place; the second did not fill three
    trio = _together(queue, ["d", "e", "f"], 4.0)
    queue.first_output(trio[0], 10.0)  # late: slow start is over
    assert queue.limit == 3 * LIMIT_DECREASE and not queue.slow_start
    for ticket in trio:
        queue.finish(ticket, 10.0)
    pair = _together(queue, ["g", "h"], 20.0)
    queue.first_output(pair[0], 21.0)  # now 1/limit for a full turn in time
    assert queue.limit == pytest.approx(3 * LIMIT_DECREASE + 1 / (3 * LIMIT_DECREASE))


def test_a_turn_in_time_grows_the_limit_only_if_it_filled_it_and_was_well_in_time() -> None:
    queue = FairTurnQueue(slots=4, max_wait_s=100, target_s=2.0, limit=2.0, slow_start=False)
    (alone,) = _together(queue, ["a"], 0.0)
    queue.first_output(alone, 0.5)  # in time, but beside nobody: says nothing about two
    queue.finish(alone, 1.0)
    assert queue.limit == 2.0
    pair = _together(queue, ["b", "c"], 2.0)
    queue.first_output(pair[0], 2.0 + 0.9 * 2.0)  # full, in time but close to the target
    assert queue.limit == 2.0
    queue.first_output(pair[1], 3.0)  # full and well in time
    assert queue.limit == 2.5


def test_a_speakers_turn_is_timed_from_when_they_began_to_wait_not_from_its_asking() -> None:
    queue = FairTurnQueue(slots=4, max_wait_s=100, target_s=2.0, limit=2.0, slow_start=False)
    heard = queue.ask("speaker", Channel.SPOKEN, 10.0, waiting_since=9.0)  # transcribed 1 s
    assert isinstance(heard, Ticket)
    queue.start_next(10.0)
    queue.first_output(heard, 11.5)  # 1.5 s after asking, 2.5 s after the person stopped
    assert queue.limit == 2.0 * LIMIT_DECREASE


def test_without_a_latency_target_every_slot_is_a_place_from_the_start() -> None:
    assert FairTurnQueue(slots=4, max_wait_s=100).places == 4


def test_late_first_outputs_let_fewer_turns_in_at_once_and_timely_ones_more() -> None:
    queue = FairTurnQueue(slots=4, max_wait_s=100, target_s=2.0, limit=4.0, slow_start=False)
    assert queue.places == 4
    for n in range(6):  # four at once were slow to their first audio
        ticket = _ticket(queue, f"p{n}", now=0.0)
        queue.start_next(0.0)
        queue.first_output(ticket, 3.0)
        queue.first_output(ticket, 9.0)  # counted once
        queue.finish(ticket, 4.0)
    assert queue.places == 1
    tickets = [_ticket(queue, f"q{n}", now=10.0) for n in range(2)]
    assert queue.start_next(10.0) == tickets[:1]  # one at a time now
    for ticket in tickets:
        queue.finish(ticket, 11.0)
    for round_ in range(8):  # full rounds in time: room grows back, one place per round
        now = 20.0 + round_
        for ticket in _together(queue, [f"r{round_}.{n}" for n in range(queue.places)], now):
            queue.first_output(ticket, now + 0.5)
            queue.finish(ticket, now + 0.5)
    assert queue.places >= 3


def test_a_reply_whose_speech_ran_dry_lets_fewer_turns_in_once_even_when_also_late() -> None:
    queue = FairTurnQueue(slots=4, max_wait_s=100, target_s=2.0)
    (timely,) = _together(queue, ["a"], 0.0)
    queue.first_output(timely, 1.0)  # in time ...
    grown = queue.limit
    queue.speech_ran_dry(timely)  # ... but its speech stopped mid-reply
    assert queue.limit == grown * LIMIT_DECREASE
    late = _ticket(queue, "b", now=0.0)
    queue.first_output(late, 5.0)
    queue.speech_ran_dry(late)  # one cut a turn, as TCP cuts once a loss
    assert queue.limit == grown * LIMIT_DECREASE**2


def test_a_shrunk_limit_counts_the_running_turns_beyond_it_in_the_wait() -> None:
    queue = FairTurnQueue(slots=2, max_wait_s=100, hold_s=2.0, hold_dev_s=0.0, limit=2.0)
    for owner in ("a", "b"):
        _ticket(queue, owner)
    queue.start_next(0.0)
    queue.limit = 1.0  # two running, one place: a place opens when both have ended
    assert queue.expected_wait_s(queue._candidate("c", Channel.TYPED, 0.0), 0.0) == 2.0


def test_a_typed_turn_waiting_past_its_promise_is_passed_by_no_newer_typed_turn() -> None:
    queue = FairTurnQueue(slots=1, max_wait_s=1.0, hold_s=0.3, hold_dev_s=0.0)
    running = _ticket(queue, "a")
    queue.start_next(0.0)
    for _ in range(3):  # the rapid typist's next turns queue up, then go overdue
        _ticket(queue, "rapid", now=0.1)
    newcomer = _ticket(queue, "newcomer", now=1.4)  # fair order alone would put it first
    queue.finish(running, 1.5)
    (started,) = queue.start_next(1.5)
    assert started.owner == "rapid" and newcomer in queue.waiting
    spoken = _ticket(queue, "speaker", Channel.SPOKEN, now=1.6)
    queue.finish(started, 2.0)
    assert queue.start_next(2.0) == [spoken]  # spoken still goes first


def test_holds_that_vary_make_promises_on_more_than_their_mean() -> None:
    steady = FairTurnQueue(slots=1, max_wait_s=100)
    varied = FairTurnQueue(slots=1, max_wait_s=100)
    for held in [4.0, 4.0, 4.0, 4.0] * 10:
        ticket = _ticket(steady, "s", now=0.0)
        steady.start_next(0.0)
        steady.finish(ticket, held)
    for held in [1.0, 7.0, 2.0, 6.0] * 10:
        ticket = _ticket(varied, "v", now=0.0)
        varied.start_next(0.0)
        varied.finish(ticket, held)
    assert abs(steady.hold_s - varied.hold_s) < 1.0  # about the same mean
    assert steady.hold_bound_s < 4.5 < varied.hold_bound_s  # but not the same promise


def test_an_admitted_turn_starts_by_its_promise_even_beyond_a_shrunk_limit() -> None:
    queue = FairTurnQueue(slots=2, max_wait_s=1.0, hold_s=0.3, hold_dev_s=0.0, limit=1.0)
    running = _ticket(queue, "a")
    queue.start_next(0.0)
    promised = _ticket(queue, "b")  # a place is expected in 0.3 s, promised within 1 s
    assert queue.next_due(0.0) == 1.0
    assert queue.start_next(0.5) == []  # the running turn holds on longer than expected
    assert queue.start_next(1.0) == [promised]  # due: it starts beside it, in the 2nd slot
    assert queue.running == {running, promised}
    assert queue.next_due(1.0) is None


def test_a_due_turn_still_waits_for_a_free_slot_of_the_model() -> None:
    queue = FairTurnQueue(slots=1, max_wait_s=1.0, hold_s=0.3, hold_dev_s=0.0)
    running = _ticket(queue, "a")
    queue.start_next(0.0)
    waiting = _ticket(queue, "b")
    assert queue.start_next(2.0) == []  # past its promise, but the one slot is taken
    assert queue.next_due(2.0) is None  # nothing to wake for until a turn ends
    queue.finish(running, 2.5)
    assert queue.start_next(2.5) == [waiting]


def test_a_turn_admitted_while_others_use_the_model_is_marked_shared() -> None:
    queue = FairTurnQueue(slots=2, max_wait_s=10)
    alone = _ticket(queue, "a")
    assert not alone.shared  # nobody else: a reply of full length
    queue.start_next(0.0)
    assert _ticket(queue, "b").shared  # "a" holds the model: a shorter reply
    queue.finish(alone, 1.0)


def test_a_spoken_turn_runs_beside_another_even_when_the_limit_is_one() -> None:
    queue = FairTurnQueue(slots=4, max_wait_s=1.0, hold_s=5.0, hold_dev_s=0.0, limit=1.0)
    _ticket(queue, "typist")
    queue.start_next(0.0)
    assert isinstance(queue.ask("second typist", Channel.TYPED, 0.0), Refusal)
    speaker = _ticket(queue, "speaker", Channel.SPOKEN)
    assert queue.start_next(0.0) == [speaker]
    assert isinstance(queue.ask("second speaker", Channel.SPOKEN, 0.0), Refusal)


def test_while_someone_speaks_typed_turns_leave_one_place_free_for_the_next_spoken_turn() -> None:
    queue = FairTurnQueue(slots=4, max_wait_s=1.0, hold_s=5.0, hold_dev_s=0.0, limit=3.0)
    first = _ticket(queue, "speaker", Channel.SPOKEN)
    queue.start_next(0.0)
    queue.finish(first, 1.0)
    typists = [_ticket(queue, f"t{n}", now=2.0) for n in range(2)]
    assert queue.start_next(2.0) == typists
    assert isinstance(queue.ask("third typist", Channel.TYPED, 2.0), Refusal)  # kept free
    speaker = _ticket(queue, "speaker", Channel.SPOKEN, now=3.0)
    assert queue.start_next(3.0) == [speaker]  # ... for the speaker, within the limit
    assert isinstance(queue.ask("second speaker", Channel.SPOKEN, 3.0), Refusal)
    for ticket in [*typists, speaker]:
        queue.finish(ticket, 4.0)
    # Nobody has spoken for a while: typed turns have every place again.
    later = [_ticket(queue, f"u{n}", now=40.0) for n in range(3)]
    assert queue.start_next(40.0) == later


def test_a_paused_speaker_keeps_a_place_so_the_next_speaker_is_told_at_their_pause() -> None:
    queue = FairTurnQueue(slots=4, max_wait_s=1.0, hold_s=5.0, hold_dev_s=0.0, limit=2.0)
    _ticket(queue, "typist")
    queue.start_next(0.0)
    assert queue.keep_place_for_speaker("ana", 0.0) is None  # her words are transcribed
    # Ben pauses while they are: the place is hers, he is told at once.
    assert isinstance(queue.keep_place_for_speaker("ben", 0.4), Refusal)
    assert isinstance(queue.ask("ben", Channel.SPOKEN, 0.5), Refusal)
    ana = _ticket(queue, "ana", Channel.SPOKEN, now=0.8)  # her turn takes its own place
    assert queue.start_next(0.8) == [ana]


def test_a_place_kept_for_a_speaker_who_goes_on_talking_is_freed_after_a_while() -> None:
    queue = FairTurnQueue(slots=4, max_wait_s=1.0, hold_s=5.0, hold_dev_s=0.0, limit=2.0)
    _ticket(queue, "typist")
    queue.start_next(0.0)
    assert queue.keep_place_for_speaker("ana", 0.0) is None  # a pause, not the end
    assert isinstance(queue.would_refuse("ben", Channel.SPOKEN, 1.0), Refusal)
    assert queue.would_refuse("ben", Channel.SPOKEN, PLACE_KEPT_FOR_SPEAKER_S) is None


def test_typed_turns_take_no_place_kept_for_speakers_and_start_when_it_is_freed() -> None:
    queue = FairTurnQueue(slots=4, max_wait_s=10.0, hold_s=5.0, hold_dev_s=0.0, limit=3.0)
    assert queue.keep_place_for_speaker("ana", 0.0) is None
    assert queue.keep_place_for_speaker("ben", 0.0) is None
    # With speakers around, typed turns have two of the three places and leave the third
    # for the next spoken turn: that is ana's; ben's is kept from the typed ones' two.
    first, second = _ticket(queue, "t1"), _ticket(queue, "t2")
    assert queue.start_next(0.0) == [first]
    assert queue.next_due(0.0) == PLACE_KEPT_FOR_SPEAKER_S  # the kept places are freed then
    assert queue.start_next(PLACE_KEPT_FOR_SPEAKER_S) == [second]
