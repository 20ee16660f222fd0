"""Voice turns over ``/ws``, measured from the client: utterances made for this run only,
streamed at real-time pace like a microphone, one or several sessions at once.

Per turn:
- voice-to-voice: from the end of speech in the streamed audio to the first audio frame of
  the reply itself (the first frame after the reply's first words, ``response.text.delta``);
- first audio of any kind: the first frame after the end of speech, whatever it is (an
  acknowledgement sound, if the server sends one, comes before the reply's words);
- STT: the server's transcription time after the end of speech, and the word error rate
  of ``transcript.final`` against the text that was spoken.
Barge-in: the person speaks over a long reply; from the moment the barge-in speech starts
(as sent) to the last reply audio frame received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jiwer
import numpy as np
import websockets

from eva.audio import resample_linear
from eva.engines.base import Int16Audio, TTSEngine

SAMPLE_RATE = 16000
FRAME_SAMPLES = 640  # 40 ms at 16 kHz, what a browser worklet sends
_SILENCE_LEVEL = 500
# Silence before each utterance: a person does not start talking the instant a mic opens.
LEAD_SILENCE_S = 0.5
# A whole turn (speech, transcription, the reply played out at real-time pace) at 8
# simultaneous sessions on 2 cores stays well under this; past it the turn is a failure.
TURN_TIMEOUT_S = 90.0
# How much of each reply the simulated person listens to before speaking again (they
# interrupt if it goes on): LLM and synthesis run well ahead of playback, so by then a
# reply's work is mostly done and the engines carry the load of whole replies, while a
# run does not spend most of its time playing 20-second replies out in real time.
LISTEN_S = 4.0
# A session's socket must say hello within this, or the server is not answering.
HELLO_TIMEOUT_S = 15.0

_PEOPLE = ["my sister", "my neighbour", "my best friend", "my uncle", "my daughter", "my coach"]
_DOINGS = [
    "is learning to paint",
    "bought a red bicycle",
    "moved to the seaside",
    "started a small bakery",
    "is training for a marathon",
    "found an old photo album",
]
_QUESTIONS = [
    "What do you think about that?",
    "Should I visit them soon?",
    "Is that a good idea?",
    "What would you say to them?",
    "Have you ever tried it?",
]


def unique_utterances(count: int, rng: random.Random) -> list[str]:
    made: set[str] = set()
    while len(made) < count:
        made.add(
            f"{rng.choice(_PEOPLE).capitalize()} {rng.choice(_DOINGS)} "
            f"{rng.choice(['this week', 'last month', 'on Sunday', 'again'])}. "
            f"{rng.choice(_QUESTIONS)}"
        )
    return sorted(made, key=lambda _: rng.random())


class Speaker:
    """Speech made in this process with Eva's own packaged voice (a stand-in for a person)."""

    def __init__(self, tts: TTSEngine, voice_id: str, sample_rate: int) -> None:
        self.tts = tts
        self.voice_id = voice_id
        self.sample_rate = sample_rate

    @classmethod
    def packaged(cls) -> Speaker:
        """The packaged Piper voice, loaded in this process (not the server's)."""
        from eva.config import Settings
        from eva.engines import registry
        from eva.engines.voices import VoiceCatalog

        settings = Settings()
        catalog = VoiceCatalog([registry.create("tts", "piper", settings)], "", settings.language)
        voice = catalog.info(None)
        return cls(catalog, voice.id, voice.sample_rate)

    def say(self, text: str) -> Int16Audio:
        """16 kHz PCM16 of ``text``, trimmed to the voiced part."""
        pcm = np.concatenate(list(self.tts.synthesize(text, self.voice_id, threading.Event())))
        audio = resample_linear(pcm.astype(np.float32), self.sample_rate, SAMPLE_RATE)
        voiced = np.flatnonzero(np.abs(audio) > _SILENCE_LEVEL)
        return audio[voiced[0] : voiced[-1] + 1].astype(np.int16)


@dataclass(frozen=True)
class Utterance:
    text: str
    pcm: Int16Audio


def frame_schedule(
    samples: int, frame: int = FRAME_SAMPLES, rate: int = SAMPLE_RATE
) -> list[float]:
    """When each frame is due, in seconds from the start: a frame goes out once the audio
    before it has "played", so the last one is due exactly when the audio's duration ends."""
    return [min(end, samples) / rate for end in range(frame, samples + frame, frame)]


async def stream_audio(socket: Any, pcm: Int16Audio) -> float:
    """Send ``pcm`` at real-time pace in 40 ms frames; returns when the last sample was sent
    (``time.monotonic()``)."""
    started = time.monotonic()
    for index, due in enumerate(frame_schedule(len(pcm))):
        start = index * FRAME_SAMPLES
        await socket.send(pcm[start : start + FRAME_SAMPLES].astype("<i2").tobytes())
        await asyncio.sleep(max(0.0, started + due - time.monotonic()))
    return time.monotonic()


async def _silence_forever(socket: Any) -> None:
    """A microphone keeps sending after the person stops talking."""
    second = np.zeros(SAMPLE_RATE, np.int16)
    while True:
        await stream_audio(socket, second)


@dataclass
class VoiceConnection:
    """One /ws socket and everything it received, with when."""

    socket: Any
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    audio_at: list[float] = field(default_factory=list)
    audio_bytes: list[int] = field(default_factory=list)  # the size of each audio frame
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self.socket:
                now = time.monotonic()
                if isinstance(message, bytes):
                    self.audio_at.append(now)
                    self.audio_bytes.append(len(message))
                else:
                    self.events.append((now, json.loads(message)))
                self.changed.set()

    def first(self, kind: str, since: float = 0.0) -> tuple[float, dict[str, Any]] | None:
        return next(((t, e) for t, e in self.events if e["type"] == kind and t >= since), None)

    async def until(self, condition: Any, within: float) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    async def wait(
        self, kind: str, within: float, since: float = 0.0
    ) -> tuple[float, dict[str, Any]]:
        await self.until(lambda: self.first(kind, since) is not None, within)
        found = self.first(kind, since)
        assert found is not None
        return found


def words(text: str) -> str:
    """Lower case, punctuation out: what WER compares."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def word_error_rate(spoken: str, heard: str) -> float:
    reference, hypothesis = words(spoken), words(heard)
    if not reference:
        raise ValueError("the spoken text has no words")
    return float(jiwer.wer(reference, hypothesis)) if hypothesis else 1.0


def _ms(later: float | None, earlier: float) -> float:
    return (later - earlier) * 1000.0 if later is not None else float("nan")


async def one_turn(
    connection: VoiceConnection, utterance: Utterance, listen_s: float
) -> dict[str, Any]:
    socket = connection.socket
    await stream_audio(socket, np.zeros(int(SAMPLE_RATE * LEAD_SILENCE_S), np.int16))
    speech_end = await stream_audio(socket, utterance.pcm)
    tail = asyncio.create_task(_silence_forever(socket))

    def reply_done() -> dict[str, Any] | None:
        """The reply's own end (not that of Eva's "mm-hm" while the person spoke)."""
        created = _reply_created(connection, speech_end)
        if created is None:
            return None
        wanted = created[1]["response_id"]
        return next(
            (e for _, e in connection.events
             if e["type"] == "response.done" and e.get("response_id") == wanted),
            None,
        )  # fmt: skip

    def done() -> bool:
        return reply_done() is not None

    try:
        await connection.until(
            lambda: done() or _reply_audio_at(connection, speech_end) is not None,
            TURN_TIMEOUT_S,
        )
        # The person listens to the start of the reply, then moves on (interrupts).
        with contextlib.suppress(TimeoutError):
            await connection.until(done, listen_s)
        if not done():
            await socket.send(json.dumps({"type": "interrupt"}))
        await connection.until(done, TURN_TIMEOUT_S)
        finished = reply_done()
        assert finished is not None
    finally:
        tail.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await tail
    error = connection.first("error", speech_end)
    if error is not None:
        raise RuntimeError(f"server error: {error[1].get('code')}: {error[1].get('message')}")
    reply_audio = _reply_audio_at(connection, speech_end)
    if reply_audio is None:
        raise RuntimeError("the reply had no audio")
    any_audio = next((t for t in connection.audio_at if t > speech_end), None)
    ack = next(
        (
            t
            for t, e in connection.events
            if t > speech_end and e["type"].startswith("response.ack")
        ),
        None,
    )
    final = connection.first("transcript.final", speech_end)
    timings = finished.get("timings", {})
    return {
        "voice_to_voice_ms": _ms(reply_audio, speech_end),
        "first_audio_any_ms": _ms(any_audio, speech_end),
        "ack_event_ms": _ms(ack, speech_end),
        "server_voice_to_voice_ms": timings.get("voice_to_voice_ms", float("nan")),
        "stt_ms": timings.get("stt_ms", float("nan")),
        "wer": word_error_rate(utterance.text, final[1]["text"] if final else ""),
        "server_timings": timings,  # where the server says the time went
    }


def _reply_created(
    connection: VoiceConnection, since: float
) -> tuple[float, dict[str, Any]] | None:
    """The reply's ``response.created``: Eva's own lines (a backchannel) carry a purpose."""
    return next(
        ((t, e) for t, e in connection.events
         if t >= since and e["type"] == "response.created" and "purpose" not in e),
        None,
    )  # fmt: skip


def _reply_audio_at(connection: VoiceConnection, since: float) -> float | None:
    """The reply's own first audio: after its first words, and after the acknowledgement
    that may come first (its ``samples`` are the first audio after ``response.ack``)."""
    created = _reply_created(connection, since)
    if created is None:
        return None
    since = created[0]
    delta = connection.first("response.text.delta", since)
    if delta is None:
        return None
    ack = connection.first("response.ack", since)
    ack_bytes = 2 * int(ack[1].get("samples", 0)) if ack is not None else 0
    for at, size in zip(connection.audio_at, connection.audio_bytes, strict=True):
        if at < since:
            continue
        if ack is not None and at >= ack[0] and ack_bytes > 0:
            ack_bytes -= size
            continue
        if at >= delta[0]:
            return at
    return None


async def voice_session(
    url: str, utterances: Sequence[Utterance], *, listen_s: float = LISTEN_S
) -> list[dict[str, Any]]:
    """One person's session: each utterance in turn, listening to at most ``listen_s``
    seconds of Eva's reply in between (0: up to its first audio).
    A failed turn is recorded as ``{"failure": reason}`` and ends the session (its socket
    may be in any state); the remaining turns count as failed too."""
    results: list[dict[str, Any]] = []
    try:
        async with websockets.connect(url, max_size=2**22, open_timeout=HELLO_TIMEOUT_S) as socket:
            connection = VoiceConnection(socket)
            reader = asyncio.create_task(connection.read())
            try:
                await connection.wait("session.created", HELLO_TIMEOUT_S)
                for utterance in utterances:
                    results.append(await one_turn(connection, utterance, listen_s))
            finally:
                reader.cancel()
    except (OSError, RuntimeError, TimeoutError, websockets.WebSocketException) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:200]
        results.extend({"failure": reason} for _ in range(len(utterances) - len(results)))
    return results


async def concurrent_sessions(
    url: str, per_session: Sequence[Sequence[Utterance]], *, listen_s: float = LISTEN_S
) -> list[dict[str, Any]]:
    """Several sessions at once, all starting together; every turn's result, in order."""
    sessions = await asyncio.gather(
        *(voice_session(url, turns, listen_s=listen_s) for turns in per_session)
    )
    return [turn for session in sessions for turn in session]


async def barge_in(url: str, interruption: Int16Audio) -> dict[str, float]:
    async with websockets.connect(url, max_size=2**22) as socket:
        connection = VoiceConnection(socket)
        reader = asyncio.create_task(connection.read())
        await connection.wait("session.created", HELLO_TIMEOUT_S)
        await socket.send(
            json.dumps(
                {
                    "type": "text",
                    "text": "Tell me a long story about "
                    f"a sailor number {random.randint(1, 10**6)}.",
                }
            )
        )
        # about a second of reply audio (40 ms frames)
        await connection.until(lambda: len(connection.audio_at) >= 25, 30)
        speaking_from = time.monotonic()
        await stream_audio(socket, interruption)
        await connection.wait("response.done", 30)
        started = connection.first("speech.started")
        last_audio = max(connection.audio_at)
        reader.cancel()
    return {
        "barge_in_stop_ms": (last_audio - speaking_from) * 1000,
        "stop_after_speech_started_ms": max(0.0, (last_audio - started[0]) * 1000)
        if started
        else float("nan"),
    }
