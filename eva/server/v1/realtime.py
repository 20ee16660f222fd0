"""``/v1/realtime``: OpenAI's Realtime protocol over Eva's voice session.

The session is Eva's own (``VoiceSession``: the session core's turn-taking, speculation,
barge-in, storage of what was heard); only the wire differs. Client events are read
here; what the session sends goes through ``RealtimeOutbox``, which says Eva's events as
Realtime events (``RealtimeEvents``) and her voice as ``response.output_audio.delta`` in
the format the client asked for. docs/openai.md lists what is honoured and what is not.

The manners that add sound of their own (acknowledgements, Eva's "mm-hm" while the person
talks, the check-in after a silence) are off unless the session's ``eva`` options turn
them on: a Realtime client does not expect audio it did not ask for.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from dataclasses import replace
from typing import Any

from fastapi import WebSocket
from starlette.types import Message

from eva.conversation.end_of_turn import TurnPolicy
from eva.conversation.reply import ReplyHandle
from eva.conversation.service import Conversation
from eva.conversation.turn import AudioChunk
from eva.conversation.turn_gate import ServerBusyError
from eva.engines.voices import UnknownVoiceError
from eva.server.admitted import admitted_conversation
from eva.server.auth import REALTIME_PATH, ClientSecrets, offered_subprotocols, presented_key
from eva.server.errors import ApiError
from eva.server.identity import resolve_user
from eva.server.limits import budget, rate_limited
from eva.server.outbox import Outbox
from eva.server.v1.realtime_audio import (
    PCM_RATE,
    AudioFormat,
    InputAudio,
    OutputAudio,
    format_rate,
)
from eva.server.v1.realtime_events import RealtimeEvents
from eva.server.v1.speech import voice_for
from eva.server.ws_voice import VoiceSession, listener_config, session_config

log = logging.getLogger("eva.ws")

MODEL = "eva"
SUBPROTOCOL = "realtime"
# OpenAI's bounds on server VAD settings.
_SILENCE_MS = (100, 5000)
_PREFIX_MS = (0, 2000)
# semantic_vad's eagerness: how much longer (or shorter) than Eva's own waits to wait.
_EAGERNESS = {"low": 1.5, "medium": 1.0, "auto": 1.0, "high": 0.6}
_FORMATS: tuple[AudioFormat, ...] = ("audio/pcm", "audio/pcmu", "audio/pcma")


class RealtimeError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class RealtimeOutbox(Outbox):
    """Eva's events and audio, sent as the Realtime protocol's."""

    def __init__(self, socket: WebSocket, stall_s: float, events: RealtimeEvents) -> None:
        super().__init__(socket, stall_s)
        self.events = events
        self.output: OutputAudio | None = None  # set by the session, for its voice
        self.after_response: Any = None  # called after each response.done, for an event

    async def send(self, realtime_event: dict[str, Any]) -> None:
        await super().json(realtime_event)

    async def json(self, data: dict[str, Any]) -> None:
        for translated in self.events.from_eva(data):
            await self.send(translated)
            if translated["type"] == "response.done" and self.after_response is not None:
                await self.send(self.after_response())

    async def audio(self, pcm: Any) -> None:
        output = self.output
        if output is None or self.events.modality != "audio":
            return
        data = output.encode(pcm)
        if data:
            milliseconds = len(pcm) * 1000 / output.voice_rate
            delta = self.events.audio_delta(base64.b64encode(data).decode(), milliseconds)
            if delta is not None:
                await self.send(delta)


class RealtimeSession(VoiceSession):
    def __init__(self, socket: WebSocket, service: Conversation, session_id: str) -> None:
        self.events = RealtimeEvents()
        outbox = RealtimeOutbox(socket, service.settings.ws_send_stall_s, self.events)
        super().__init__(socket, service, session_id, service.engines.tts.default_voice, outbox)
        self.realtime_out = outbox
        outbox.after_response = self._rate_limits
        self.voice_name = "alloy"
        self.input = InputAudio("audio/pcm")
        self.input_format: AudioFormat = "audio/pcm"
        self.output_format: AudioFormat = "audio/pcm"
        self.turn_detection: dict[str, Any] | None = {"type": "server_vad"}
        self.manners = {"acknowledgements": False, "backchannels": False, "check_in": False}
        self._pending: list[str] = []  # typed items not answered yet
        self._timeline: dict[str, list[tuple[str, float, float]]] = {}  # reply → clauses
        self._use_output()
        self._apply_manners()
        self._apply_turn_detection()

    # --- the session's settings

    def _use_output(self) -> None:
        self.realtime_out.output = OutputAudio(self.output_format, self.voice.sample_rate)

    def _apply_manners(self) -> None:
        base = session_config(self.settings, self.service.engines.end_of_turn is not None)
        self.core.config = replace(
            self.core.config,
            ack_after_s=base.ack_after_s if self.manners["acknowledgements"] else 0.0,
            reengage_after_s=base.reengage_after_s if self.manners["check_in"] else 0.0,
        )
        self.core.backchannels = self.manners["backchannels"] and self.speaks

    def _apply_turn_detection(self) -> None:
        detection = self.turn_detection
        base = session_config(self.settings, self.service.engines.end_of_turn is not None)
        detector = self.core.detector
        listener = listener_config(self.settings)  # each update starts from Eva's own
        if detection is None:
            detector.config = listener
            self.core.set_mode("push_to_talk")
            return
        self.core.set_mode("hands_free")
        threshold = detection.get("threshold")
        padding = detection.get("prefix_padding_ms")
        listener = replace(
            listener,
            threshold=listener.threshold if threshold is None else float(threshold),
            preroll_ms=listener.preroll_ms if padding is None else int(padding),
        )
        if detection["type"] == "server_vad":
            # A silence timer, as OpenAI's server VAD is: no model, no words.
            silence = int(detection.get("silence_duration_ms") or 500)
            policy = TurnPolicy(model=False, words_complete_ms=silence, words_ms=silence)
            listener = replace(listener, end_of_turn_ms=silence)
        else:  # semantic_vad: Eva's own end of turn, more or less eager
            scale = _EAGERNESS[detection.get("eagerness") or "auto"]
            own = base.policy
            policy = replace(
                own,
                confident_ms=round(own.confident_ms * scale),
                likely_ms=round(own.likely_ms * scale),
                unfinished_ms=round(own.unfinished_ms * scale),
                disputed_ms=round(own.disputed_ms * scale),
                mid_thought_ms=round(own.mid_thought_ms * scale),
                words_complete_ms=round(own.words_complete_ms * scale),
                words_ms=round(own.words_ms * scale),
            )
        detector.config = listener
        self.core.config = replace(self.core.config, policy=policy)

    def _session_event(self, kind: str) -> dict[str, Any]:
        return {"type": kind, "session": self.session_object()}

    def session_object(self) -> dict[str, Any]:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.session_id,
            "model": MODEL,
            "output_modalities": [self.events.modality],
            "instructions": self.instructions,
            "max_output_tokens": self.max_tokens or self.service.bounds.max_tokens,
            "tools": [],
            "tool_choice": "auto",
            "audio": {
                "input": {
                    "format": _format_object(self.input_format),
                    "transcription": {"model": "whisper-1"},
                    "noise_reduction": None,
                    "turn_detection": self._turn_detection_object(),
                },
                "output": {
                    "format": _format_object(self.output_format),
                    "voice": self.voice_name,
                    "speed": 1.0,
                },
            },
            "eva": {**self.manners, "voice": self.voice.id},
        }

    def _turn_detection_object(self) -> dict[str, Any] | None:
        detection = self.turn_detection
        if detection is None:
            return None
        listener = self.core.detector.config
        shape = {"type": detection["type"], "create_response": True, "interrupt_response": True}
        if detection["type"] == "server_vad":
            return {**shape, "threshold": listener.threshold,
                    "prefix_padding_ms": listener.preroll_ms,
                    "silence_duration_ms": listener.end_of_turn_ms,
                    "idle_timeout_ms": None}  # fmt: skip
        return {**shape, "eagerness": detection.get("eagerness") or "auto"}

    def _rate_limits(self) -> dict[str, Any]:
        limit, left, reset = budget(self.socket)
        limits = [{"name": "requests", "limit": limit, "remaining": left,
                   "reset_seconds": round(reset, 3)}]  # fmt: skip
        return self.events.stamp("rate_limits.updated", rate_limits=limits)

    # --- what the client sends

    async def on_message(self, message: Message) -> None:
        event_id: str | None = None
        try:
            if message.get("text") is None:
                raise RealtimeError("invalid_event", "Realtime events are JSON text frames")
            try:
                data = json.loads(message["text"])
            except json.JSONDecodeError as exc:
                raise RealtimeError("invalid_json", f"not JSON: {exc.msg}") from None
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                raise RealtimeError("invalid_event", "an event is an object with a type")
            event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
            await self._on_event(data)
        except RealtimeError as exc:
            error = self.events.error(exc.code, exc.message, exc.param, event_id=event_id)
            await self.realtime_out.send(error)

    async def _on_event(self, data: dict[str, Any]) -> None:
        kind = data["type"]
        now = time.monotonic()
        if kind == "input_audio_buffer.append":
            pcm = self._appended(data.get("audio"))
            await self._apply(self.core.audio(pcm, now))
        elif kind == "input_audio_buffer.commit":
            commands = self.core.commit_audio(now)
            if not commands:
                raise RealtimeError("input_audio_buffer_commit_empty", "no speech to commit")
            await self._apply(commands)
        elif kind == "input_audio_buffer.clear":
            await self._apply(self.core.clear_audio())
            self.events.user_item = None
            await self.realtime_out.send(self.events.stamp("input_audio_buffer.cleared"))
        elif kind == "session.update":
            self._update(_object(data.get("session"), "session"))
            await self.realtime_out.send(
                self.events.stamp("session.updated", session=self.session_object())
            )
        elif kind == "conversation.item.create":
            await self._create_item(_object(data.get("item"), "item"))
        elif kind == "response.create":
            await self._create_response(data.get("response") or {})
        elif kind in ("response.cancel", "output_audio_buffer.clear"):
            current = self.core.reply
            if current is None or current.over:
                raise RealtimeError("response_cancel_not_active", "no response is in progress")
            await self._apply(self.core.interrupt())
        elif kind == "conversation.item.truncate":
            await self._truncate(data)
        elif kind in ("conversation.item.delete", "conversation.item.retrieve"):
            raise RealtimeError("unsupported_event", f"{kind} is not supported by Eva")
        else:
            raise RealtimeError("invalid_event", f"unknown event type {kind!r}", "type")

    def _appended(self, audio: Any) -> Any:
        if not isinstance(audio, str):
            raise RealtimeError("invalid_audio", "audio must be base64", "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("invalid_audio", "audio is not valid base64", "audio") from None
        limit = self.settings.max_audio_frame_bytes
        if len(data) > limit:
            raise RealtimeError("audio_too_large", f"at most {limit} bytes per append", "audio")
        self.events.heard_ms += self.input.samples(data) * 1000 / format_rate(self.input_format)
        return self.input.decode(data)

    def _update(self, session: dict[str, Any]) -> None:
        if session.get("type") not in (None, "realtime"):
            raise RealtimeError("unsupported_session", "only realtime sessions", "session.type")
        if session.get("tools"):
            raise RealtimeError("unsupported_parameter", "tools are not supported", "tools")
        if "instructions" in session:
            self.instructions = str(session["instructions"] or "")
        if "max_output_tokens" in session:
            tokens = session["max_output_tokens"]
            self.max_tokens = None if tokens in (None, "inf") else int(tokens)
        modalities = session.get("output_modalities")
        if modalities is not None:
            if modalities not in (["audio"], ["text"]):
                raise RealtimeError("invalid_value", "audio or text", "output_modalities")
            self.events.modality = modalities[0]
            self.speaks = modalities == ["audio"]
        audio = _object(session.get("audio") or {}, "audio")
        self._update_input(_object(audio.get("input") or {}, "audio.input"))
        self._update_output(_object(audio.get("output") or {}, "audio.output"))
        eva = _object(session.get("eva") or {}, "eva")
        for name in self.manners:
            if name in eva:
                self.manners[name] = bool(eva[name])
        self._apply_manners()

    def _update_input(self, given: dict[str, Any]) -> None:
        if "format" in given:
            self.input_format = _format_of(given["format"], "audio.input.format")
            self.input = InputAudio(self.input_format)
        if "turn_detection" in given:
            detection = given["turn_detection"]
            if detection is not None:
                detection = _object(detection, "audio.input.turn_detection")
                _check_turn_detection(detection)
            self.turn_detection = detection
            self._apply_turn_detection()

    def _update_output(self, given: dict[str, Any]) -> None:
        if "format" in given:
            self.output_format = _format_of(given["format"], "audio.output.format")
        if "voice" in given:
            voice = given["voice"]
            name = voice.get("id") if isinstance(voice, dict) else voice
            try:
                self.voice = voice_for(str(name), self.service)
            except UnknownVoiceError as exc:
                raise RealtimeError("unknown_voice", str(exc), "audio.output.voice") from None
            self.voice_name = str(name)
            self._prepare_lines()
        self._use_output()

    async def _create_item(self, item: dict[str, Any]) -> None:
        if item.get("type", "message") != "message":
            raise RealtimeError("unsupported_item", "only message items", "item.type")
        role = item.get("role")
        texts: list[str] = []
        for part in item.get("content") or []:
            part = _object(part, "item.content")
            if part.get("type") in ("input_text", "text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "input_audio" and role == "user":
                texts.append(await self._heard(part.get("audio")))
            else:
                raise RealtimeError("unsupported_content", "text, or audio of the user",
                                    "item.content")  # fmt: skip
        text = " ".join(t.strip() for t in texts if t.strip())
        if role == "system":
            self.instructions = f"{self.instructions}\n{text}".strip()
        elif role != "user":
            raise RealtimeError("unsupported_item", "Eva's history is her own: user or "
                                "system messages only", "item.role")  # fmt: skip
        elif not text:
            raise RealtimeError("empty_item", "the message has no words", "item.content")
        else:
            problem = self.service.too_long_for_model(text)
            if problem is not None:
                raise RealtimeError("text_too_long", problem, "item.content")
            self._pending.append(text)
        for added in self.events.user_text_item(text):
            await self.realtime_out.send(added)

    async def _heard(self, audio: Any) -> str:
        pcm = self._appended(audio)
        heard = await self.service.transcribe(pcm.astype("float32") / 32768.0)
        return heard.transcript.text

    async def _create_response(self, params: Any) -> None:
        params = _object(params, "response")
        if params.get("tools"):
            raise RealtimeError("unsupported_parameter", "tools are not supported", "tools")
        if not self._pending:
            current = self.core.reply
            if current is not None and current.purpose == "reply" and current.committed:
                return  # the committed audio is being answered already
            raise RealtimeError("no_input", "nothing to respond to: add an item first")
        wait = rate_limited(self.socket)
        if wait is not None:
            raise RealtimeError("rate_limited", f"too many turns; retry in {wait} s")
        text, self._pending = " ".join(self._pending), []
        self.events.expect_echo()
        await self._apply(self.core.text_turn(text, time.monotonic()))

    async def _truncate(self, data: dict[str, Any]) -> None:
        item_id = data.get("item_id")
        audio_end_ms = data.get("audio_end_ms")
        if not isinstance(audio_end_ms, int) or audio_end_ms < 0:
            raise RealtimeError("invalid_value", "a whole number of ms", "audio_end_ms")
        reply_id = next((r for r, i in self.events.items_of.items() if i == item_id), None)
        if reply_id is None:
            raise RealtimeError("item_not_found", f"no assistant item {item_id!r}", "item_id")
        current = self.core.reply
        if current is not None and current.id == reply_id and not current.over:
            await self._apply(self.core.interrupt())  # stored as heard when it ends
        else:
            await self._cut_stored(reply_id, audio_end_ms)
        await self.realtime_out.send(self.events.stamp(
            "conversation.item.truncated", item_id=item_id, content_index=0,
            audio_end_ms=audio_end_ms))  # fmt: skip

    async def _cut_stored(self, reply_id: str, audio_end_ms: int) -> None:
        """The client heard the finished reply only up to ``audio_end_ms``: the stored
        reply keeps what was heard, as a barge-in would have."""
        probe = ReplyHandle(id=reply_id)
        timeline = self._timeline.get(reply_id, [])
        if not timeline or audio_end_ms >= timeline[-1][2]:
            return  # all of it was heard
        for clause, start, end in timeline:
            if audio_end_ms >= end:
                probe.record_heard(clause, 1.0)
            elif audio_end_ms > start:
                probe.record_heard(clause, (audio_end_ms - start) / (end - start))
        said = self.events.said_of.get(reply_id)
        store = self.service.store
        records = await asyncio.to_thread(store.messages, self.session_id, _RECENT_MESSAGES)
        stored = next(
            (r for r in reversed(records) if r.role == "assistant" and r.content == said), None
        )
        if stored is not None and len(probe.heard_text) < len(stored.content):
            await asyncio.to_thread(store.cut_reply, self.session_id, stored.id, probe.heard_text)

    def _played(self, reply: ReplyHandle, chunk: AudioChunk, fraction: float) -> None:
        clauses = self._timeline.setdefault(reply.id, [])
        start = clauses[-1][2] if clauses else 0.0
        end = start + len(chunk.pcm) * fraction * 1000 / chunk.sample_rate
        if clauses and clauses[-1][0] == chunk.text:  # one clause, several chunks
            clauses[-1] = (chunk.text, clauses[-1][1], end)
        else:
            clauses.append((chunk.text, start, end))
        while len(self._timeline) > _TIMELINES_KEPT:
            del self._timeline[next(iter(self._timeline))]


# Replies whose audio timeline is kept for a late truncate: a client truncates the one it
# was playing, the latest or the one before.
_TIMELINES_KEPT = 4
# Where that reply is among the session's stored messages: within its last few turns.
_RECENT_MESSAGES = 8


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RealtimeError("invalid_value", f"{param} must be an object", param)
    return value


def _format_object(audio_format: AudioFormat) -> dict[str, Any]:
    return {"type": audio_format, "rate": PCM_RATE} if audio_format == "audio/pcm" else {
        "type": audio_format}  # fmt: skip


def _format_of(value: Any, param: str) -> AudioFormat:
    given = _object(value, param)
    kind = given.get("type", "audio/pcm")
    if kind not in _FORMATS:
        raise RealtimeError("invalid_value", f"one of {', '.join(_FORMATS)}", param)
    if kind == "audio/pcm" and given.get("rate", PCM_RATE) != PCM_RATE:
        raise RealtimeError("invalid_value", f"audio/pcm is at {PCM_RATE} Hz", param)
    return kind  # type: ignore[no-any-return]


def _check_turn_detection(detection: dict[str, Any]) -> None:
    param = "audio.input.turn_detection"
    if detection.get("type") not in ("server_vad", "semantic_vad"):
        raise RealtimeError("invalid_value", "server_vad, semantic_vad or null", param)
    for flag in ("create_response", "interrupt_response"):
        if detection.get(flag) is False:
            raise RealtimeError(
                "unsupported_parameter",
                f"{flag}: false is not supported: Eva answers each turn, and speech over "
                "her interrupts her",
                f"{param}.{flag}",
            )
    threshold = detection.get("threshold")
    if threshold is not None and not (isinstance(threshold, int | float) and 0 < threshold < 1):
        raise RealtimeError("invalid_value", "threshold is between 0 and 1", f"{param}.threshold")
    for name, (low, high) in (("silence_duration_ms", _SILENCE_MS),
                              ("prefix_padding_ms", _PREFIX_MS)):  # fmt: skip
        value = detection.get(name)
        if value is not None and not (isinstance(value, int) and low <= value <= high):
            raise RealtimeError("invalid_value", f"{name} is {low} to {high}", f"{param}.{name}")
    if detection.get("eagerness") not in (None, *_EAGERNESS):
        raise RealtimeError("invalid_value", "low, medium, high or auto", f"{param}.eagerness")


async def realtime_endpoint(socket: WebSocket) -> None:
    """The /v1/realtime route: accept (with the ``realtime`` subprotocol when offered),
    open a new session of the user, apply a client secret's session, run it."""
    offered = offered_subprotocols(socket)
    await socket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    service: Conversation | None = socket.app.state.conversation
    events = RealtimeEvents()
    if service is None:
        await socket.send_json(events.error("not_ready", "Eva is still loading", status=503))
        await socket.close(code=1013)
        return
    try:
        user_id = resolve_user(socket, socket.query_params.get("user_id"))
    except ApiError as exc:
        await socket.send_json(events.error(exc.code, exc.message))
        await socket.close(code=1008)
        return
    service.stats.count_request(REALTIME_PATH)

    def refusal(exc: ServerBusyError) -> dict[str, Any]:
        return events.error("busy", str(exc), status=503)

    async with admitted_conversation(socket, service.gate, refusal) as admitted:
        if not admitted:
            return
        session = await service.open_session(None, user_id)
        realtime = RealtimeSession(socket, service, session.id)
        secrets: ClientSecrets = socket.app.state.client_secrets
        minted = secrets.session(presented_key(socket) or "")
        if minted:
            try:
                realtime._update(minted)
            except RealtimeError as exc:  # checked when minted; a bug if it happens
                log.warning("a client secret's session did not apply: %s", exc)
        await realtime.run()


def check_session(session: dict[str, Any]) -> None:
    """Raise RealtimeError where a session configuration would be refused (for minting)."""
    if session.get("type") not in (None, "realtime"):
        raise RealtimeError("unsupported_session", "only realtime sessions", "session.type")
    audio = _object(session.get("audio") or {}, "audio")
    given = _object(audio.get("input") or {}, "audio.input")
    if "format" in given:
        _format_of(given["format"], "audio.input.format")
    if given.get("turn_detection") is not None:
        _check_turn_detection(_object(given["turn_detection"], "audio.input.turn_detection"))
    output = _object(audio.get("output") or {}, "audio.output")
    if "format" in output:
        _format_of(output["format"], "audio.output.format")
    if session.get("tools"):
        raise RealtimeError("unsupported_parameter", "tools are not supported", "tools")
