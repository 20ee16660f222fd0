"""Each limit on a real server with small limits: requests per minute per key and per
address, typed WebSocket turns, concurrent sessions, the idle timeout, keepalive pings, the
audio frame size and the audio of one spoken turn."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from eva.engines.runtime import Engines
from eva.server.limits import SessionSlots, SlidingWindowLimiter
from tests.server.servers import StartServer, servers_for_a_test
from tests.server.ws_client import VoiceClient, silence, speech
from tests.support import ServerThread

ALICE_KEY = "alice-0123456789abcdef"
BOB_KEY = "bob-fedcba9876543210xx"
CAROL_KEY = "carol-00112233445566778"
KEYS = f"alice:{ALICE_KEY},bob:{BOB_KEY},carol:{CAROL_KEY}"


@pytest.fixture
def start(engines: Engines, tmp_path: Path) -> Iterator[StartServer]:
    yield from servers_for_a_test(engines, tmp_path)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ws_url(server: ServerThread, path: str, query: str = "") -> str:
    return server.base_url.replace("http://", "ws://") + path + (f"?{query}" if query else "")


async def until_closed(socket: Any, within: float = 10.0) -> list[dict[str, Any]]:
    """The events received until the server closed the socket."""
    events: list[dict[str, Any]] = []
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            frame = await asyncio.wait_for(socket.recv(), within)
            if isinstance(frame, str):
                events.append(json.loads(frame))
    return events


# ------------------------------------------------------------------ the limiter itself


def test_sliding_window_allows_the_limit_then_says_how_long_to_wait() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(3, window_s=60.0, clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
    assert limiter.hit("a") == pytest.approx(60.0)
    assert limiter.hit("b") is None  # another client has its own window
    now[0] += 30.0
    assert limiter.hit("a") == pytest.approx(30.0)  # refused hits do not extend the wait
    now[0] += 30.0
    assert limiter.hit("a") is None  # the first hits left the window


def test_sliding_window_tracks_a_bounded_number_of_clients() -> None:
    limiter = SlidingWindowLimiter(2, max_clients=100)
    for client in range(1000):
        limiter.hit(f"10.0.{client // 256}.{client % 256}")
    assert len(limiter) == 100


def test_a_zero_limit_is_no_limit() -> None:
    limiter = SlidingWindowLimiter(0)
    assert all(limiter.hit("a") is None for _ in range(1000))
    assert len(limiter) == 0


def test_session_slots_count_per_user_and_in_total() -> None:
    slots = SessionSlots(total_limit=3, per_user_limit=2)
    assert slots.acquire("a") is None and slots.acquire("a") is None
    assert "2 open sessions" in (slots.acquire("a") or "")
    assert slots.acquire(None) is None
    assert "3 sessions" in (slots.acquire("b") or "")
    slots.release("a")
    assert slots.acquire("b") is None
    slots.release("a")
    slots.release("b")
    slots.release(None)
    assert slots.total == 0 and slots.per_user == {}


# --------------------------------------------------------------- requests per minute


def test_requests_over_the_per_key_limit_get_429_with_retry_after(start: StartServer) -> None:
    running = start(api_keys=KEYS, rate_limit_per_key=3)
    with httpx.Client(base_url=running.base_url) as http:
        for _ in range(3):
            assert http.get("/voices", headers=bearer(ALICE_KEY)).status_code == 200
        refused = http.get("/voices", headers=bearer(ALICE_KEY))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Another key has its own budget, and /health is never limited.
        assert http.get("/voices", headers=bearer(BOB_KEY)).status_code == 200
        assert http.get("/health").status_code == 200


def test_requests_over_the_per_address_limit_get_429_even_without_keys(
    start: StartServer,
) -> None:
    running = start(rate_limit_per_address=4)
    with httpx.Client(base_url=running.base_url) as http:
        statuses = [http.get("/voices").status_code for _ in range(6)]
        assert statuses == [200, 200, 200, 200, 429, 429]
        assert http.get("/health").status_code == 200
        assert http.get("/static/app.js").status_code == 200


def test_guessing_keys_is_limited_per_address(start: StartServer) -> None:
    running = start(api_keys=KEYS, rate_limit_per_address=3)
    with httpx.Client(base_url=running.base_url) as http:
        guesses = [
            http.get("/voices", headers=bearer(f"guess-{n:016d}")).status_code for n in range(5)
        ]
    assert guesses == [401, 401, 401, 429, 429]


@pytest.mark.parametrize("path", ["/ws", "/ws/chat"])
async def test_typed_turns_over_the_limit_get_a_rate_limited_error_and_the_socket_stays(
    start: StartServer,
    path: str,
) -> None:
    # the handshake is one request, the first turn the second: the second turn is refused
    running = start(api_keys=KEYS, rate_limit_per_key=2)
    async with websockets.connect(ws_url(running, path, f"token={ALICE_KEY}")) as socket:
        if path == "/ws":
            assert json.loads(await socket.recv())["type"] == "session.created"
            turn = {"type": "text", "text": "Hello there."}
            done = "response.done"
        else:
            turn = {"message": "Hello there."}
            done = "end"
        await socket.send(json.dumps(turn))
        await socket.send(json.dumps(turn))
        kinds: list[str] = []
        errors: list[dict[str, Any]] = []
        # /ws/chat reads the second message only once the first is answered
        while (done not in kinds or not errors) and kinds.count(done) < 2:
            frame = await asyncio.wait_for(socket.recv(), 60)
            if isinstance(frame, str):
                message = json.loads(frame)
                kinds.append(message["type"])
                if message["type"] == "error":
                    errors.append(message)
        assert [e["code"] for e in errors] == ["rate_limited"]
        assert kinds.count(done) == 1  # the first turn was answered in full
        await socket.send(json.dumps({"type": "ping"}))
        while json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] != "pong":
            pass


# ---------------------------------------------------------------- concurrent sessions


async def test_sessions_over_the_per_user_and_total_caps_are_closed_with_4429(
    start: StartServer,
) -> None:
    running = start(api_keys=KEYS, max_sessions_per_user=1, max_ws_sessions=2)
    alice = await websockets.connect(ws_url(running, "/ws", f"token={ALICE_KEY}"))
    assert json.loads(await alice.recv())["type"] == "session.created"

    async with websockets.connect(ws_url(running, "/ws/chat", f"token={ALICE_KEY}")) as again:
        events = await until_closed(again)
        assert again.close_code == 4429
        assert [e["code"] for e in events] == ["too_many_sessions"]

    async with websockets.connect(ws_url(running, "/ws/chat", f"token={BOB_KEY}")) as bob:
        async with websockets.connect(ws_url(running, "/ws", f"token={CAROL_KEY}")) as carol:
            events = await until_closed(carol)
            assert carol.close_code == 4429
            assert "2 sessions" in events[0]["message"]
        await bob.send(json.dumps({"type": "ping"}))
        assert json.loads(await bob.recv()) == {"type": "pong"}

    await alice.close()
    # Her slot comes back once the server has seen her leave.
    deadline = time.monotonic() + 10
    while True:
        async with websockets.connect(ws_url(running, "/ws", f"token={ALICE_KEY}")) as back:
            first = json.loads(await back.recv())
        if first["type"] == "session.created":
            break
        assert time.monotonic() < deadline, first
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------ idle and keepalive


@pytest.mark.parametrize("path", ["/ws", "/ws/chat"])
async def test_a_silent_client_is_closed_with_4408_and_a_pinging_one_stays(
    start: StartServer,
    path: str,
) -> None:
    running = start(ws_idle_timeout_s=1.0)
    async with websockets.connect(ws_url(running, path)) as silent:
        started = time.monotonic()
        events = await until_closed(silent)
        assert silent.close_code == 4408
        assert events[-1]["code"] == "idle_timeout"
        assert 0.9 <= time.monotonic() - started < 5

    async with websockets.connect(ws_url(running, path)) as talking:
        for _ in range(5):  # 2 s in all, twice the idle timeout
            await talking.send(json.dumps({"type": "ping"}))
            await asyncio.sleep(0.4)
        await talking.send(json.dumps({"type": "ping"}))
        while json.loads(await asyncio.wait_for(talking.recv(), 5))["type"] != "pong":
            pass


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One server-to-client WebSocket frame (never masked): (opcode, payload)."""

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(exactly(8), "big")
    return first & 0x0F, exactly(length)


def test_the_server_pings_and_drops_a_client_that_never_answers(
    start: StartServer,
) -> None:
    running = start(as_served=True, ws_ping_interval_s=0.5, ws_ping_timeout_s=0.5)
    # A raw socket, so that nothing answers the server's pings behind the test's back.
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as raw:
        key = base64.b64encode(os.urandom(16)).decode()
        raw.sendall(
            (
                f"GET /ws/chat HTTP/1.1\r\nHost: 127.0.0.1:{running.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        started = time.monotonic()
        opcodes = []
        try:
            while True:
                opcode, _ = _read_frame(raw)
                opcodes.append(opcode)
                if opcode == 0x8:  # close
                    break
        except (ConnectionError, TimeoutError):
            pass
        assert 0x9 in opcodes  # a ping came
        assert time.monotonic() - started < 4  # and, unanswered, the connection ended


# ------------------------------------------------------------------------------ audio


async def test_audio_frames_over_the_configured_size_are_refused_and_the_session_goes_on(
    start: StartServer,
) -> None:
    running = start(max_audio_frame_bytes=1000)
    client = await VoiceClient.connect(running.base_url)
    try:
        await client.wait_for("session.created")
        await client.socket.send(b"\0" * 1002)
        error = await client.wait_for("error", within=10)
        assert error["code"] == "frame_too_large" and "at most 1000" in error["message"]
        await client.socket.send(b"\0" * 1000)
        await client.send_json({"type": "ping"})
        await client.wait_for("pong", within=10)
        assert [e["code"] for e in client.events("error")] == ["frame_too_large"]
    finally:
        await client.close()


async def test_speech_past_the_turn_audio_limit_ends_the_turn_and_she_answers(
    start: StartServer,
    engines: Engines,
) -> None:
    running = start(max_turn_audio_seconds=1.5)
    words = "I would like to tell you about my long day at the office and the trip home."
    spoken = speech(engines, words)
    assert len(spoken) / 16000 > 2.5
    client = await VoiceClient.connect(running.base_url)
    try:
        await client.wait_for("session.created")
        # Push-to-talk: nothing but the limit can end this turn before the button is let go.
        await client.send_json({"type": "session.update", "mode": "push_to_talk"})
        await client.wait_for("session.updated")
        await client.stream(np.concatenate([silence(0.3), spoken, silence(0.5)]))
        error = await client.wait_for("error", within=30)
        assert error["code"] == "turn_too_long" and "1.5 s" in error["message"]
        heard = await client.wait_for("transcript.final", within=60)
        assert heard["text"].strip()
        assert len(heard["text"].split()) < len(words.split())  # only what came before it
        await client.wait_for("response.done", within=60)
    finally:
        await client.close()
