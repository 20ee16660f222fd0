"""Conversation manners over /ws, with the real models on a real server: acknowledgements,
backchannels that do not interrupt Eva, real interruptions that do, and re-engagement."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from eva.bench.turn_taking import pause_inside
from eva.conversation.manners import all_acknowledgements, backchannel_line, reengage_line
from eva.engines.runtime import Engines
from tests.server.ws_client import VoiceClient, silence, speech
from tests.support import ServerThread, make_settings

LONG_STORY = "Please tell me a long story about a lighthouse keeper and a seagull."


async def _messages(server: ServerThread, session_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        body = (await http.get(f"/sessions/{session_id}/messages")).json()
        return list(body["messages"])


async def _lines_ready(server: ServerThread, voice: str = "en_US-joe-medium") -> None:
    """The session's acknowledgements are synthesized in the background when it starts."""
    lines = server.server.config.app.state.conversation.lines
    wanted = [*all_acknowledgements("en"), reengage_line("en"), backchannel_line("en")]
    deadline = time.monotonic() + 30
    while any(lines.get(voice, text) is None for text in wanted):
        assert time.monotonic() < deadline, "acknowledgements never got synthesized"
        await asyncio.sleep(0.05)


def _event_index(client: VoiceClient, kind: str) -> int:
    return next(i for i, r in enumerate(client.received) if r.event and r.event["type"] == kind)


@pytest.fixture(scope="module")
def quick_manners(
    tmp_path_factory: pytest.TempPathFactory, engines: Engines
) -> Iterator[ServerThread]:
    """A server that acknowledges every reply (threshold 1 ms) and re-engages after 1 s."""
    settings = make_settings(
        Path(tmp_path_factory.mktemp("manners")), ack_after_ms=1, reengage_after_s=1.0
    )
    running = ServerThread(settings, engines).start()
    yield running
    running.stop()


# --- backchannels


# Only backchannels that Whisper tiny.en hears the same way wherever the utterance starts
# and ends: Piper's "mm-hm" is heard as anything from "in and out" to "in the may chain"
# (1 in 21 offsets was a backchannel), so it made this test flaky. espeak-ng's "uh-huh" is
# heard as nothing or "uh uh"; Piper's "yeah" and "I see" as themselves (21 of 21). The
# spellings a recognizer gives a hum are checked in tests/conversation/test_manners.py.
@pytest.mark.parametrize(
    ("noise", "voice"), [("Uh-huh.", "espeak-en-us"), ("Yeah.", None), ("I see.", None)]
)
async def test_a_backchannel_during_evas_speech_does_not_cancel_the_reply(
    server: ServerThread, engines: Engines, noise: str, voice: str | None
) -> None:
    client = await VoiceClient.connect(server.base_url)
    session_id = (await client.wait_for("session.created"))["session_id"]
    await client.send_json({"type": "text", "text": LONG_STORY})
    await client.wait_for_audio(1.0)
    await client.stream(np.concatenate([speech(engines, noise, voice), silence(1.2)]))
    resumed = await client.wait_for("response.resumed", within=10)
    done = await client.wait_for("response.done")
    assert done["interrupted"] is False, done
    assert not client.events("response.cancelled")
    paused = client.first("response.paused")
    assert _event_index(client, "response.paused") < _event_index(client, "speech.started")
    assert resumed["response_id"] == paused.event["response_id"] == done["response_id"]
    # Nothing was sent while Eva held the reply; sending went on after.
    resumed_at = client.first("response.resumed").at
    assert not [r for r in client.audio_after(paused.at + 0.1) if r.at < resumed_at]
    assert client.audio_after(resumed_at)
    # The backchannel was no turn: no transcript, no second reply, the whole reply stored.
    assert len(client.events("transcript.final")) == 1
    assert len(client.events("response.created")) == 1
    stored = await _messages(server, session_id)
    assert [m["content"] for m in stored] == [LONG_STORY, done["text"]]
    assert stored[1]["interrupted"] is False
    await client.close()


async def test_a_real_interruption_cancels_the_held_reply_and_is_answered(
    server: ServerThread, engines: Engines
) -> None:
    client = await VoiceClient.connect(server.base_url)
    await client.send_json({"type": "text", "text": LONG_STORY})
    await client.wait_for_audio(1.0)
    words = speech(engines, "Actually, tell me about the city of Paris instead.")
    spoken_until = await client.stream(np.concatenate([words, silence(1.5)]))
    done = await client.wait_for("response.done")
    assert done["interrupted"] is True
    cancelled = client.first("response.cancelled")
    # Cancelled while the person was still talking, not after they finished.
    assert cancelled.at < spoken_until - 1.5
    # Held from the first moment of speech: no reply audio until the next reply's.
    await client.wait_for("response.created", count=2)
    next_reply = [r for r in client.received if r.event and r.event["type"] == "response.created"]
    late = client.audio_after(client.first("speech.started").at + 0.1)
    assert all(r.at > next_reply[1].at for r in late)
    final = await client.wait_for("transcript.final", count=2)
    assert "tell me about the city" in final["text"].lower()
    await client.wait_for("response.done", count=2)
    await client.close()


async def test_a_short_sentence_over_eva_is_a_turn_not_a_backchannel(
    server: ServerThread, engines: Engines
) -> None:
    client = await VoiceClient.connect(server.base_url)
    await client.send_json({"type": "text", "text": LONG_STORY})
    await client.wait_for_audio(1.0)
    await client.stream(np.concatenate([speech(engines, "Stop."), silence(1.5)]))
    done = await client.wait_for("response.done")
    assert done["interrupted"] is True and client.events("response.cancelled")
    assert not client.events("response.resumed")
    # Whisper tiny.en hears one short synthesized word loosely ("Scott."): the point is
    # that it became the person's turn.
    assert (await client.wait_for("transcript.final", count=2))["text"]
    await client.close()


# --- acknowledgements


async def test_a_slow_reply_starts_with_one_acknowledgement_that_is_not_stored(
    quick_manners: ServerThread,
) -> None:
    client = await VoiceClient.connect(quick_manners.base_url)
    session_id = (await client.wait_for("session.created"))["session_id"]
    await _lines_ready(quick_manners)
    await client.send_json({"type": "text", "text": "Why is the sky blue?"})
    done = await client.wait_for("response.done")
    acks = client.events("response.ack")
    assert len(acks) == 1 and acks[0]["text"] == "Hmm."
    assert acks[0]["response_id"] == done["response_id"]
    ack_at = _event_index(client, "response.ack")
    assert _event_index(client, "response.created") < ack_at
    audio = [r.audio for r in client.received[ack_at:] if r.audio is not None]
    first_audio = next(i for i, r in enumerate(client.received) if r.audio is not None)
    assert first_audio > ack_at  # the ack's audio comes after its event
    assert sum(len(a) for a in audio) > 2 * acks[0]["samples"]  # the ack, then the reply
    assert done["timings"]["ack_ms"] > 0 and not done["text"].startswith("Hmm, let me")
    stored = await _messages(quick_manners, session_id)
    assert [m["content"] for m in stored] == ["Why is the sky blue?", done["text"]]
    await client.close()


async def test_an_interrupt_stops_the_acknowledgement_like_any_reply_audio(
    quick_manners: ServerThread,
) -> None:
    client = await VoiceClient.connect(quick_manners.base_url)
    await client.wait_for("session.created")
    await _lines_ready(quick_manners)
    await client.send_json({"type": "text", "text": "I went to the market this morning."})
    await client.wait_for("response.ack")
    await client.send_json({"type": "interrupt"})
    sent_at = time.monotonic()
    done = await client.wait_for("response.done")
    assert done["interrupted"] is True
    assert not client.audio_after(sent_at + 0.1)
    await client.close()


# --- re-engagement


async def _microphone(client: VoiceClient, engines: Engines, seconds: float) -> None:
    """A person who asks one question, then keeps the microphone on and says nothing."""
    question = speech(engines, "What should I cook tonight?")
    await client.stream(np.concatenate([silence(0.3), question, silence(seconds)]))


async def test_after_a_long_silence_eva_checks_in_once_and_only_once(
    quick_manners: ServerThread, engines: Engines
) -> None:
    client = await VoiceClient.connect(quick_manners.base_url)
    session_id = (await client.wait_for("session.created"))["session_id"]
    await _lines_ready(quick_manners)
    microphone = asyncio.create_task(_microphone(client, engines, seconds=60))
    try:
        await client.wait_for("response.done")
        check_in = await client.wait_for("response.done", count=2, within=20)
        await asyncio.sleep(4.0)  # four more re-engagement delays of silence
    finally:
        microphone.cancel()
        await asyncio.gather(microphone, return_exceptions=True)
    assert check_in["purpose"] == "reengage" and check_in["interrupted"] is False
    assert check_in["text"] == "Still there? No rush."
    purposes = [e.get("purpose") for e in client.events("response.created")]
    assert purposes == [None, "reengage"], purposes
    stored = await _messages(quick_manners, session_id)
    assert len(stored) == 2  # the check-in answers nothing: it is not stored
    await client.close()


async def test_push_to_talk_and_typed_sessions_are_never_re_engaged(
    quick_manners: ServerThread, engines: Engines
) -> None:
    typed = await VoiceClient.connect(quick_manners.base_url)
    await typed.wait_for("session.created")
    await _lines_ready(quick_manners)
    await typed.send_json({"type": "text", "text": "Hello Eva."})
    await typed.wait_for("response.done")
    push = await VoiceClient.connect(quick_manners.base_url)
    await push.send_json({"type": "session.update", "mode": "push_to_talk"})
    await push.wait_for("session.updated")
    await push.stream(np.concatenate([silence(0.3), speech(engines, "Hello Eva."), silence(0.3)]))
    await push.send_json({"type": "input_audio.commit"})
    await push.wait_for("response.done")
    await push.stream(silence(4.0))
    for client in (typed, push):
        purposes = [e.get("purpose") for e in client.events("response.created")]
        assert purposes == [None], purposes
        await client.close()


# --- Eva's own backchannels

MID_THOUGHT = (
    "When I was a little girl my grandmother used to take me to the seaside every summer "
    "because she loved the sea."
)


@pytest.mark.parametrize("switched_on", [True, False])
async def test_eva_says_mm_hm_at_a_mid_thought_pause_of_a_long_turn_unless_switched_off(
    server: ServerThread, engines: Engines, switched_on: bool
) -> None:
    said = speech(engines, MID_THOUGHT)
    words = engines.stt.timed_words(said.astype(np.float32) / 32768.0, "en")
    after = next(i for i, w in enumerate(words) if w.text.lower() == "because")
    # 1.3 s: a mid-thought pause (the turn waits 2 s after a dangling "because") long
    # enough for the whole "mm-hm" when the judgements come late on a busy machine; in a
    # 0.9 s one it was once cut by the person's next words, as it should be.
    paused, (start, end) = pause_inside(said, words, after, 1.3)
    client = await VoiceClient.connect(server.base_url)
    await client.wait_for("session.created")
    await _lines_ready(server)
    if not switched_on:
        await client.send_json({"type": "session.update", "backchannels": False})
        assert (await client.wait_for("session.updated"))["backchannels"] is False
    began = time.monotonic()
    await client.stream(np.concatenate([silence(0.3), paused, silence(2.5)]))
    await client.wait_for("transcript.final", within=30)
    finals = client.events("transcript.final")
    assert len(finals) == 1 and "sea" in finals[0]["text"].lower()  # one turn, not cut off
    created = [e for e in client.events("response.created") if e.get("purpose") == "backchannel"]
    if not switched_on:
        assert not created
        await client.close()
        return
    assert len(created) == 1
    line = created[0]["response_id"]
    done = next(e for e in client.events("response.done") if e["response_id"] == line)
    assert done["text"] == backchannel_line("en") and done["purpose"] == "backchannel"
    said_at = next(r.at for r in client.received if r.event and r.event.get("response_id") == line)
    assert 0.3 + start < said_at - began < 0.3 + end  # in the pause, not over the person
    await client.close()
