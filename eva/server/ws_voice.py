"""``/ws``: a spoken (or typed) conversation over one WebSocket.

Per connection, a ``VoiceSession`` runs the microphone audio through the ``TurnDetector``,
sends partial transcripts while the person speaks, and answers at the end of their turn.
The reply is prepared speculatively from the first pause (transcript, LLM, first audio) and
held until the pause turns out to be the end of the turn; if the person goes on, it is
thrown away. Reply audio is paced at real time plus a small lead, so that a barge-in stops
what the person hears within one lead, and what was sent is what was heard. See
docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from eva.config import Settings
from eva.conversation.listener import (
    ListenerConfig,
    SpeechPaused,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
)
from eva.conversation.service import Conversation
from eva.conversation.turn import (
    AudioChunk,
    TextDelta,
    TurnControl,
    TurnDone,
    TurnTimer,
    display_text,
)
from eva.engines.base import STT_SAMPLE_RATE, EngineError, Float32Audio, Int16Audio
from eva.engines.voices import UnknownVoiceError
from eva.server.errors import ApiError
from eva.server.identity import resolve_user
from eva.server.limits import rate_limited
from eva.server.outbox import Outbox
from eva.server.ws_greeting import start_greeting, wants_greeting
from eva.server.ws_manners import SessionManners
from eva.server.ws_protocol import (
    PROTOCOL_VERSION,
    CommitAudio,
    Interrupt,
    Ping,
    ProtocolError,
    SessionUpdate,
    TextTurn,
    event,
    parse_audio,
    parse_event,
)
from eva.store.sqlite import UnknownSessionError

log = logging.getLogger("eva.ws")

# Reply audio goes out in 40 ms frames: small enough to stop promptly, big enough that
# the per-frame overhead is nothing.
AUDIO_FRAME_MS = 40
# How far ahead of real time reply audio is sent: covers network jitter, and bounds what
# the client still plays after a barge-in.
AUDIO_LEAD_S = 0.25
# Partial transcripts while the person speaks: one every 1.2 s keeps the screen alive
# without keeping the STT thread busy when the final transcript is needed.
PARTIAL_EVERY_S = 1.2
# How long a closing session waits for its interrupted reply to be stored; the engines
# stop at their next token or clause, so this only bounds a stuck backend.
_CLOSE_WAIT_S = 5.0
# A close code in the private range: the session asked for does not exist.
CLOSE_UNKNOWN_SESSION = 4404
# The handshake's query parameters are invalid (say, a malformed user_id).
CLOSE_INVALID_REQUEST = 4400


def listener_config(settings: Settings) -> ListenerConfig:
    return ListenerConfig(
        threshold=settings.vad_threshold,
        min_speech_ms=settings.vad_min_speech_ms,
        pause_ms=settings.vad_pause_ms,
        end_of_turn_complete_ms=settings.end_of_turn_complete_ms,
        end_of_turn_ms=settings.end_of_turn_ms,
        max_utterance_s=settings.max_turn_audio_seconds,
    )


def _released() -> asyncio.Event:
    released = asyncio.Event()
    released.set()
    return released


@dataclass
class Response:
    """One reply in flight: speculative until ``commit``, then streamed to the client."""

    id: str
    control: TurnControl = field(default_factory=TurnControl)
    timer: TurnTimer = field(default_factory=TurnTimer)
    committed: asyncio.Event = field(default_factory=asyncio.Event)
    stop_audio: asyncio.Event = field(default_factory=asyncio.Event)
    speech_end_at: float | None = None  # monotonic time the person stopped speaking
    sent_clauses: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    discarded: bool = False
    # Cleared while the person speaks over the reply (a backchannel, maybe): audio waits.
    hold: asyncio.Event = field(default_factory=_released)
    audio_started: bool = False  # the reply's own audio is ready (after any acknowledgement)
    acking: bool = False  # an acknowledgement is going out before the reply

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    def record_sent(self, clause: str, fraction: float) -> None:
        """Remember what the person heard: a whole clause, or the share of its words that
        matches the share of its audio sent before a barge-in, marked as cut off."""
        if fraction <= 0 or self.sent_clauses[-1:] == [clause]:
            return
        if fraction >= 1:
            self.sent_clauses.append(clause)
            return
        words = clause.split()
        heard = words[: max(1, round(len(words) * fraction))]
        self.sent_clauses.append(" ".join(heard) + "—")


class VoiceSession:
    def __init__(
        self, socket: WebSocket, service: Conversation, session_id: str, voice_id: str
    ) -> None:
        self.socket = socket
        self.service = service
        self.settings = service.settings
        self.session_id = session_id
        self.voice = service.engines.tts.info(voice_id)
        self.mode = "hands_free"
        self.out = Outbox(socket, self.settings.ws_send_stall_s)
        self.detector = TurnDetector(
            service.engines.vad.new_stream(), listener_config(self.settings)
        )
        self.response: Response | None = None
        self.partial_task: asyncio.Task[None] | None = None
        self.last_partial_at = 0.0
        self.playhead = 0.0  # monotonic time when the client will have played all sent audio
        self.stream_samples = 0  # microphone samples received so far
        self._responses = 0
        self.greeting: str | None = None  # said first, when a known person comes back
        self.manners = SessionManners(self)

    # --- the connection

    async def run(self) -> None:
        await self.out.json(self._session_event("session.created"))
        if self.greeting is not None:
            await start_greeting(self, self.greeting)
        self.manners.prepare_lines()
        try:
            while self.out.open:
                message = await self.out.receive()
                if message is None or message["type"] == "websocket.disconnect":
                    break
                try:
                    if message.get("bytes") is not None:
                        await self.on_audio(message["bytes"])
                    elif message.get("text") is not None:
                        await self.on_event(message["text"])
                except ProtocolError as exc:
                    await self.out.json(event("error", code=exc.code, message=exc.message))
        except WebSocketDisconnect:
            pass
        finally:
            self.out.open = False
            await self.close()
            await self.out.close()

    async def close(self) -> None:
        """Stop every piece of work this session started, and wait until it has stopped.

        A reply that was going out ends as if interrupted, so the person's words and what
        Eva said before they left are stored; a speculative reply is dropped."""
        if self.partial_task is not None:
            self.partial_task.cancel()
            await asyncio.gather(self.partial_task, return_exceptions=True)
        await self.manners.close()
        current = self.response
        if current is None or current.task is None:
            return
        if current.committed.is_set():
            await self.barge_in(current)
            try:
                await asyncio.wait_for(asyncio.shield(current.task), _CLOSE_WAIT_S)
                return
            except (TimeoutError, Exception):
                pass  # a stuck backend: cancel below rather than hold the connection
        await self._discard(current)

    def _session_event(self, kind: str) -> dict[str, Any]:
        return event(
            kind,
            session_id=self.session_id,
            protocol=PROTOCOL_VERSION,
            voice=self.voice.id,
            mode=self.mode,
            input_audio={"format": "pcm16", "sample_rate": STT_SAMPLE_RATE, "channels": 1},
            output_audio={"format": "pcm16", "sample_rate": self.voice.sample_rate, "channels": 1},
        )

    # --- client events

    async def on_event(self, raw: str) -> None:
        message = parse_event(raw, self.settings.max_message_chars)
        if isinstance(message, Ping):
            await self.out.json(event("pong"))
        elif isinstance(message, TextTurn):
            wait = rate_limited(self.socket)
            if wait is not None:
                raise ProtocolError("rate_limited", f"too many turns; retry in {wait} s")
            await self.start_typed_turn(message.text)
        elif isinstance(message, Interrupt):
            await self.interrupt()
        elif isinstance(message, CommitAudio):
            ended = self.detector.end_turn_now()
            if ended is not None:
                await self.on_turn_ended(ended, time.monotonic())
        elif isinstance(message, SessionUpdate):
            await self.update(message)

    async def update(self, message: SessionUpdate) -> None:
        if message.voice is not None:
            try:
                self.voice = self.service.engines.tts.info(message.voice)
            except UnknownVoiceError as exc:
                raise ProtocolError("unknown_voice", str(exc)) from None
            self.manners.prepare_lines()
        if message.mode is not None:
            self.mode = message.mode
            self.detector.ends_turns_on_silence = self.mode == "hands_free"
        await self.out.json(self._session_event("session.updated"))

    async def on_audio(self, frame: bytes) -> None:
        pcm = parse_audio(frame, self.settings.max_audio_frame_bytes)
        arrived = time.monotonic()
        self.stream_samples += len(pcm)
        for heard in self.detector.feed(pcm):
            if isinstance(heard, SpeechStarted):
                await self.on_speech_started(heard)
            elif isinstance(heard, SpeechPaused):
                await self.out.json(event("speech.stopped"))
                speech_end = self._wall_time(heard.speech_end_sample, arrived)
                held = self.manners.on_speech_paused(
                    heard.audio, heard.speech_end_sample, speech_end
                )
                if self.mode == "hands_free" and not held:
                    await self.start_voice_turn(heard.audio, speech_end)
            elif (
                isinstance(heard, TurnEnded)
                and (self.mode == "hands_free" or heard.forced)
                and not await self.manners.on_turn_ended()
            ):
                if heard.forced:
                    limit = self.settings.max_turn_audio_seconds
                    message = f"over {limit:g} s of speech: Eva answers what she heard so far"
                    await self.out.json(event("error", code="turn_too_long", message=message))
                await self.on_turn_ended(heard, arrived)
        await self.manners.on_audio()
        self._maybe_partial()

    async def on_speech_started(self, heard: SpeechStarted) -> None:
        # Speech over Eva holds her reply until it is clear whether it was a backchannel
        # (response.paused goes out first, so the client holds rather than flushes).
        held = await self.manners.on_speech_started()
        await self.out.json(event("speech.started"))
        if not held:
            # The person went on after a pause (a speculative reply is moot), or spoke over
            # Eva.
            await self.interrupt()

    async def on_turn_ended(self, ended: TurnEnded, now: float) -> None:
        current = self.response
        if current is None or current.committed.is_set() or current.discarded:
            speech_end = self._wall_time(ended.speech_end_sample, now)
            current = await self.start_voice_turn(ended.audio, speech_end)
        current.committed.set()  # the speculative reply for this utterance goes out

    def _wall_time(self, sample: int, now: float) -> float:
        """When microphone sample ``sample`` arrived, given that the latest arrived ``now``."""
        return now - (self.stream_samples - sample) / STT_SAMPLE_RATE

    # --- turns

    async def start_voice_turn(self, audio: Float32Audio, speech_end_at: float) -> Response:
        response = await self._new_response()
        response.speech_end_at = speech_end_at
        response.task = asyncio.create_task(self._voice_turn(response, audio))
        return response

    async def start_typed_turn(self, text: str) -> Response:
        response = await self._new_response()
        response.committed.set()  # typed: no turn-taking to wait for
        response.task = asyncio.create_task(self._reply(response, text))
        return response

    async def _new_response(self) -> Response:
        previous = self.response
        if previous is not None and previous.active:
            await self.interrupt()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous.task  # type: ignore[misc]
        self._responses += 1
        self.response = Response(id=f"resp_{self._responses}")
        return self.response

    async def _voice_turn(self, response: Response, audio: Float32Audio) -> None:
        try:
            heard = await self.service.transcribe(audio)
        except EngineError as exc:
            await response.committed.wait()
            await self.out.json(event("error", code="backend_unavailable", message=str(exc)))
            return
        text = heard.transcript.text.strip()
        self.detector.set_end_of_turn_wait(text)
        response.timer = TurnTimer()
        response.timer.set("stt_ms", heard.milliseconds)
        if not text:
            return  # noise, a cough: nothing to answer
        await self._reply(response, text)

    async def _reply(self, response: Response, text: str) -> None:
        sent_first_audio = False
        announced = asyncio.create_task(self._announce(response, text))
        ack = asyncio.create_task(self.manners.acknowledge(response, text, announced))
        try:
            events = self.service.reply(
                self.session_id,
                text,
                voice_id=self.voice.id,
                control=response.control,
                timer=response.timer,
                settle=lambda done: self._settle(response, done),
            )
            async for item in events:
                await announced  # holds everything until the turn has really ended
                if isinstance(item, TextDelta):
                    await self.out.json(event("response.text.delta", text=item.text))
                elif isinstance(item, AudioChunk):
                    if not sent_first_audio:
                        sent_first_audio = True
                        self._mark_first_audio(response)
                        await self.manners.before_first_audio(response, ack)
                    sent = await self._send_paced(item.pcm, item.sample_rate, response)
                    response.record_sent(item.text, sent)
                elif isinstance(item, TurnDone):
                    said = item.spoken_text if item.interrupted else item.text
                    await self.out.json(
                        event(
                            "response.done",
                            response_id=response.id,
                            text=said,
                            interrupted=item.interrupted,
                            timings=item.timings,
                        )
                    )
                    self.manners.reply_finished(response, item.interrupted)
        except EngineError as exc:
            self.service.stats.count_error("/ws")
            await self.out.json(event("error", code="backend_unavailable", message=str(exc)))
        except Exception:  # a bug must not leave the client waiting for a reply forever
            log.exception("a reply failed")
            self.service.stats.count_error("/ws")
            await self.out.json(event("error", code="internal_error", message="the reply failed"))
        finally:
            announced.cancel()
            ack.cancel()

    async def say_line(self, response: Response, text: str, pcm: Int16Audio, purpose: str) -> None:
        """A line of Eva's own outside any turn (a re-engagement): sent like a reply, with
        ``purpose`` on its events, and not stored (it answers nothing the person said)."""
        await self.out.json(event("response.created", response_id=response.id, purpose=purpose))
        await self.out.json(event("response.text.delta", text=text))
        sent = await self._send_paced(pcm, self.voice.sample_rate, response)
        interrupted = sent < 1
        await self.out.json(
            event(
                "response.done",
                response_id=response.id,
                text=text if not interrupted else "",
                interrupted=interrupted,
                purpose=purpose,
                timings={},
            )
        )

    async def _announce(self, response: Response, text: str) -> None:
        """Once the turn is committed: the person's final words, then Eva's reply begins."""
        await response.committed.wait()
        await self.out.json(event("transcript.final", text=text))
        await self.out.json(event("response.created", response_id=response.id))
        if response.speech_end_at is not None:
            ended = (time.monotonic() - response.speech_end_at) * 1000
            response.timer.set("end_of_turn_ms", ended)

    def _mark_first_audio(self, response: Response) -> None:
        if response.speech_end_at is not None:
            response.timer.set(
                "voice_to_voice_ms", (time.monotonic() - response.speech_end_at) * 1000
            )

    async def _settle(self, response: Response, done: TurnDone) -> TurnDone | None:
        if response.discarded or not response.committed.is_set():
            return None
        if done.interrupted:
            return replace(done, spoken_text=display_text(" ".join(response.sent_clauses)))
        return done

    async def _send_paced(self, pcm: Int16Audio, rate: int, response: Response) -> float:
        """Send one chunk as it would play; the fraction of it sent (less than 1 when a
        barge-in stopped it part-way)."""
        frame = max(1, rate * AUDIO_FRAME_MS // 1000)
        for start in range(0, len(pcm), frame):
            await response.hold.wait()  # released at once by a barge-in
            if response.stop_audio.is_set() or not self.out.open:
                return start / len(pcm)
            now = time.monotonic()
            self.playhead = max(self.playhead, now)
            ahead = self.playhead - now - AUDIO_LEAD_S
            if ahead > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(response.stop_audio.wait(), ahead)
                if response.stop_audio.is_set():
                    return start / len(pcm)
            piece = pcm[start : start + frame]
            await self.out.audio(piece)
            self.playhead += len(piece) / rate
        return 1.0

    # --- stopping

    async def barge_in(self, response: Response) -> None:
        """The person spoke over Eva: stop the audio now, and the reply behind it."""
        response.stop_audio.set()
        response.hold.set()
        response.control.cancel()
        self.playhead = time.monotonic()

    async def interrupt(self) -> None:
        """Stop the reply in flight: a committed one as a barge-in (what was sent is kept),
        a speculative one is thrown away."""
        current = self.response
        if current is None or not current.active:
            return
        if self.manners.paused is current:
            await self.manners.cancel_pause()
        elif current.committed.is_set():
            await self.barge_in(current)
        else:
            await self._discard(current)

    async def _discard(self, response: Response) -> None:
        response.discarded = True
        response.control.cancel()
        response.stop_audio.set()
        response.hold.set()
        if response.task is not None:
            response.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await response.task

    # --- partial transcripts

    def _maybe_partial(self) -> None:
        now = time.monotonic()
        if (
            not self.detector.speaking
            # Only mid-voice: a partial still running when a pause begins would delay the
            # final transcript, which waits for the same STT thread.
            or self.detector.last_probability < self.detector.config.threshold
            or now - self.last_partial_at < PARTIAL_EVERY_S
            or (self.partial_task is not None and not self.partial_task.done())
            or (
                self.response is not None
                and self.response.active
                and not self.response.committed.is_set()
            )
        ):
            return
        audio = self.detector.utterance_audio()
        if len(audio) < STT_SAMPLE_RATE * PARTIAL_EVERY_S:
            return
        self.last_partial_at = now
        self.partial_task = asyncio.create_task(self._partial(audio))

    async def _partial(self, audio: np.ndarray) -> None:
        with contextlib.suppress(EngineError):
            heard = await self.service.transcribe(audio)
            if heard.transcript.text and self.detector.speaking:
                await self.out.json(event("transcript.partial", text=heard.transcript.text))


async def voice_endpoint(socket: WebSocket) -> None:
    """The /ws route: accept, find or create the session, run it until the client leaves."""
    await socket.accept()
    service: Conversation | None = socket.app.state.conversation
    if service is None:
        await socket.send_json(event("error", code="not_ready", message="Eva is still loading"))
        await socket.close(code=1013)  # try again later
        return
    try:
        user_id = resolve_user(socket, socket.query_params.get("user_id"))
        session = await service.open_session(socket.query_params.get("session_id") or None, user_id)
    except ApiError as exc:
        await socket.send_json(event("error", code=exc.code, message=exc.message))
        await socket.close(code=CLOSE_INVALID_REQUEST)
        return
    except UnknownSessionError:
        await socket.send_json(event("error", code="unknown_session", message="no such session"))
        await socket.close(code=CLOSE_UNKNOWN_SESSION)
        return
    voice = socket.query_params.get("voice") or service.engines.tts.default_voice
    try:
        service.engines.tts.info(voice)
    except UnknownVoiceError as exc:
        await socket.send_json(event("error", code="unknown_voice", message=str(exc)))
        voice = service.engines.tts.default_voice
    state = socket.app.state
    state.active_sessions = getattr(state, "active_sessions", 0) + 1
    service.stats.count_request("/ws")
    new_session = not socket.query_params.get("session_id")
    try:
        voice_session = VoiceSession(socket, service, session.id, voice)
        if new_session and wants_greeting(socket.query_params.get("greet")):
            voice_session.greeting = await service.greeting(session.id, user_id)
        await voice_session.run()
    finally:
        state.active_sessions -= 1
