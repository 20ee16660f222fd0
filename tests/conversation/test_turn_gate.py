"""TurnGate: the asyncio driver of admission, with a virtual clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from eva.conversation.admission import Channel
from eva.conversation.turn_gate import ServerBusyError, TurnGate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_turn_waits_for_a_slot_and_starts_when_one_is_given_back() -> None:
    clock = Clock()
    gate = TurnGate(slots=1, max_conversations=4, max_turn_wait_s=100, clock=clock)
    first, second = gate.admit("a", Channel.TYPED), gate.admit("b", Channel.TYPED)
    order: list[str] = []

    async def turn(name: str, ticket: object) -> None:
        async with gate.holding(ticket):  # type: ignore[arg-type]
            order.append(f"{name} starts")
            await asyncio.sleep(0.01)
        order.append(f"{name} ends")
        gate.release(ticket)  # type: ignore[arg-type]

    await asyncio.gather(turn("a", first), turn("b", second))
    assert order == ["a starts", "a ends", "b starts", "b ends"]
    assert gate.capacity().turns_running == 0


async def test_a_turn_cancelled_while_waiting_leaves_the_queue() -> None:
    gate = TurnGate(slots=1, max_conversations=4, max_turn_wait_s=100, clock=Clock())
    running = gate.admit("a", Channel.TYPED)
    waiting = gate.admit("b", Channel.TYPED)

    async def wait_for_slot() -> None:
        async with gate.holding(waiting):
            raise AssertionError("never granted")

    task = asyncio.create_task(wait_for_slot())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.release(waiting)
    assert gate.capacity().turns_waiting_typed == 0
    gate.release(running)
    await asyncio.wait_for(gate.wait_idle(), 1)


async def test_conversations_beyond_the_cap_are_refused_with_a_retry_after() -> None:
    gate = TurnGate(slots=1, max_conversations=2, max_turn_wait_s=1, clock=Clock())
    gate.open_conversation()
    gate.open_conversation()
    with pytest.raises(ServerBusyError) as refused:
        gate.open_conversation()
    assert refused.value.retry_after_s >= 1
    assert not gate.capacity().accepting and gate.refusals["conversation"] == 1
    gate.close_conversation()
    gate.open_conversation()  # a place came back


async def test_conversations_refused_together_are_told_to_come_back_at_spread_times() -> None:
    gate = TurnGate(
        slots=1, max_conversations=1, max_turn_wait_s=1, clock=Clock(), jitter=random.Random(7)
    )
    gate.queue.hold_s = 8.0  # a turn holds the model about 8 s: a place frees about then
    gate.open_conversation()
    waits = []
    for _ in range(20):  # a herd, refused in the same instant
        with pytest.raises(ServerBusyError) as refused:
            gate.open_conversation()
        waits.append(refused.value.retry_after_s)
    assert all(isinstance(wait, int) and 8 <= wait <= 12 for wait in waits)
    assert len(set(waits)) >= 4  # not all back in the same second
    assert max(waits.count(wait) for wait in set(waits)) <= 10


async def test_draining_refuses_new_work_and_waits_for_turns_in_flight() -> None:
    gate = TurnGate(slots=2, max_conversations=4, max_turn_wait_s=100, clock=Clock())
    ticket = gate.admit("a", Channel.SPOKEN)
    gate.drain()
    with pytest.raises(ServerBusyError):
        gate.open_conversation()
    with pytest.raises(ServerBusyError):
        gate.admit("b", Channel.SPOKEN)
    with pytest.raises(ServerBusyError):
        gate.check("b", Channel.TYPED)
    idle = asyncio.create_task(gate.wait_idle())
    await asyncio.sleep(0.01)
    assert not idle.done()  # the admitted turn is still in flight
    gate.release(ticket)
    await asyncio.wait_for(idle, 1)
    assert gate.capacity().draining and gate.capacity().turns_waiting_spoken == 0


async def test_an_admitted_turn_is_granted_when_its_promise_comes_due_without_a_release() -> None:
    gate = TurnGate(slots=2, max_conversations=4, max_turn_wait_s=0.05)  # the real clock
    gate.queue.limit = 1.0  # one place: the second turn waits, in the second slot
    gate.queue.hold_s, gate.queue.hold_dev_s = 0.01, 0.0  # expected to free in time
    running = gate.admit("a", Channel.TYPED)
    promised = gate.admit("b", Channel.TYPED)
    assert gate.capacity().turns_waiting_typed == 1
    async with asyncio.timeout(1.0), gate.holding(promised):  # nobody releases "a"
        assert gate.capacity().turns_running == 2
    gate.release(promised)
    gate.release(running)
    await asyncio.wait_for(gate.wait_idle(), 1)
