"""Which slot of a llama.cpp server each conversation uses, and the bookkeeping of the
prompts saved while another conversation uses a slot. Pure logic; the save and restore
with a real llama-server are proved in test_llm_llamaserver.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from eva.engines.llama_slots import ANY_SLOT, SavedPrompts, SlotTable


def _turn(table: SlotTable, session: str) -> int:
    """One whole request: the slot taken, then given back."""
    slot = table.take(session).index
    table.give_back(slot)
    return slot


def test_conversations_beyond_the_slots_take_the_least_recently_used_one() -> None:
    table = SlotTable(2)
    assert [_turn(table, s) for s in ("a", "b", "a")] == [0, 1, 0]
    assert _turn(table, "c") == 1  # b was heard from least recently
    assert _turn(table, "a") == 0 and _turn(table, "b") == 1
    assert table.take("").index == ANY_SLOT  # a one-off request: the server chooses


def test_a_conversation_never_takes_a_slot_that_is_writing_while_another_is_idle() -> None:
    table = SlotTable(3, own_slot_wait_s=0.0)
    assert [_turn(table, s) for s in ("a", "b", "c")] == [0, 1, 2]
    writing = table.take("a").index  # a's reply is being written in slot 0
    assert writing == 0
    # d's least recently used slot would be a's: it gets b's, which is idle
    assert table.take("d").index == 1
    assert table.take("a").index == 2  # a again, its slot writing on: not its busy slot
    assert table.take("e").index == ANY_SLOT  # all three writing: the server chooses and queues
    table.give_back(writing)
    assert table.take("e").index == 0


def test_a_conversation_waits_for_its_own_slot_to_finish_a_cancelled_request() -> None:
    table = SlotTable(2, own_slot_wait_s=10.0)
    cancelled = table.take("a").index  # its stream closes a moment later
    threading.Timer(0.05, table.give_back, (cancelled,)).start()
    started = time.monotonic()
    assert table.take("a").index == cancelled  # where its prompt is: not evaluated again
    assert time.monotonic() - started < 5.0


def test_a_conversation_whose_slot_writes_on_takes_another_after_the_wait() -> None:
    table = SlotTable(2, own_slot_wait_s=0.05)
    busy = table.take("a").index
    started = time.monotonic()
    assert table.take("a").index != busy
    assert time.monotonic() - started >= 0.05


def test_a_slot_taken_says_whose_prompt_it_held() -> None:
    table = SlotTable(1)
    first = table.take("a")
    assert (first.index, first.held_before) == (0, "")  # fresh: only the persona
    table.give_back(0)
    assert table.take("a").held_before == "a"  # back to its own prompt
    table.give_back(0)
    assert table.take("b").held_before == "a"  # a's prompt is pushed out
    table.give_back(0)


class _RecordedServer:
    """llama-server's slot save and restore as far as the bookkeeping sees them: the
    requests, and a save that writes ``bytes_per_save`` bytes into the directory."""

    def __init__(self, directory: Path, bytes_per_save: int) -> None:
        self.directory = directory
        self.bytes_per_save = bytes_per_save
        self.requests: list[tuple[str, str]] = []
        self.failing = False

    def post(self, path: str, body: dict[str, Any]) -> Any:
        if self.failing:
            raise httpx.ConnectError("the model server is restarting")
        self.requests.append((path, body["filename"]))
        if path.endswith("action=save"):
            (self.directory / body["filename"]).write_bytes(b"\0" * self.bytes_per_save)
            return {"n_written": self.bytes_per_save}
        return {"n_read": self.bytes_per_save}


def test_a_pushed_out_prompt_is_saved_and_restored_when_its_conversation_returns(
    tmp_path: Path,
) -> None:
    server = _RecordedServer(tmp_path, bytes_per_save=10)
    kept = SavedPrompts(server.post, tmp_path, budget_bytes=100)
    kept.hand_over(0, "", "ana")  # a fresh slot: nothing to keep, nothing to put back
    assert server.requests == []
    kept.hand_over(0, "ana", "ben")  # ben takes ana's slot
    assert [path for path, _ in server.requests] == ["/slots/0?action=save"]
    saved_as = server.requests[0][1]
    assert "ana" not in saved_as  # a digest, not the session id
    kept.hand_over(1, "cy", "ana")  # ana comes back to another slot
    assert server.requests[1:] == [("/slots/1?action=save", server.requests[1][1]),
                                   ("/slots/1?action=restore", saved_as)]  # fmt: skip
    # ana's prompt is in a slot again: its file is gone, cy's is kept
    assert not (tmp_path / saved_as).exists() and kept.kept() == 1


def test_saved_prompts_beyond_the_budget_drop_the_oldest_first(tmp_path: Path) -> None:
    server = _RecordedServer(tmp_path, bytes_per_save=40)
    kept = SavedPrompts(server.post, tmp_path, budget_bytes=100)
    for n, session in enumerate(("a", "b", "c")):
        kept.hand_over(0, session, f"next-{n}")
    assert kept.kept() == 2 and len(list(tmp_path.iterdir())) == 2
    server.requests.clear()
    kept.hand_over(0, "", "a")  # a's prompt was dropped: nothing to restore
    assert server.requests == []
    kept.hand_over(0, "", "c")
    assert [path for path, _ in server.requests] == ["/slots/0?action=restore"]


def test_a_model_server_that_cannot_save_costs_only_the_evaluation(tmp_path: Path) -> None:
    server = _RecordedServer(tmp_path, bytes_per_save=10)
    kept = SavedPrompts(server.post, tmp_path, budget_bytes=100)
    kept.hand_over(0, "a", "b")
    server.failing = True
    kept.hand_over(1, "c", "a")  # neither the save nor the restore goes through: no error
    assert kept.kept() == 0 and list(tmp_path.iterdir()) == []
