"""/v1/realtime through the official OpenAI SDK's realtime client, on a real server: audio
appended at real-time pace, server VAD ends the turn, audio deltas arrive, a barge-in
cancels, truncation keeps what was heard, text turns, G.711, errors, client secrets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import httpx
import numpy as np
import openai
import pytest
import websockets

from eva.audio import resample_linear
from eva.engines.runtime import Engines
from tests.server.v1.conftest import ALICE_KEY
from tests.server.ws_client import silence, speech
from tests.support import ServerThread

CHUNK_MS = 40
LONG_STORY = "Please tell me a long story about a lighthouse keeper and a seagull."


def _at_24k(pcm16k: np.ndarray) -> bytes:
    audio = resample_linear(pcm16k.astype(np.float32), 16000, 24000)
    return np.clip(audio, -32768, 32767).astype("<i2").tobytes()


class Recorder:
    """Every server event of one connection, as plain dicts, with when it came."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._task = asyncio.create_task(self._read())
        self._arrived = asyncio.Event()

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                raw = await self.connection.recv_bytes()
                self.events.append((time.monotonic(), json.loads(raw)))
                self._arrived.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e["type"] == kind]

    def kinds(self) -> list[str]:
        return [e["type"] for _, e in self.events]

    async def wait_for(self, kind: str, within: float = 60.0, count: int = 1) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while len(self.of(kind)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind!r} in {within}s: {self.kinds()}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), 0.5)
        return self.of(kind)[count - 1]

    async def wait_for_audio(self, seconds: float, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while self.audio_seconds() < seconds:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not {seconds}s of audio in {within}s: {self.kinds()}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), 0.5)

    def audio_seconds(self, rate: int = 24000, width: int = 2) -> float:
        deltas = self.of("response.output_audio.delta")
        return sum(len(base64.b64decode(d["delta"])) for d in deltas) / width / rate

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@contextlib.asynccontextmanager
async def realtime(server: ServerThread, key: str = "no-key-needed") -> AsyncIterator[Any]:
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)
    async with client.realtime.connect(model="eva") as connection:
        recorder = Recorder(connection)
        try:
            yield connection, recorder
        finally:
            await recorder.close()
    await client.close()


async def _stream(connection: Any, audio: bytes, width: int = 2, rate: int = 24000) -> None:
    """Append ``audio`` in 40 ms chunks at real-time pace, as a microphone would."""
    step = rate * width * CHUNK_MS // 1000
    started = time.monotonic()
    for n, start in enumerate(range(0, len(audio), step)):
        chunk = base64.b64encode(audio[start : start + step]).decode()
        await connection.input_audio_buffer.append(audio=chunk)
        await asyncio.sleep(max(0.0, started + (n + 1) * CHUNK_MS / 1000 - time.monotonic()))


def _stored(server: ServerThread, session_id: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{server.base_url}/sessions/{session_id}/messages", timeout=30)
    return list(reply.json()["messages"])


async def test_session_created_describes_the_session(server: ServerThread) -> None:
    async with realtime(server) as (_, events):
        created = await events.wait_for("session.created")
    session = created["session"]
    assert session["type"] == "realtime" and session["model"] == "eva"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["output_modalities"] == ["audio"]


async def test_a_spoken_turn_ended_by_server_vad_gets_a_spoken_reply_and_is_stored(
    server: ServerThread, engines: Engines
) -> None:
    question = _at_24k(np.concatenate([silence(0.4), speech(engines, "What is your favourite "
                                       "season of the year?"), silence(1.5)]))  # fmt: skip
    async with realtime(server) as (connection, events):
        created = await events.wait_for("session.created")
        await connection.session.update(session={
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                   "silence_duration_ms": 500}}},
        })  # fmt: skip
        await events.wait_for("session.updated")
        await _stream(connection, question)
        done = await events.wait_for("response.done")
        limits_event = await events.wait_for("rate_limits.updated")
        kinds = events.kinds()
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.done",
    ]
    assert all(k in kinds for k in order), kinds
    assert [kinds.index(k) for k in order[:5]] == sorted(kinds.index(k) for k in order[:5])
    heard = events.of("conversation.item.input_audio_transcription.completed")[0]["transcript"]
    assert "season" in heard.lower()
    response = done["response"]
    assert response["status"] == "completed" and response["usage"]["output_tokens"] > 0
    limits = limits_event["rate_limits"][0]
    assert limits["name"] == "requests" and 0 <= limits["remaining"] <= limits["limit"]
    assert events.audio_seconds() > 0.5
    said = response["output"][0]["content"][0]["transcript"]
    stored = _stored(server, created["session"]["id"])
    assert [m["content"] for m in stored] == [heard, said]


async def test_a_barge_in_cancels_the_reply_and_a_truncate_keeps_what_was_heard(
    server: ServerThread, engines: Engines
) -> None:
    interruption = _at_24k(np.concatenate([speech(engines, "Wait, stop please."), silence(1.0)]))
    async with realtime(server) as (connection, events):
        created = await events.wait_for("session.created")
        await connection.conversation.item.create(
            item={"type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": LONG_STORY}]}
        )  # fmt: skip
        await connection.response.create()
        await events.wait_for_audio(1.5)
        await _stream(connection, interruption)
        done = await events.wait_for("response.done")
        item_id = done["response"]["output"][0]["id"]
        await connection.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=1000
        )
        await events.wait_for("conversation.item.truncated")
        kinds = events.kinds()

    assert done["response"]["status"] == "cancelled"
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("response.done")
    whole = "".join(e["delta"] for e in events.of("response.output_audio_transcript.delta"))
    stored = [m for m in _stored(server, created["session"]["id"]) if m["role"] == "assistant"]
    first = stored[0]
    assert first["interrupted"] is True
    assert 0 < len(first["content"]) < len(" ".join(whole.split()))


async def test_a_text_session_answers_a_typed_item_in_text_only(server: ServerThread) -> None:
    async with realtime(server) as (connection, events):
        await connection.session.update(session={"type": "realtime",
                                                 "output_modalities": ["text"]})  # fmt: skip
        await events.wait_for("session.updated")
        await connection.conversation.item.create(
            item={"type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": "Hello Eva!"}]}
        )  # fmt: skip
        added = await events.wait_for("conversation.item.added")
        await connection.response.create()
        done = await events.wait_for("response.done")
    assert added["item"]["role"] == "user"
    assert added["item"]["content"][0]["text"] == "Hello Eva!"
    text = "".join(e["delta"] for e in events.of("response.output_text.delta"))
    assert text and done["response"]["status"] == "completed"
    assert not events.of("response.output_audio.delta")
    assert done["response"]["output"][0]["content"][0]["text"].split() == text.split()


def _mulaw(pcm16k: np.ndarray) -> bytes:
    audio = resample_linear(pcm16k.astype(np.float32), 16000, 8000).astype(np.int16)
    encoder = av.CodecContext.create("pcm_mulaw", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 8000, "mono", "s16"  # type: ignore[attr-defined]
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    return b"".join(bytes(p) for p in encoder.encode(frame))  # type: ignore[attr-defined]


async def test_g711_mulaw_in_and_out_for_telephony(server: ServerThread, engines: Engines) -> None:
    said = _mulaw(np.concatenate([silence(0.3), speech(engines, "Good morning Eva, how "
                                  "are you?"), silence(1.5)]))  # fmt: skip
    async with realtime(server) as (connection, events):
        await connection.session.update(session={"type": "realtime", "audio": {
            "input": {"format": {"type": "audio/pcmu"}},
            "output": {"format": {"type": "audio/pcmu"}}}})  # fmt: skip
        updated = await events.wait_for("session.updated")
        await _stream(connection, said, width=1, rate=8000)
        await events.wait_for("response.done")
    assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    heard = events.of("conversation.item.input_audio_transcription.completed")[0]["transcript"]
    assert "morning" in heard.lower()
    assert events.audio_seconds(rate=8000, width=1) > 0.5  # one byte a sample at 8 kHz


async def test_bad_events_get_openai_shaped_errors_and_the_session_goes_on(
    server: ServerThread,
) -> None:
    async with realtime(server) as (connection, events):
        await events.wait_for("session.created")
        await connection.send_raw("not json")  # type: ignore[attr-defined]
        await connection.send({"type": "no.such.event", "event_id": "evt_7"})  # type: ignore[arg-type, typeddict-item]
        await connection.input_audio_buffer.append(audio="%%% not base64 %%%")
        await connection.session.update(session={"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "create_response": False}}}})  # fmt: skip
        await connection.response.cancel()
        errors = [(await events.wait_for("error", count=n))["error"] for n in range(1, 6)]
        await connection.session.update(session={"type": "realtime", "instructions": "Be brief."})
        updated = await events.wait_for("session.updated")
    codes = [e["code"] for e in errors]
    assert codes == ["invalid_json", "invalid_event", "invalid_audio", "unsupported_parameter",
                     "response_cancel_not_active"]  # fmt: skip
    assert errors[1]["event_id"] == "evt_7" and errors[1]["type"] == "invalid_request_error"
    assert errors[3]["param"] == "audio.input.turn_detection.create_response"
    assert updated["session"]["instructions"] == "Be brief."


@pytest.fixture(scope="module")
def ws_base(keyed: ServerThread) -> str:
    return keyed.base_url.replace("http://", "ws://") + "/v1/realtime"


async def test_a_client_secret_opens_the_socket_without_the_key(
    keyed: ServerThread, ws_base: str
) -> None:
    async with httpx.AsyncClient(base_url=keyed.base_url) as http:
        minted = await http.post(
            "/v1/realtime/client_secrets",
            headers={"Authorization": f"Bearer {ALICE_KEY}"},
            json={"session": {"type": "realtime", "instructions": "Speak like a pirate."}},
        )
        nobody = await http.post("/v1/realtime/client_secrets", json={})
    assert minted.status_code == 200, minted.text
    secret = minted.json()["value"]
    assert secret.startswith("ek_") and minted.json()["expires_at"] > time.time()
    offered = ["realtime", f"openai-insecure-api-key.{secret}"]
    async with websockets.connect(ws_base, subprotocols=offered) as socket:  # type: ignore[arg-type]
        assert socket.subprotocol == "realtime"
        created = json.loads(await socket.recv())
    assert created["type"] == "session.created"
    assert created["session"]["instructions"] == "Speak like a pirate."
    stolen = ["realtime", "openai-insecure-api-key.ek_not-a-real-secret"]
    async with websockets.connect(ws_base, subprotocols=stolen) as socket:  # type: ignore[arg-type]
        refused = json.loads(await socket.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await socket.recv()
    assert refused["code"] == "unauthorized" and socket.close_code == 4401
    assert nobody.status_code == 401
