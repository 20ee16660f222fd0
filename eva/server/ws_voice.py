"""``/ws``: a spoken (or typed) conversation over one WebSocket.

A thin driver of the session core (eva/conversation/session.py): it feeds the core what
arrives (frames, client events, results, the time) and carries out the commands it gets
back (send an event, transcribe, judge the end of a turn, say a reply or a line, pause or
clear the audio output). Everything Eva says goes through one path, ``_say``. See
docs/protocol.md for the events, docs/architecture.md for the path of one spoken turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import replace
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from starlette.types import Message

from eva.config import Settings
from eva.conversation.admission import Channel
from eva.conversation.end_of_turn import TurnPolicy
from eva.conversation.listener import ListenerConfig, TurnDetector
from eva.conversation.reply import ReplyHandle
from eva.conversation.service import Conversation, turn_owner
from eva.conversation.session import (
    ClearOutput,
    Command,
    Greet,
    JudgeTurn,
    PauseOutput,
    ResumeOutput,
    SayAck,
    SayLine,
    Send,
    SessionConfig,
    SessionCore,
    StartReply,
    Transcribe,
)
from eva.conversation.turn import AudioChunk, TextDelta, TurnDone, TurnEvent
from eva.conversation.turn_gate import ServerBusyError
from eva.engines.base import STT_SAMPLE_RATE, EngineError, Float32Audio
from eva.engines.voices import UnknownVoiceError
from eva.server.admitted import admitted_conversation, busy_event
from eva.server.audio_out import PacedOutput
from eva.server.errors import ApiError
from eva.server.identity import resolve_user
from eva.server.limits import rate_limited
from eva.server.outbox import Outbox
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
        end_of_turn_ms=settings.end_of_turn_ms,
        max_utterance_s=settings.max_turn_audio_seconds,
    )


def session_config(settings: Settings, model: bool) -> SessionConfig:
    policy = TurnPolicy(
        model=model,
        confident_ms=settings.end_of_turn_fast_ms,
        mid_thought_ms=settings.end_of_turn_max_ms,
        words_complete_ms=settings.end_of_turn_complete_ms,
        words_ms=settings.end_of_turn_ms,
    )
    return SessionConfig(
        policy=policy,
        language=settings.language,
        ack_after_s=settings.ack_after_ms / 1000,
        overlap_max_ms=settings.backchannel_max_ms,
        reengage_after_s=settings.reengage_after_s,
        backchannels=settings.backchannels,
    )


def wants_greeting(flag: str | None) -> bool:
    return (flag or "").lower() in ("1", "true", "yes")


class VoiceSession:
    def __init__(
        self,
        socket: WebSocket,
        service: Conversation,
        session_id: str,
        voice_id: str,
        out: Outbox | None = None,
    ) -> None:
        self.socket = socket
        self.service = service
        self.settings = service.settings
        self.session_id = session_id
        self.voice = service.engines.tts.info(voice_id)
        # What goes out: Eva's events as they are, or another protocol's (eva/server/v1/
        # realtime.py) when a driver passes its own outbox.
        self.out = out or Outbox(socket, self.settings.ws_send_stall_s)
        # How replies are made: the client's instructions after the persona's, whether
        # they are spoken, and a bound on their tokens under Eva's own.
        self.instructions = ""
        self.speaks = True
        self.max_tokens: int | None = None
        self.output = PacedOutput(self.out)
        detector = TurnDetector(service.engines.vad.new_stream(), listener_config(self.settings))
        config = session_config(self.settings, service.engines.end_of_turn is not None)
        self.core = SessionCore(
            detector, config, "hands_free",
            lambda text: service.lines.get(self.voice.id, text) is not None,
        )  # fmt: skip
        self.greeting: str | None = None  # said first, when a known person comes back
        self._work: set[asyncio.Task[Any]] = set()  # transcriptions, judgements, lines
        # Told "busy, come back in N s": what is said before then is not answered.
        self._refused_until = 0.0
        # Reply id → the reply and the task saying it.
        self._speaking: dict[str, tuple[ReplyHandle, asyncio.Task[None]]] = {}
        self._lines: asyncio.Task[None] | None = None
        self._deadline_changed = asyncio.Event()
        self._announced: dict[str, asyncio.Event] = {}  # reply id → response.created sent
        self._clock: asyncio.Task[None] | None = None

    # --- the connection

    async def run(self) -> None:
        await self.out.json(self._session_event("session.created"))
        await self._apply(self.core.start(self.greeting))
        self._prepare_lines()
        self._clock = asyncio.create_task(self._run_clock())
        try:
            while self.out.open:
                message = await self.out.receive()
                if message is None or message["type"] == "websocket.disconnect":
                    break
                await self.on_message(message)
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
        pending = [t for t in (self._clock, self._lines, *self._work) if t is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.core.interrupt()
        speaking = [task for _, task in self._speaking.values()]
        if speaking:
            _, late = await asyncio.wait(speaking, timeout=_CLOSE_WAIT_S)
            for task in late:  # a stuck backend: cancel rather than hold the connection
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def on_message(self, message: Message) -> None:
        """One frame from the client: microphone audio, or an event."""
        try:
            if message.get("bytes") is not None:
                pcm = parse_audio(message["bytes"], self.settings.max_audio_frame_bytes)
                await self._apply(self.core.audio(pcm, time.monotonic()))
            elif message.get("text") is not None:
                await self.on_event(message["text"])
        except ProtocolError as exc:
            await self.out.json(event("error", code=exc.code, message=exc.message))

    def _session_event(self, kind: str) -> dict[str, Any]:
        return event(
            kind,
            session_id=self.session_id,
            protocol=PROTOCOL_VERSION,
            voice=self.voice.id,
            mode=self.core.mode,
            backchannels=self.core.backchannels,
            input_audio={"format": "pcm16", "sample_rate": STT_SAMPLE_RATE, "channels": 1},
            output_audio={"format": "pcm16", "sample_rate": self.voice.sample_rate, "channels": 1},
        )

    def _prepare_lines(self) -> None:
        """Synthesize this voice's prepared lines in the background: until they exist,
        none is said."""
        if self._lines is not None:
            self._lines.cancel()
        prepare = self.service.lines.prepare(self.voice.id, self.core.wanted_lines())
        self._lines = asyncio.create_task(prepare)

    # --- client events

    async def on_event(self, raw: str) -> None:
        message = parse_event(raw, self.settings.max_message_chars)
        now = time.monotonic()
        if isinstance(message, Ping):
            await self.out.json(event("pong"))
        elif isinstance(message, TextTurn):
            problem = self.service.too_long_for_model(message.text)
            if problem is not None:
                raise ProtocolError("text_too_long", problem)
            wait = rate_limited(self.socket)
            if wait is not None:
                raise ProtocolError("rate_limited", f"too many turns; retry in {wait} s")
            await self._apply(self.core.text_turn(message.text, now))
        elif isinstance(message, Interrupt):
            await self._apply(self.core.interrupt())
        elif isinstance(message, CommitAudio):
            await self._apply(self.core.commit_audio(now))
        elif isinstance(message, SessionUpdate):
            if message.voice is not None:
                try:
                    self.voice = self.service.engines.tts.info(message.voice)
                except UnknownVoiceError as exc:
                    raise ProtocolError("unknown_voice", str(exc)) from None
                self._prepare_lines()
            if message.mode is not None:
                self.core.set_mode(message.mode)
            if message.backchannels is not None:
                self.core.backchannels = message.backchannels
            await self.out.json(self._session_event("session.updated"))

    # --- carrying out the core's commands

    async def _apply(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, Send):
                await self.out.json(command.event)
            elif isinstance(command, Transcribe):
                if await self._not_transcribed(command):
                    # Nothing heard, as for a cough.
                    await self._apply(self.core.transcribed(command.job, "", 0.0, time.monotonic()))
                    continue
                self._spawn(self._transcribe(command.job, command.audio))
            elif isinstance(command, JudgeTurn):
                self._spawn(self._judge(command.job, command.audio))
            elif isinstance(command, StartReply):
                self._start_saying(command.reply, self._reply_items(command.reply))
            elif isinstance(command, SayLine):
                self._start_saying(command.reply, self._line_items(command.reply, command.text))
            elif isinstance(command, Greet):
                items = self.service.speak(command.text, self.voice.id, command.reply.control)
                self._start_saying(command.reply, items)
            elif isinstance(command, SayAck):
                self._spawn(self._acknowledge(command.reply, command.text))
            elif isinstance(command, PauseOutput):
                self.output.pause()
            elif isinstance(command, ResumeOutput):
                self.output.resume()
            elif isinstance(command, ClearOutput):
                self.output.clear()
        self._deadline_changed.set()

    async def _not_transcribed(self, command: Transcribe) -> bool:
        """Whether the audio is left untranscribed: a partial shed under load (words on
        screen are a nicety nobody waits for) or said while the person was told to come
        back, and a turn refused before its transcription."""
        if command.purpose == "partial":
            return not self.service.can_spare_transcription() or self._told_to_wait()
        return command.purpose == "turn" and await self._refused_before_transcribing()

    async def _refused_before_transcribing(self) -> bool:
        """A spoken turn Eva would refuse is refused as soon as the person pauses: told at
        once, rather than after its words were transcribed (0.3-1 s under load), and the
        transcription, a third of the two cores under load, is not spent on it. A turn let
        in has its place kept while it is transcribed, so that another speaker does not
        take it meanwhile and this one is told "busy" late after all. Once told,
        the person is not answered before the time they were told to come back at: told
        at a pause inside a sentence, the rest of it is not answered either."""
        if self._told_to_wait():
            return True
        try:
            self.service.keep_place_for_speaker(turn_owner(self.session_id, None))
        except ServerBusyError as exc:
            await self._tell_busy(exc, spoken=True)
            return True
        return False

    async def _tell_busy(self, exc: ServerBusyError, spoken: bool) -> None:
        """Tell the person Eva is busy; a speaker is not answered before the time they
        were told to come back at."""
        if spoken:
            self._refused_until = time.monotonic() + exc.retry_after_s
        await self.out.json(busy_event(exc))

    def _told_to_wait(self) -> bool:
        """Told "busy, come back in N s" less than N s ago: nothing said is answered."""
        return time.monotonic() < self._refused_until

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _transcribe(self, job: int, audio: Float32Audio) -> None:
        try:
            heard = await self.service.transcribe(audio)
        except EngineError as exc:
            await self._apply(self.core.transcription_failed(job, str(exc)))
            return
        text = heard.transcript.text
        await self._apply(self.core.transcribed(job, text, heard.milliseconds, time.monotonic()))

    async def _judge(self, job: int, audio: Float32Audio) -> None:
        model = self.service.engines.end_of_turn
        assert model is not None  # the core asks only when there is one
        loop = asyncio.get_running_loop()
        try:
            probability = await loop.run_in_executor(
                self.service.engines.pools.turn, model.probability_complete, audio
            )
        except Exception:  # the model failing must not stop the conversation
            log.exception("the end-of-turn model failed")
            return
        await self._apply(self.core.judged(job, probability, time.monotonic()))

    async def _run_clock(self) -> None:
        """Wake the core at its deadlines (acknowledgements, check-ins)."""
        while True:
            self._deadline_changed.clear()
            deadline = self.core.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deadline_changed.wait(), timeout)
            if deadline is not None and time.monotonic() >= deadline:
                await self._apply(self.core.tick(time.monotonic()))

    # --- saying things: replies, lines and the greeting, one path

    def _start_saying(self, reply: ReplyHandle, items: AsyncIterator[TurnEvent]) -> None:
        # A stopped reply still sends its response.done: the next one begins after it.
        before = [task for said, task in self._speaking.values() if said.over]
        task = asyncio.create_task(self._say(reply, items, before))
        self._speaking[reply.id] = (reply, task)
        task.add_done_callback(lambda _: self._speaking.pop(reply.id, None))

    async def _say(
        self, reply: ReplyHandle, items: AsyncIterator[TurnEvent], before: list[asyncio.Task[None]]
    ) -> None:
        """Say ``items`` once ``reply`` may be heard: response.created, the text, the paced
        audio, response.done with what was heard. The items start being made at once (a
        speculative reply is prepared while the person may still go on) but are taken one
        by one as they are played, so that what is stored is what was heard. A reply
        stopped before it was ever committed says nothing."""
        first = asyncio.ensure_future(anext(items))  # starts the making
        first_audio = True
        announced = ended = failed = False
        try:
            if not await reply.flowing() and not reply.committed:
                return  # discarded: nobody heard any of it
            with contextlib.suppress(StopAsyncIteration):
                item = await first
                # Announced with its first words, not at the commit: until then the
                # person may still go on, and the reply is taken back without a trace.
                if not reply.committed:
                    return
                await asyncio.gather(*before, return_exceptions=True)
                await self._announce(reply)
                announced = True
                while True:
                    if isinstance(item, TextDelta):
                        self.core.reply_speaking_soon(reply)
                        await self.out.json(event("response.text.delta", text=item.text))
                    elif isinstance(item, AudioChunk):
                        if first_audio:
                            first_audio = False
                            self._mark_first_audio(reply)
                        reply.start_playing()
                        sent = await self.output.play(reply, item.pcm, item.sample_rate)
                        reply.record_heard(item.text, sent)
                        self._played(reply, item, sent)
                    elif isinstance(item, TurnDone):
                        await self._done(reply, item)
                        ended = True
                    item = await anext(items)
        except ServerBusyError as exc:  # refused before it began: nothing was said
            failed = True
            await self._tell_busy(exc, spoken=reply.speech_end_at is not None)
        except EngineError as exc:
            failed = True
            self.service.stats.count_error("/ws")
            await self.out.json(event("error", code="backend_unavailable", message=str(exc)))
        except Exception:  # a bug must not leave the client waiting for a reply forever
            failed = True
            log.exception("a reply failed")
            self.service.stats.count_error("/ws")
            await self.out.json(event("error", code="internal_error", message="the reply failed"))
        finally:
            if announced and not ended and not failed:  # taken back: the client learns it
                stopped = TurnDone(text="", spoken_text="", interrupted=True, timings={})
                await self._done(reply, stopped)
            if not first.done():
                first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await items.aclose()  # type: ignore[attr-defined]
            self._announced.pop(reply.id, None)
            now = time.monotonic()
            self.core.reply_finished(reply, max(self.output.playhead, now), now)
            self._deadline_changed.set()

    def _played(self, reply: ReplyHandle, chunk: AudioChunk, fraction: float) -> None:
        """``fraction`` of ``chunk`` of ``reply`` went out (for a driver that keeps the
        timeline of what it sent)."""

    def _reply_items(self, reply: ReplyHandle) -> AsyncIterator[TurnEvent]:
        assert reply.user_text is not None

        async def settle(done: TurnDone) -> TurnDone | None:
            if not reply.committed:
                return None  # speculative, and the person went on: nothing to store
            if done.interrupted:
                return replace(done, spoken_text=reply.heard_text)
            return done

        return self.service.reply(
            self.session_id,
            reply.user_text,
            voice_id=self.voice.id,
            audio=self.speaks,
            control=reply.control,
            timer=reply.timer,
            settle=settle,
            instructions=self.instructions,
            max_tokens=self.max_tokens,
            channel=Channel.TYPED if reply.speech_end_at is None else Channel.SPOKEN,
            waiting_since=reply.speech_end_at,  # the admission's target is the person's wait
        )

    async def _line_items(self, reply: ReplyHandle, text: str) -> AsyncIterator[TurnEvent]:
        """A prepared line, not stored: it answers nothing the person said. No "mm-hm" to
        someone told to come back later."""
        pcm = self.service.lines.get(self.voice.id, text)
        if pcm is None or (reply.purpose == "backchannel" and self._told_to_wait()):
            return
        yield TextDelta(text)
        yield AudioChunk(pcm, self.voice.sample_rate, text)
        yield TurnDone(text=text, spoken_text=text, interrupted=reply.stopped, timings={})

    async def _announce(self, reply: ReplyHandle) -> None:
        """The reply may be heard: the person's final words, then Eva's reply begins.
        Once per reply: by its first words, or by an acknowledgement that comes first."""
        announced = self._announced.setdefault(reply.id, asyncio.Event())
        if announced.is_set():
            return
        announced.set()
        purpose = {} if reply.purpose == "reply" else {"purpose": reply.purpose}
        if reply.purpose == "reply" and reply.user_text is not None:
            await self.out.json(event("transcript.final", text=reply.user_text))
        await self.out.json(event("response.created", response_id=reply.id, **purpose))
        if reply.speech_end_at is not None and reply.turn_ended_at is not None:
            reply.timer.set("end_of_turn_ms", (reply.turn_ended_at - reply.speech_end_at) * 1000)

    def _mark_first_audio(self, reply: ReplyHandle) -> None:
        self.core.reply_audio_ready(reply)
        if reply.speech_end_at is not None:
            ms = (time.monotonic() - reply.speech_end_at) * 1000
            reply.timer.set("voice_to_voice_ms", ms)

    async def _done(self, reply: ReplyHandle, done: TurnDone) -> None:
        interrupted = done.interrupted or reply.stopped
        said = reply.heard_text if interrupted else done.text
        purpose = {} if reply.purpose == "reply" else {"purpose": reply.purpose}
        timings = done.timings if reply.purpose == "reply" else {}
        await self.out.json(
            event(
                "response.done",
                response_id=reply.id,
                text=said,
                interrupted=interrupted,
                timings=timings,
                **purpose,
            )
        )

    async def _acknowledge(self, reply: ReplyHandle, text: str) -> None:
        pcm = self.service.lines.get(self.voice.id, text)
        if pcm is None or not pcm.size:
            return
        if reply.over:
            return
        await self._announce(reply)  # Eva starts speaking: the reply has begun
        await self.out.json(
            event("response.ack", response_id=reply.id, text=text, samples=int(pcm.size))
        )
        await self.output.play(reply, pcm, self.voice.sample_rate)


async def voice_endpoint(socket: WebSocket) -> None:
    """The /ws route: accept, admit, find or create the session, run it until the client
    leaves."""
    await socket.accept()
    service: Conversation | None = socket.app.state.conversation
    if service is None:
        await socket.send_json(event("error", code="not_ready", message="Eva is still loading"))
        await socket.close(code=1013)  # try again later
        return
    async with admitted_conversation(socket, service.gate, busy_event) as admitted:
        if admitted:
            await _serve(socket, service)


async def _serve(socket: WebSocket, service: Conversation) -> None:
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
    service.stats.count_request("/ws")
    voice_session = VoiceSession(socket, service, session.id, voice)
    if not socket.query_params.get("session_id") and wants_greeting(
        socket.query_params.get("greet")
    ):
        voice_session.greeting = await service.greeting(session.id, user_id)
    await voice_session.run()
