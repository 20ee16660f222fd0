"""Faults within a session, on a real server with the real models: a backend that fails
mid-reply, clients that vanish mid-reply (nothing may leak), and a client that stops
reading (dropped with close code 4507, others unaffected)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from eva.config import Settings
from eva.engines.base import COMPANION_SAMPLING, ChatMessage, EngineError, LLMEngine, Sampling
from eva.engines.runtime import Engines
from eva.server.listen import listening_socket
from eva.server.outbox import CLOSE_SLOW_CLIENT
from tests.server.ws_client import VoiceClient
from tests.support import ServerThread, make_settings, pools_are_idle

LONG_ASK = "Please tell me a long story about a lighthouse keeper and a seagull."

# --- a backend that fails mid-reply


class MidReplyFault:
    """The real model, except that when armed its reply breaks off after a few tokens, as a
    crashed or disconnected backend does. A fake only for the fault itself: the tokens before
    it are real."""

    name = "llamacpp-with-faults"
    reuses_prompt_prefix = False
    concurrent_streams = 1
    tokens_before_fault = 1

    def __init__(self, inner: LLMEngine) -> None:
        self.inner = inner
        self.armed = threading.Event()

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Iterator[str]:
        for count, delta in enumerate(
            self.inner.stream(messages, max_tokens=max_tokens, cancel=cancel, session=session)
        ):
            if count == self.tokens_before_fault and self.armed.is_set():
                self.armed.clear()
                raise EngineError("the language model failed mid-reply (injected)")
            yield delta


@pytest.fixture(scope="module")
def faulty(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    llm = MidReplyFault(engines.llm)
    settings = make_settings(tmp_path_factory.mktemp("faulty"))
    running = ServerThread(settings, replace(engines, llm=llm)).start()
    yield running, llm
    running.stop()


def _errors(base_url: str, route: str) -> int:
    return int(httpx.get(f"{base_url}/stats").json()["errors"].get(route, 0))


async def _get(base_url: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        return (await http.get(path)).json()


async def test_ws_backend_failure_mid_reply_is_an_error_event_and_the_session_goes_on(
    faulty: Any,
) -> None:
    server, llm = faulty
    before = _errors(server.base_url, "/ws")
    client = await VoiceClient.connect(server.base_url)
    created = await client.wait_for("session.created")
    llm.armed.set()
    await client.send_json({"type": "text", "text": "Tell me about the moon."})
    error = await client.wait_for("error")
    assert error["code"] == "backend_unavailable" and "mid-reply" in error["message"]
    assert client.events("response.text.delta")  # the fault came after real text
    assert not client.events("response.done")
    await client.send_json({"type": "text", "text": "Then tell me about the sun."})
    done = await client.wait_for("response.done")
    assert done["text"] and not done["interrupted"]
    await client.close()
    assert _errors(server.base_url, "/ws") == before + 1
    stored = await _get(server.base_url, f"/sessions/{created['session_id']}/messages")
    # Only the whole turn is stored; the broken one left nothing half-written.
    assert [m["content"] for m in stored["messages"]][:1] == ["Then tell me about the sun."]
    assert len(stored["messages"]) == 2


def _sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events, kind = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[6:])))
    return events


def test_chat_stream_backend_failure_mid_reply_is_an_error_event_and_the_session_goes_on(
    faulty: Any,
) -> None:
    server, llm = faulty
    before = _errors(server.base_url, "/chat/stream")
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        llm.armed.set()
        with http.stream("POST", "/chat/stream", json={"message": LONG_ASK}) as broken:
            events = _sse_events(broken)
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "session" and "delta" in kinds and kinds[-1] == "error", kinds
        assert events[-1][1]["code"] == "backend_unavailable" and "done" not in kinds
        session = events[0][1]["session_id"]
        with http.stream(
            "POST", "/chat/stream", json={"message": "And again?", "session_id": session}
        ) as again:
            assert [kind for kind, _ in _sse_events(again)][-1] == "done"
        llm.armed.set()
        failed = http.post("/chat", json={"message": "Once more.", "session_id": session})
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "backend_unavailable"
        assert http.post("/chat", json={"message": "Fine?", "session_id": session}).is_success
    assert _errors(server.base_url, "/chat/stream") == before + 1


# --- clients that vanish mid-reply

_VANISH_CYCLES = 20
_WARM_UP_CYCLES = 3
_SETTLE_S = 20.0
# A leaked session (its VAD stream, detector buffers, reply task and events) weighs well
# over 50 KB; 20 of them would be far over this. What remains is the bounded stats windows.
_MAX_GROWTH_BYTES = 512 * 1024


def _server_loop(server: ServerThread) -> asyncio.AbstractEventLoop:
    return server.server.servers[0].get_loop()


# The event loop's default executor (asyncio.to_thread) starts its workers lazily, up to
# this many, and keeps them: they are a bounded pool, not a leak.
_DEFAULT_EXECUTOR_MAX = min(32, (os.cpu_count() or 1) + 4)


def _threads() -> int:
    """Threads alive, the default executors' pooled workers aside (checked to be bounded)."""
    pooled = [t for t in threading.enumerate() if t.name.startswith(("asyncio_", "uvloop_"))]
    assert len(pooled) <= 2 * _DEFAULT_EXECUTOR_MAX  # the server's loop and the test's
    return threading.active_count() - len(pooled)


def _server_tasks(server: ServerThread) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), _server_loop(server)).result(5)


async def _vanish_mid_reply(server: ServerThread, n: int) -> None:
    url = server.base_url.replace("http", "ws") + "/ws"
    client = await websockets.connect(url, max_size=2**24)
    await client.recv()  # session.created
    await client.send(json.dumps({"type": "text", "text": f"{LONG_ASK} Version {n}."}))
    async with asyncio.timeout(60):
        while not isinstance(await client.recv(), bytes):
            pass  # until the reply's audio flows
    client.transport.abort()  # gone: no close frame, the TCP connection just drops


async def _settled(server: ServerThread, engines: Engines, tasks: int, threads: int) -> bool:
    deadline = time.monotonic() + _SETTLE_S
    state: tuple[Any, ...] = ()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        while time.monotonic() < deadline:
            stats = (await http.get("/stats")).json()
            state = (
                stats["active_sessions"],
                _server_tasks(server),
                _threads(),
                await pools_are_idle(engines),
            )
            if state[0] == 0 and state[1] <= tasks and state[2] <= threads and state[3]:
                return True
            await asyncio.sleep(0.2)
    print("not settled: active sessions, tasks, threads, pools idle:", state, tasks, threads)
    return False


async def test_clients_vanishing_mid_reply_leak_no_tasks_threads_engine_work_or_memory(
    engines: Engines, tmp_path: Path
) -> None:
    server = ServerThread(make_settings(tmp_path), engines).start()
    try:
        tasks = _server_tasks(server)
        for n in range(_WARM_UP_CYCLES):
            await _vanish_mid_reply(server, n)
        # The engine pools start their one worker each on first use: the baseline of
        # threads is taken once the warm-up has settled.
        assert await _settled(server, engines, tasks, threads=1000)
        threads = _threads()
        tracemalloc.start()
        gc.collect()
        memory_before = tracemalloc.get_traced_memory()[0]
        for n in range(_VANISH_CYCLES):
            await _vanish_mid_reply(server, _WARM_UP_CYCLES + n)
        assert await _settled(server, engines, tasks, threads), (
            _server_tasks(server),
            tasks,
            _threads(),
            threads,
        )
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - memory_before
        tracemalloc.stop()
        print(
            f"\nvanish x{_VANISH_CYCLES}: server tasks {_server_tasks(server)} (baseline "
            f"{tasks}), threads {_threads()} (baseline {threads}), "
            f"traced memory {growth / 1024:+.0f} KiB"
        )
        assert growth < _MAX_GROWTH_BYTES
        # Each vanished client's reply ended as interrupted and was stored.
        stats = await _get(server.base_url, "/stats")
        assert stats["sessions"] == _WARM_UP_CYCLES + _VANISH_CYCLES
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        server.stop()


# --- a client that stops reading

_STALL_S = 2.0
_TINY_RECEIVE_BUFFER = 4096


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class _ListeningServer(ServerThread):
    """A ServerThread on the listening socket `eva serve` uses (capped send buffers)."""

    def __init__(self, settings: Settings, engines: Engines) -> None:
        super().__init__(settings, engines)
        self.listener = listening_socket("127.0.0.1", 0)
        self.port = self.listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.listener]}, daemon=True
        )


# About 25 s of speech: far more than the ~330 KB (~7.5 s at 22 kHz) that the capped
# buffers between Eva and a client that does not read can hold.
_LONG_STORY = (
    "Once upon a time a lighthouse keeper lived alone on a small rocky island. "
    "Every evening he climbed the long spiral stairs to light the great lamp. "
    "One stormy night a tired seagull landed on the railing outside his window. "
    "He gave the bird some bread and a warm corner by the stove. "
    "The seagull came back the next night, and the night after that. "
    "Soon the two of them watched the ships pass together every evening. "
    "When the keeper grew old, the seagull brought its own chicks to meet him. "
    "And the light on the island never once went out."
)


class _LongReplyTo:
    """The real model, except that ``ask`` always gets the same long story: the test needs
    a reply longer than the buffers, and a sampled reply is sometimes short."""

    name = "long-reply"
    reuses_prompt_prefix = False
    concurrent_streams = 4

    def __init__(self, inner: LLMEngine, ask: str) -> None:
        self.inner, self.ask = inner, ask

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Iterator[str]:
        if messages[-1].content != self.ask:
            yield from self.inner.stream(
                messages, max_tokens=max_tokens, cancel=cancel, session=session
            )
            return
        for word in _LONG_STORY.split(" "):
            if cancel.is_set():
                return
            yield word + " "


async def test_a_client_that_stops_reading_is_dropped_with_4507_and_others_are_not_slowed(
    engines: Engines, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path, ws_send_stall_s=_STALL_S, max_reply_sentences=8, max_reply_tokens=250
    )
    long_reply = replace(engines, llm=_LongReplyTo(engines.llm, LONG_ASK))
    server = _ListeningServer(settings, long_reply).start()
    records = _Records()
    logging.getLogger("eva.ws").addHandler(records)
    try:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _TINY_RECEIVE_BUFFER)
        raw.connect(("127.0.0.1", server.port))
        raw.setblocking(False)
        slow = await websockets.connect(
            server.base_url.replace("http", "ws") + "/ws", sock=raw, max_queue=1, max_size=2**24
        )
        await slow.send(json.dumps({"type": "text", "text": LONG_ASK}))
        started = time.monotonic()
        # Meanwhile another session has a whole turn.
        other = await VoiceClient.connect(server.base_url)
        await other.send_json({"type": "text", "text": "What is a good name for a cat?"})
        other_done = asyncio.create_task(other.wait_for("response.done", within=120))
        async with asyncio.timeout(90):
            while not any("did not read" in m for m in records.messages):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        dropped_after = time.monotonic() - started
        # It reads again at last: what was buffered, then the close frame saying why.
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(30):
                while True:
                    await slow.recv()
        done = await other_done
        other_took = time.monotonic() - started
        assert done["text"] and not done["interrupted"]
        await other.close()
        print(
            f"\nslow client: dropped {dropped_after:.1f} s after its turn began; the other "
            f"session's turn took {other_took:.1f} s"
        )
        assert slow.close_code == CLOSE_SLOW_CLIENT
        async with asyncio.timeout(15):
            while (await _get(server.base_url, "/stats"))["active_sessions"]:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert await pools_are_idle(engines)
    finally:
        logging.getLogger("eva.ws").removeHandler(records)
        server.stop()
