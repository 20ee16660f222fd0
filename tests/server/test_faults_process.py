"""`eva serve` as a real process: SIGTERM during a turn, and SIGKILL during writes."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from eva.bench.serve_process import ServedEva

pytestmark = pytest.mark.slow

LONG_ASK = "Please tell me a long story about a lighthouse keeper and a seagull."
# uvicorn closes open WebSockets with 1012 (service restart) when it shuts down.
CLOSE_SERVICE_RESTART = 1012
# The promise: out within the drain (EVA_DRAIN_TIMEOUT_S, 20 s) and uvicorn's graceful
# shutdown (7 s) of SIGTERM, storage flushed: inside Kubernetes' default 30 s grace.
DRAIN_EXIT_S = 30.0
DRAINED_REPLY_TOKENS = 48
CLOSE_TRY_AGAIN_LATER = 1013


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def _rows(db: Path) -> list[tuple[str, str, str, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT session_id, role, content, interrupted FROM messages ORDER BY id"
        ).fetchall()


async def _events_until_closed(
    socket: Any, within: float
) -> tuple[list[dict[str, Any]], int | None]:
    events: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(within):
            async for message in socket:
                if isinstance(message, str):
                    events.append(json.loads(message))
    except websockets.ConnectionClosed:
        pass
    return events, socket.close_code


async def test_sigterm_drains_the_turn_in_flight_finishes_new_work_goes_elsewhere_then_exits(
    tmp_path: Path,
) -> None:
    # A reply of at most 48 tokens (~10 s of speech): one of the default 90 (~20 s, after
    # an acknowledgement) can outlast the 20 s drain, and the reply must finish inside it.
    served = ServedEva(tmp_path / "data", env={"EVA_MAX_REPLY_TOKENS": str(DRAINED_REPLY_TOKENS)})
    await asyncio.to_thread(served.wait_ready)
    try:
        async with websockets.connect(served.ws_url, max_size=2**24) as socket:
            created = json.loads(await socket.recv())
            await socket.send(json.dumps({"type": "text", "text": LONG_ASK}))
            async with asyncio.timeout(60):  # the reply is under way: its audio flows
                while not isinstance(await socket.recv(), bytes):
                    pass
            signalled = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            ending = asyncio.create_task(_events_until_closed(socket, DRAIN_EXIT_S))
            async with httpx.AsyncClient(base_url=served.base_url, timeout=5) as http:
                await asyncio.sleep(0.5)  # the signal is handled on the server's loop
                ready = await http.get("/health/ready")  # the balancer's check
                assert ready.status_code == 503 and ready.json()["capacity"]["draining"]
            async with websockets.connect(served.ws_url) as newcomer:  # told to go elsewhere
                refused = json.loads(await newcomer.recv())
                with pytest.raises(websockets.ConnectionClosed):
                    await newcomer.recv()
            assert refused["code"] == "busy" and refused["retry_after_s"] >= 1
            assert newcomer.close_code == CLOSE_TRY_AGAIN_LATER
            events, code = await ending
            exit_code = await asyncio.to_thread(served.process.wait, DRAIN_EXIT_S)
            exited_after = time.monotonic() - signalled
    finally:
        served.kill()
    print(f"\nSIGTERM: drained and exited after {exited_after:.2f} s")
    done = [e for e in events if e["type"] == "response.done"]
    assert len(done) == 1 and not done[0]["interrupted"], events  # the turn finished whole
    assert code == CLOSE_SERVICE_RESTART, (code, [e["type"] for e in events])
    # uvicorn re-raises the signal once it has shut down cleanly: the exit status says so.
    assert exit_code == -signal.SIGTERM, served.log_tail()
    db = tmp_path / "data" / "eva.sqlite3"
    assert _integrity(db) == "ok"
    rows = [r for r in _rows(db) if r[0] == created["session_id"]]
    # The turn in flight was stored whole: the person's words, and all Eva said.
    assert [r[1] for r in rows] == ["user", "assistant"]
    assert rows[0][2] == LONG_ASK and rows[1][3] == 0 and rows[1][2] == done[0]["text"]
    assert "Traceback" not in served.log_tail(), served.log_tail()


_KILL_AFTER_DONE_TURNS = 6
_CLIENTS = 3


async def _chatter(url: str, client: int, delivered: list[tuple[str, str, str]]) -> None:
    """Typed turns one after another; each whose response.done arrived is recorded."""
    try:
        async with websockets.connect(url, max_size=2**24) as socket:
            session = json.loads(await socket.recv())["session_id"]
            for turn in range(1000):
                asked = f"Client {client}, turn {turn}: name a colour you like."
                await socket.send(json.dumps({"type": "text", "text": asked}))
                while True:
                    message = await socket.recv()
                    if isinstance(message, str):
                        event = json.loads(message)
                        if event["type"] == "response.done":
                            delivered.append((session, asked, event["text"]))
                            break
    except (websockets.ConnectionClosed, OSError):
        return  # the server was killed


async def test_sigkill_during_writes_loses_no_delivered_turn_and_leaves_a_sound_database(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    served = ServedEva(data)
    await asyncio.to_thread(served.wait_ready)
    delivered: list[tuple[str, str, str]] = []
    try:
        clients = [
            asyncio.create_task(_chatter(served.ws_url, n, delivered)) for n in range(_CLIENTS)
        ]
        async with asyncio.timeout(240):
            while len(delivered) < _KILL_AFTER_DONE_TURNS:  # noqa: ASYNC110 (a plain poll)
                await asyncio.sleep(0.05)
        served.process.send_signal(signal.SIGKILL)  # mid-way: other turns are being written
        await asyncio.gather(*clients)
    finally:
        served.kill()
    assert len(delivered) >= _KILL_AFTER_DONE_TURNS
    restarted = ServedEva(data)
    try:
        await asyncio.to_thread(restarted.wait_ready)
        db = data / "eva.sqlite3"
        assert _integrity(db) == "ok"
        async with httpx.AsyncClient(base_url=restarted.base_url, timeout=10) as http:
            for session, asked, said in delivered:
                stored = (await http.get(f"/sessions/{session}/messages")).json()["messages"]
                pairs = list(zip(stored[::2], stored[1::2], strict=False))
                assert any(u["content"] == asked and a["content"] == said for u, a in pairs), (
                    asked,
                    stored,
                )
            # Every stored turn is whole: a user message always has its reply.
            for session in {d[0] for d in delivered}:
                stored = (await http.get(f"/sessions/{session}/messages")).json()["messages"]
                assert [m["role"] for m in stored] == ["user", "assistant"] * (len(stored) // 2)
    finally:
        restarted.terminate()
    print(f"\nSIGKILL: {len(delivered)} delivered turns from {_CLIENTS} clients, all stored")
