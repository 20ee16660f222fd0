"""The session store on both backends (tests/store/conftest.py): durability, atomic turns,
ordering, concurrency, and a writer killed mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from eva.store import SessionStore, UnknownSessionError
from tests.store.backends import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_turns_persist_after_closing_and_reopening(backend: Backend) -> None:
    first = backend.open()
    session = first.create_session(user_id="alice")
    first.add_turn(session.id, "hello", "hi there")
    first.add_turn(session.id, "how are you?", "fine")
    first.close()

    with backend.open() as second:
        reopened = second.get_session(session.id)
        assert reopened is not None
        assert (reopened.id, reopened.user_id) == (session.id, "alice")
        assert reopened.created_at == session.created_at
        contents = [(m.role, m.content) for m in second.messages(session.id)]
        assert contents == [
            ("user", "hello"),
            ("assistant", "hi there"),
            ("user", "how are you?"),
            ("assistant", "fine"),
        ]
        assert second.count_sessions() == 1


def test_add_turn_on_unknown_session_raises_and_writes_nothing(
    store: SessionStore, backend: Backend
) -> None:
    session = store.create_session()
    with pytest.raises(UnknownSessionError):
        store.add_turn("no-such-session", "hello", "hi")
    with pytest.raises(UnknownSessionError):
        store.add_assistant_message("no-such-session", "Welcome back!")
    with pytest.raises(UnknownSessionError):
        store.messages("no-such-session")
    assert backend.query("SELECT COUNT(*) FROM messages") == [(0,)]
    assert store.messages(session.id) == []
    # The failed transaction was rolled back, so the store still works.
    store.add_turn(session.id, "a", "b")
    assert len(store.messages(session.id)) == 2


def test_add_turn_bumps_session_updated_at(store: SessionStore) -> None:
    session = store.create_session()
    time.sleep(0.01)
    _, reply = store.add_turn(session.id, "q", "a")
    updated = store.get_session(session.id)
    assert updated is not None
    assert updated.created_at == session.created_at
    assert updated.updated_at == reply.created_at > session.updated_at


def test_get_session_returns_none_for_unknown_id(store: SessionStore) -> None:
    assert store.get_session("missing") is None


def test_last_returns_most_recent_n_in_chronological_order(store: SessionStore) -> None:
    session = store.create_session()
    other = store.create_session()
    for i in range(5):
        store.add_turn(session.id, f"u{i}", f"a{i}")
        store.add_turn(other.id, f"other-u{i}", f"other-a{i}")
    recent = store.messages(session.id, last=3)
    assert [m.content for m in recent] == ["a3", "u4", "a4"]
    assert [m.id for m in recent] == sorted(m.id for m in recent)
    assert len(store.messages(session.id)) == 10
    assert len(store.messages(session.id, last=100)) == 10
    assert store.messages(session.id, last=0) == []
    with pytest.raises(ValueError):
        store.messages(session.id, last=-1)


def test_concurrent_add_turn_loses_nothing_and_ids_are_unique(store: SessionStore) -> None:
    threads_n, turns_n = 8, 25
    sessions = [store.create_session() for _ in range(threads_n)]
    errors: list[BaseException] = []
    returned_ids: list[int] = []
    ids_lock = threading.Lock()
    start = threading.Barrier(threads_n)

    def worker(index: int) -> None:
        try:
            start.wait()
            for turn in range(turns_n):
                # Half the threads share one session to contend on the same rows too.
                session = sessions[index if index % 2 else 0]
                user, reply = store.add_turn(session.id, f"t{index}-{turn}", f"r{index}-{turn}")
                assert reply.id == user.id + 1  # a turn's two messages are adjacent
                with ids_lock:
                    returned_ids.extend((user.id, reply.id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    stored = [m for s in sessions for m in store.messages(s.id)]
    assert len(stored) == threads_n * turns_n * 2
    assert len(set(returned_ids)) == len(returned_ids) == len(stored)
    assert {m.id for m in stored} == set(returned_ids)
    assert {m.content for m in stored} == {
        f"{prefix}{i}-{t}" for prefix in "tr" for i in range(threads_n) for t in range(turns_n)
    }
    # In the shared session, every question is followed by its own reply.
    shared = store.messages(sessions[0].id)
    assert [m.role for m in shared] == ["user", "assistant"] * (len(shared) // 2)
    assert all(
        q.content[1:] == a.content[1:] for q, a in zip(shared[::2], shared[1::2], strict=True)
    )


def test_message_ids_increase_monotonically(store: SessionStore) -> None:
    session = store.create_session()
    ids = [m.id for _ in range(10) for m in store.add_turn(session.id, "u", "a")]
    ids.append(store.add_assistant_message(session.id, "unprompted").id)
    ids += [m.id for m in store.add_turn(session.id, "u", "a")]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [m.id for m in store.messages(session.id)] == ids


def test_timings_round_trip_as_floats(backend: Backend) -> None:
    with backend.open() as first:
        session = first.create_session()
        user, reply = first.add_turn(session.id, "u", "a", timings={"stt": 12, "llm": 345.678})
    assert user.timings is None
    assert reply.timings == {"stt": 12.0, "llm": 345.678}
    with backend.open() as second:
        stored_user, stored_reply = second.messages(session.id)
    assert stored_user.timings is None
    assert stored_reply.timings == {"stt": 12.0, "llm": 345.678}
    assert all(type(v) is float for v in stored_reply.timings.values())


def test_interrupted_flag_round_trips(store: SessionStore) -> None:
    session = store.create_session()
    store.add_turn(session.id, "u1", "cut off", interrupted=True)
    store.add_turn(session.id, "u2", "complete")
    flags = [(m.content, m.interrupted) for m in store.messages(session.id)]
    assert flags == [("u1", False), ("cut off", True), ("u2", False), ("complete", False)]


def test_cut_reply_keeps_what_was_heard_of_that_sessions_reply_only(store: SessionStore) -> None:
    session = store.create_session()
    other = store.create_session()
    question, reply = store.add_turn(session.id, "Tell me a story.", "Once upon a time, a fox.")
    assert store.cut_reply(session.id, reply.id, "Once upon a time,")
    assert not store.cut_reply(other.id, reply.id, "hijacked")  # not that session's reply
    assert not store.cut_reply(session.id, question.id, "")  # the person's words stay
    assert not store.cut_reply(session.id, reply.id + 1000, "")
    stored = store.messages(session.id)
    assert [(m.content, m.interrupted) for m in stored] == [
        ("Tell me a story.", False),
        ("Once upon a time,", True),
    ]


def test_greeting_is_stored_as_an_assistant_message(store: SessionStore) -> None:
    session = store.create_session("ana")
    greeting = store.add_assistant_message(session.id, "Welcome back, Ana!")
    assert [(m.role, m.content) for m in store.messages(session.id)] == [
        ("assistant", "Welcome back, Ana!")
    ]
    assert greeting.id == store.messages(session.id)[0].id


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from eva.config import Settings
    from eva.store import open_store

    store = open_store(Settings(data_dir=Path(sys.argv[1]), database_url=sys.argv[2]))
    session = store.create_session()
    print("session", session.id, flush=True)
    i = 0
    while True:
        _, reply = store.add_turn(session.id, f"user {i}", f"reply {i}" * 50)
        print(reply.id, flush=True)  # printed only once the turn is committed
        i += 1
    """
)


def test_sigkill_mid_write_loop_keeps_every_committed_turn(backend: Backend) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    settings = backend.settings
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(settings.data_dir), settings.database_url],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    committed: list[int] = []
    try:
        header = child.stdout.readline().split()
        assert header[:1] == ["session"], f"writer failed to start: {header}"
        session_id = header[1]
        while len(committed) < 200:
            line = child.stdout.readline()
            assert line, "writer exited before being killed"
            committed.append(int(line))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    if backend.name == "sqlite":
        assert backend.query("PRAGMA integrity_check") == [("ok",)]
    with backend.open() as reopened:
        stored = reopened.messages(session_id)
    stored_ids = {m.id for m in stored}
    assert set(committed) <= stored_ids
    # Turns are atomic: the kill never leaves a user message without its reply.
    assert [m.role for m in stored] == ["user", "assistant"] * (len(stored) // 2)
    assert len(stored) % 2 == 0
