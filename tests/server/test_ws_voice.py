"""/ws with real models on a real server: spoken turns, turn-taking, barge-in, bad frames."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest

from eva.bench.turn_taking import pause_inside
from eva.engines.runtime import Engines
from tests.server.ws_client import VoiceClient, silence, speech
from tests.support import ServerThread, pools_are_idle

LONG_STORY = "Please tell me a long story about a lighthouse keeper and a seagull."


async def _get(server: ServerThread, path: str) -> Any:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        return (await http.get(path)).json()


async def test_session_created_describes_the_audio_formats(server: ServerThread) -> None:
    client = await VoiceClient.connect(server.base_url)
    created = await client.wait_for("session.created")
    assert created["input_audio"] == {"format": "pcm16", "sample_rate": 16000, "channels": 1}
    assert created["output_audio"]["sample_rate"] == 22050
    assert created["voice"] == "en_US-joe-medium" and created["protocol"] == "eva.v1"
    await client.close()


async def test_spoken_question_gets_a_final_transcript_and_a_spoken_reply(
    server: ServerThread, engines: Engines
) -> None:
    client = await VoiceClient.connect(server.base_url)
    question = speech(engines, "What is your favourite season of the year?")
    await client.stream(np.concatenate([silence(0.5), question, silence(1.5)]))
    done = await client.wait_for("response.done")
    final = client.events("transcript.final")
    assert len(final) == 1 and "season of the year" in final[0]["text"].lower()
    assert done["text"] and done["interrupted"] is False
    order = [e["type"] for e in client.events() if e["type"] != "response.text.delta"]
    assert order.index("speech.started") < order.index("speech.stopped")
    assert order.index("transcript.final") < order.index("response.created")
    first_audio = next(r.at for r in client.received if r.audio is not None)
    assert client.first("response.created").at <= first_audio <= client.first("response.done").at
    assert sum(len(r.audio or b"") for r in client.received) / 2 / 22050 > 0.5
    assert done["timings"]["voice_to_voice_ms"] > 0 and done["timings"]["stt_ms"] > 0
    await client.close()


async def test_partial_transcripts_arrive_while_the_person_speaks(
    server: ServerThread, engines: Engines
) -> None:
    client = await VoiceClient.connect(server.base_url)
    said = "I spent the whole afternoon in the garden planting tulips and little roses."
    await client.stream(np.concatenate([silence(0.3), speech(engines, said), silence(1.5)]))
    await client.wait_for("transcript.final")
    partials = client.events("transcript.partial")
    assert partials and all(p["text"] for p in partials)
    assert client.first("transcript.partial").at < client.first("transcript.final").at
    await client.close()


async def test_a_pause_inside_a_sentence_is_heard_as_one_turn(
    server: ServerThread, engines: Engines
) -> None:
    client = await VoiceClient.connect(server.base_url)
    said = speech(
        engines, "Yesterday I went to the market and bought some apples for my grandmother."
    )
    words = engines.stt.timed_words(said.astype(np.float32) / 32768.0, "en")
    after = next(i for i, w in enumerate(words) if w.text.lower().startswith("market"))
    paused, _ = pause_inside(said, words, after, 0.4)  # mid-clause, the melody going on
    await client.stream(np.concatenate([silence(0.3), paused, silence(1.5)]))
    done = await client.wait_for_reply()
    # Either the pause never ended the turn, or the end was taken back before any of the
    # reply was heard (Smart Turn scores some such cuts as complete): one turn either way.
    final = client.events("transcript.final")[-1]["text"].lower()
    assert "market" in final and "apples" in final
    earlier = [e for e in client.events("response.done") if e is not done and "purpose" not in e]
    resumed = [e for e in client.events("speech.started") if e.get("resumed_turn")]
    assert len(earlier) <= len(resumed) <= 1
    assert all(e["interrupted"] and e["text"] == "" for e in earlier), earlier
    await client.close()


async def test_barge_in_stops_the_audio_and_truncates_the_stored_reply(
    server: ServerThread, engines: Engines
) -> None:
    client = await VoiceClient.connect(server.base_url)
    session_id = (await client.wait_for("session.created"))["session_id"]
    await client.send_json({"type": "text", "text": LONG_STORY})
    await client.wait_for_audio(1.0)
    await client.stream(speech(engines, "Wait, stop please."))
    started = client.first("speech.started").at
    done = await client.wait_for("response.done")
    late = client.audio_after(started + 0.1)
    assert not late, f"{len(late)} audio frames more than 100 ms after the barge-in"
    assert done["interrupted"] is True
    deltas = "".join(e["text"] for e in client.events("response.text.delta"))
    assert done["text"] and len(done["text"]) < len(" ".join(deltas.split()))
    stored = (await _get(server, f"/sessions/{session_id}/messages"))["messages"]
    assert stored[-1]["content"] == done["text"] and stored[-1]["interrupted"] is True
    await client.close()


async def test_interrupt_event_stops_the_reply(server: ServerThread) -> None:
    client = await VoiceClient.connect(server.base_url)
    await client.send_json({"type": "text", "text": LONG_STORY})
    await client.wait_for_audio(0.5)
    await client.send_json({"type": "interrupt"})
    sent_at = time.monotonic()
    done = await client.wait_for("response.done")
    assert done["interrupted"] is True
    assert not client.audio_after(sent_at + 0.1)
    await client.close()


async def test_typed_turn_over_the_socket_streams_text_and_audio(server: ServerThread) -> None:
    client = await VoiceClient.connect(server.base_url)
    await client.send_json({"type": "text", "text": "Say hello to my cat Miso."})
    done = await client.wait_for("response.done")
    assert client.events("transcript.final")[0]["text"] == "Say hello to my cat Miso."
    deltas = "".join(e["text"] for e in client.events("response.text.delta"))
    assert " ".join(deltas.split()) == done["text"]
    assert any(r.audio for r in client.received)
    assert done["timings"]["first_audio_ms"] > 0
    await client.close()


async def test_bad_frames_get_an_error_and_the_session_continues(server: ServerThread) -> None:
    client = await VoiceClient.connect(server.base_url)
    await client.wait_for("session.created")
    bad = [
        (b"\x01\x02\x03", "invalid_audio"),
        (b"\x00" * (64 * 1024 + 2), "frame_too_large"),
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_event"),
        ('{"type": "dance"}', "unknown_event"),
        ('{"type": "text"}', "invalid_event"),
        ('{"type": "text", "text": "   "}', "empty_text"),
        ('{"type": "text", "text": 42}', "invalid_event"),
        ('{"type": "session.update", "voice": "nobody"}', "unknown_voice"),
        ('{"type": "session.update", "mode": "telepathy"}', "invalid_event"),
    ]
    for number, (frame, code) in enumerate(bad, start=1):
        await client.socket.send(frame)
        error = await client.wait_for("error", count=number, within=10)
        assert error["code"] == code and error["message"], (frame, error)
    garbage = np.random.default_rng(3).integers(-32768, 32767, 16000, dtype=np.int16)
    await client.stream(garbage, realtime=False)  # noise: no crash, maybe no speech
    await client.send_json({"type": "ping"})
    await client.wait_for("pong")
    await client.send_json({"type": "text", "text": "Are you still there?"})
    assert (await client.wait_for("response.done"))["text"]
    await client.close()


async def test_a_client_that_vanishes_mid_reply_leaves_no_work_running(
    server: ServerThread, engines: Engines
) -> None:
    before = (await _get(server, "/stats"))["active_sessions"]
    client = await VoiceClient.connect(server.base_url)
    session_id = (await client.wait_for("session.created"))["session_id"]
    await client.send_json({"type": "text", "text": LONG_STORY})
    await client.wait_for_audio(0.3)
    client.socket.transport.abort()  # the client vanishes: no closing handshake
    await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    assert await pools_are_idle(engines)
    health = await _get(server, "/health")
    assert health["ready"] is True
    stats = await _get(server, "/stats")
    assert stats["active_sessions"] == before
    stored = (await _get(server, f"/sessions/{session_id}/messages"))["messages"]
    assert stored[0]["content"] == LONG_STORY  # the person's words are kept
    assert stored[1]["interrupted"] is True


async def test_a_conversation_over_the_socket_is_stored_and_resumable(
    server: ServerThread,
) -> None:
    client = await VoiceClient.connect(server.base_url)
    session_id = (await client.wait_for("session.created"))["session_id"]
    await client.send_json({"type": "text", "text": "My favourite colour is teal."})
    first_reply = (await client.wait_for("response.done"))["text"]
    await client.close()
    again = await VoiceClient.connect(server.base_url, f"session_id={session_id}")
    assert (await again.wait_for("session.created"))["session_id"] == session_id
    await again.send_json({"type": "text", "text": "What did I just tell you?"})
    await again.wait_for("response.done")
    await again.close()
    stored = (await _get(server, f"/sessions/{session_id}/messages"))["messages"]
    assert [m["content"] for m in stored[:2]] == ["My favourite colour is teal.", first_reply]
    assert len(stored) == 4


async def test_an_unknown_session_is_refused_with_a_close_code(server: ServerThread) -> None:
    client = await VoiceClient.connect(server.base_url, "session_id=nope")
    error = await client.wait_for("error")
    assert error["code"] == "unknown_session"
    await asyncio.sleep(0.2)
    assert client.socket.close_code == 4404


async def test_push_to_talk_waits_for_the_commit(server: ServerThread, engines: Engines) -> None:
    client = await VoiceClient.connect(server.base_url)
    await client.send_json({"type": "session.update", "mode": "push_to_talk"})
    assert (await client.wait_for("session.updated"))["mode"] == "push_to_talk"
    await client.stream(
        np.concatenate(
            [silence(0.3), speech(engines, "Tell me something nice about today."), silence(1.2)]
        )
    )
    assert not client.events("transcript.final")  # a long silence does not end the turn
    await client.send_json({"type": "input_audio.commit"})
    final = await client.wait_for("transcript.final")
    assert "something nice" in final["text"].lower()
    await client.wait_for("response.done")
    await client.close()


async def test_session_update_changes_the_voice(server: ServerThread) -> None:
    client = await VoiceClient.connect(server.base_url)
    await client.send_json({"type": "session.update", "voice": "espeak-en-us"})
    updated = await client.wait_for("session.updated")
    assert updated["voice"] == "espeak-en-us"
    assert updated["output_audio"]["sample_rate"] == 22050
    await client.close()


# --- /ws/chat, the endpoint of the system Eva replaces


@pytest.mark.parametrize(
    "frame",
    [
        "Hello there, who are you?",
        json.dumps({"message": "Hello there, who are you?"}),
        json.dumps({"type": "message", "content": "Hello there, who are you?"}),
    ],
)
async def test_ws_chat_streams_tokens_then_end(server: ServerThread, frame: str) -> None:
    import websockets

    url = server.base_url.replace("http://", "ws://") + "/ws/chat"
    async with websockets.connect(url) as socket:
        await socket.send(frame)
        tokens: list[str] = []
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), 60))
            if message["type"] == "token":
                tokens.append(message["content"])
            else:
                break
        assert message["type"] == "end" and tokens
        assert " ".join("".join(tokens).split()) == message["content"]
        assert message["session_id"]
        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await socket.recv()) == {"type": "pong"}
        await socket.send(
            json.dumps({"message": "And again.", "session_id": message["session_id"]})
        )
        while (last := json.loads(await asyncio.wait_for(socket.recv(), 60)))["type"] == "token":
            pass
        assert last["session_id"] == message["session_id"]


async def test_ws_chat_reports_bad_input_and_carries_on(server: ServerThread) -> None:
    import websockets

    url = server.base_url.replace("http://", "ws://") + "/ws/chat"
    async with websockets.connect(url) as socket:
        for frame, code in (
            (json.dumps({"message": 5}), "invalid_event"),
            (json.dumps({"message": "hi", "session_id": "nope"}), "unknown_session"),
            ("   ", "empty_message"),
        ):
            await socket.send(frame)
            reply = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert reply["type"] == "error" and reply["code"] == code
        await socket.send("Still working?")
        while (last := json.loads(await asyncio.wait_for(socket.recv(), 60)))["type"] == "token":
            pass
        assert last["type"] == "end"
