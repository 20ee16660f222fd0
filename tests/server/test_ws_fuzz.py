"""Property-based fuzzing of the /ws protocol (hypothesis): the sans-I/O parsers, then a real
server on loopback fed random sequences of frames.

The counts of cases tried are printed (pytest -s) and written to docs/hardening.md by hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eva.config import Settings
from eva.engines.runtime import Engines
from eva.server.ws_chat import parse_chat_message
from eva.server.ws_protocol import (
    KNOWN_EVENTS,
    MAX_AUDIO_FRAME_BYTES,
    ProtocolError,
    parse_audio,
    parse_event,
)
from tests.support import ServerThread

# What `eva serve` gives uvicorn as ws_max_size: a bigger message is refused by uvicorn
# itself with close code 1009 (message too big).
SERVE_WS_MAX_SIZE = 1 << 20
CLOSE_MESSAGE_TOO_BIG = 1009
# Replies to a ping come at once; a turn in flight only adds audio frames before it.
_ANSWER_TIMEOUT_S = 20.0

# --- the parsers: any input, ProtocolError or a typed event, nothing else

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
event_dicts = st.fixed_dictionaries(
    {"type": st.sampled_from(KNOWN_EVENTS) | st.text(max_size=20) | json_values},
    optional={
        "text": json_values | st.text(max_size=3000),
        "voice": json_values,
        "mode": st.sampled_from(["hands_free", "push_to_talk"]) | json_values,
    },
)


@given(raw=st.text(max_size=2000) | json_values.map(json.dumps) | event_dicts.map(json.dumps))
@example(raw='{"type": "ping", "n": ' + "1" * 5000 + "}")  # int() refuses over 4300 digits
@example(raw="[" * 100_000)  # deeper than the JSON decoder's recursion limit
@example(raw='{"type": "text", "text": "\\ud800"}')  # a lone surrogate: invalid_text
@settings(max_examples=400, deadline=None)
def test_parse_event_returns_an_event_or_raises_protocol_error(raw: str) -> None:
    try:
        parsed = parse_event(raw, max_text_chars=2000)
    except ProtocolError as exc:
        assert exc.code and exc.message
        return
    assert parsed.type in KNOWN_EVENTS
    if parsed.type == "text":  # what reaches the models is text they can take
        parsed.text.encode("utf-8")  # type: ignore[union-attr]


@given(raw=st.text(max_size=2000) | json_values.map(json.dumps) | event_dicts.map(json.dumps))
@example(raw='{"message": ' + "1" * 5000 + "}")
@example(raw="[" * 100_000)
@settings(max_examples=300, deadline=None)
def test_legacy_chat_parser_returns_a_message_or_raises_protocol_error(raw: str) -> None:
    try:
        parsed = parse_chat_message(raw)
    except ProtocolError as exc:
        assert exc.code == "invalid_event"
        return
    assert parsed is None or isinstance(parsed[0], str)


@given(frame=st.binary(max_size=2 * MAX_AUDIO_FRAME_BYTES))
@example(frame=b"\x00" * (MAX_AUDIO_FRAME_BYTES + 2))
@settings(max_examples=200, deadline=None)
def test_parse_audio_returns_samples_or_raises_protocol_error(frame: bytes) -> None:
    try:
        pcm = parse_audio(frame)
    except ProtocolError as exc:
        assert exc.code in ("invalid_audio", "frame_too_large")
        return
    assert pcm.dtype == np.int16 and len(pcm) * 2 == len(frame)


# --- a real server, random sequences of frames


class _ErrorLog(logging.Handler):
    """Every ERROR logged anywhere in this process while the fuzz runs (the server is a
    thread of it): an exception in the app shows up here even when the socket survives."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzz_server(eva_settings: Settings, engines: Engines) -> Iterator[ServerThread]:
    running = ServerThread(eva_settings, engines)
    running.server.config.ws_max_size = SERVE_WS_MAX_SIZE
    running.start()
    yield running
    running.stop()


Action = tuple[str, Any]

text_frames = st.one_of(
    event_dicts.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.integers(1000, 300_000).map(lambda n: json.dumps({"type": "text", "text": "x" * n})),
    st.integers(1000, 300_000).map(lambda n: "y" * n),
    st.integers(4301, 20_000).map(lambda n: '{"type": "ping", "n": ' + "1" * n + "}"),
    st.integers(1000, 200_000).map(lambda n: "[" * n),
    st.sampled_from(
        [
            '{"type": "ping"}',
            '{"type": "interrupt"}',
            '{"type": "input_audio.commit"}',
            '{"type": "session.update", "mode": "push_to_talk"}',
            '{"type": "session.update", "voice": "nobody"}',
            '{"type": "text", "text": "Say hello."}',
            '{"type": "text", "text": "Hi \\udc00 there"}',
        ]
    ),
)
binary_frames = st.one_of(
    st.binary(max_size=4000),
    st.integers(0, 4 * MAX_AUDIO_FRAME_BYTES).map(lambda n: bytes(n)),
    st.integers(1, 2000).map(lambda n: np.random.default_rng(n).bytes(n * 2 - n % 2)),
)
actions = st.lists(
    st.one_of(
        st.tuples(st.just("text"), text_frames),
        st.tuples(st.just("binary"), binary_frames),
        st.just(("text", '{"type": "interrupt"}')),
    ),
    min_size=1,
    max_size=12,
)


async def _until_pong(socket: Any) -> list[dict[str, Any]]:
    """Send a ping; the events read up to its pong."""
    await socket.send('{"type": "ping"}')
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(_ANSWER_TIMEOUT_S):
        while True:
            message = await socket.recv()
            if isinstance(message, bytes):
                continue
            event = json.loads(message)
            if event["type"] == "pong":
                return seen
            seen.append(event)


async def _fuzz_once(url: str, sequence: list[Action], too_big: bool) -> None:
    async with websockets.connect(url, max_size=2**24) as socket:
        created = json.loads(await socket.recv())
        assert created["type"] == "session.created"
        for _kind, frame in sequence:
            await socket.send(frame)
        if too_big:
            await socket.send(bytes(SERVE_WS_MAX_SIZE + 1))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(_ANSWER_TIMEOUT_S):
                    while True:
                        await socket.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CLOSE_MESSAGE_TOO_BIG
            return
        seen = await _until_pong(socket)
        for event in seen:
            assert event["type"] != "error" or event["code"] in _DOCUMENTED_ERRORS, event


_DOCUMENTED_ERRORS = {
    "invalid_json",
    "invalid_event",
    "unknown_event",
    "empty_text",
    "text_too_long",
    "invalid_text",
    "invalid_audio",
    "frame_too_large",
    "unknown_voice",
    # A burst of fuzzed turns can be more than the model serves in time: told, not queued.
    "busy",
}


async def _another_session_works(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
        health = (await http.get("/health")).json()
        assert health["status"] == "ok" and health["ready"]
    async with websockets.connect(base_url.replace("http", "ws") + "/ws") as socket:
        assert json.loads(await socket.recv())["type"] == "session.created"
        await _until_pong(socket)


def test_random_frame_sequences_never_break_a_session_or_the_server(
    fuzz_server: ServerThread,
) -> None:
    url = fuzz_server.base_url.replace("http", "ws") + "/ws"
    errors = _ErrorLog()
    watched = [logging.getLogger(), logging.getLogger("uvicorn")]  # uvicorn does not propagate
    for logger in watched:
        logger.addHandler(errors)
    tried = {"cases": 0, "frames": 0}
    lock = threading.Lock()

    @given(sequence=actions, too_big=st.booleans())
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def fuzz(sequence: list[Action], too_big: bool) -> None:
        with lock:
            tried["cases"] += 1
            tried["frames"] += len(sequence) + too_big
        asyncio.run(_fuzz_once(url, sequence, too_big))
        asyncio.run(_another_session_works(fuzz_server.base_url))

    try:
        fuzz()
    finally:
        for logger in watched:
            logger.removeHandler(errors)
    print(f"\n/ws fuzz: {tried['cases']} sequences, {tried['frames']} frames")
    assert not errors.records, [r.getMessage() for r in errors.records]
    # The fuzzed sessions are gone: their turns give back every place they held.
    asyncio.run(_model_is_free_again(fuzz_server.base_url))
    # and after all that, a whole typed turn on a fresh session
    asyncio.run(_typed_turn(url))


async def _model_is_free_again(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
        for _ in range(300):  # 30 s: a cancelled turn stops at its next token or clause
            capacity = (await http.get("/health")).json()["capacity"]
            if capacity["turns_running"] == 0 and capacity["turns_waiting"] == 0:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"turns still hold the model after the fuzz: {capacity}")


async def _typed_turn(url: str) -> None:
    """A whole reply; told "busy" (the fuzzed turns may still hold the model), it asks
    again after ``retry_after_s``, as a client must."""
    seen: list[str] = []
    async with websockets.connect(url, max_size=2**24) as socket:
        await socket.recv()
        try:
            async with asyncio.timeout(60):
                while True:
                    await socket.send(json.dumps({"type": "text", "text": "Hello, how are you?"}))
                    event = await _reply_or_busy(socket, seen)
                    if event["type"] == "response.done":
                        return
                    await asyncio.sleep(event["retry_after_s"])
        except TimeoutError:
            raise AssertionError(f"no reply in 60 s; events: {seen[-20:]}") from None


async def _reply_or_busy(socket: Any, seen: list[str]) -> dict[str, Any]:
    while True:
        message = await socket.recv()
        if isinstance(message, str):
            event: dict[str, Any] = json.loads(message)
            seen.append(event["type"] + (f":{event.get('code')}" if "code" in event else ""))
            if event["type"] == "response.done":
                return event
            if event["type"] == "error" and event.get("code") == "busy":
                return event
