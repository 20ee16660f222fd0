"""Eva's /ws events, said in OpenAI's Realtime protocol (its GA event names). No I/O.

The voice session (eva/server/ws_voice.py) sends Eva's own events; ``RealtimeEvents``
turns each into the Realtime events that mean the same, keeping what the Realtime
protocol needs and Eva's does not say: the conversation items, their ids, and which
response an audio delta belongs to. One spoken turn comes out as::

    input_audio_buffer.speech_started
    input_audio_buffer.speech_stopped, .committed, conversation.item.added (user)
    conversation.item.input_audio_transcription.completed, conversation.item.done
    response.created, response.output_item.added, conversation.item.added (assistant),
    response.content_part.added
    response.output_audio_transcript.delta … response.output_audio.delta …
    response.output_audio.done, response.output_audio_transcript.done,
    response.content_part.done, response.output_item.done, conversation.item.done,
    response.done (with usage)

Speech over Eva is a barge-in only once Eva decides it is one: she pauses first, and a
"mm-hm" lets her go on, so ``speech_started`` (on which Realtime clients flush their
playback) waits for ``response.cancelled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from eva.conversation.prompt import estimate_tokens
from eva.server.errors import error_type

Modality = Literal["audio", "text"]


@dataclass
class _Response:
    id: str
    item_id: str
    purpose: str | None
    text: list[str] = field(default_factory=list)
    audio_ms: float = 0.0


@dataclass
class RealtimeEvents:
    modality: Modality = "audio"
    _events: int = 0
    _items: int = 0
    last_item: str | None = None  # the newest item of the conversation
    user_item: str | None = None  # the person's item now being spoken
    _spoken_item: str | None = None  # their last spoken item: taken back if they go on
    _held_start: bool = False  # speech over Eva, not yet known to be a barge-in
    _typed: int = 0  # typed turns announced by the client: their echo is no new item
    response: _Response | None = None
    items_of: dict[str, str] = field(default_factory=dict)  # response id → its item id
    said_of: dict[str, str] = field(default_factory=dict)  # response id → what was said
    heard_ms: float = 0.0  # input audio received (the Realtime clock of audio_*_ms)

    # --- ids

    def event_id(self) -> str:
        self._events += 1
        return f"event_{self._events}"

    def new_item_id(self) -> str:
        self._items += 1
        return f"item_{self._items}"

    def stamp(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": self.event_id(), **fields}

    # --- items the session adds itself

    def user_text_item(self, text: str) -> list[dict[str, Any]]:
        """A typed message the client created: it is in the conversation now."""
        item = self._user_item(self.new_item_id(), [{"type": "input_text", "text": text}])
        return [*self._added(item), self.stamp("conversation.item.done", item=item)]

    def expect_echo(self) -> None:
        """A typed turn is being answered: Eva echoes its words, which are no new item."""
        self._typed += 1

    def _user_item(self, item_id: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": content}  # fmt: skip

    def _added(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        previous, self.last_item = self.last_item, item["id"]
        return [self.stamp("conversation.item.added", previous_item_id=previous, item=item)]

    # --- Eva's events

    def from_eva(self, eva: dict[str, Any]) -> list[dict[str, Any]]:
        kind = eva["type"]
        if kind in ("session.created", "session.updated"):
            return [self.stamp(kind, session=eva["session"])]
        if kind == "speech.started":
            return self._speech_started(bool(eva.get("resumed_turn")))
        if kind == "transcript.final":
            return self._turn_heard(eva["text"])
        if kind == "response.created":
            return self._response_created(eva["response_id"], eva.get("purpose"))
        if kind == "response.text.delta":
            return self._text_delta(eva["text"])
        if kind == "response.cancelled":
            return self._release_held_start()
        if kind == "response.resumed":
            self._held_start = False  # it was a backchannel: no turn, nothing to flush
            return []
        if kind == "response.done":
            return self._response_done(eva)
        if kind == "error":
            return [self.error(eva["code"], eva["message"])]
        # speech.stopped (a pause, not yet the end of the turn), transcript.partial,
        # response.paused (Eva only holds her audio), response.ack (its audio is the
        # reply's), pong: nothing a Realtime client is told.
        return []

    def error(self, code: str, message: str, param: str | None = None,
              status: int = 400, event_id: str | None = None) -> dict[str, Any]:  # fmt: skip
        error = {"type": error_type(status), "code": code, "message": message,
                 "param": param, "event_id": event_id}  # fmt: skip
        return self.stamp("error", error=error)

    def audio_delta(self, audio_b64: str, milliseconds: float) -> dict[str, Any] | None:
        response = self.response
        if response is None:
            return None
        response.audio_ms += milliseconds
        return self.stamp("response.output_audio.delta", **self._where(response),
                          delta=audio_b64)  # fmt: skip

    # --- the person

    def _speech_started(self, resumed: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if resumed and self._spoken_item is not None:
            # Eva had taken their turn as ended; it goes on, heard as one new item.
            out.append(self.stamp("conversation.item.deleted", item_id=self._spoken_item))
            self.last_item = None if self.last_item == self._spoken_item else self.last_item
            self._spoken_item = None
        if self.user_item is not None:
            return out  # a pause within the turn: still the same item
        self.user_item = self.new_item_id()
        if not resumed and self.response is not None and self.response.purpose is None:
            self._held_start = True  # over Eva: said when it proves to be a barge-in
            return out
        return [*out, self._speech_started_event()]

    def _speech_started_event(self) -> dict[str, Any]:
        return self.stamp("input_audio_buffer.speech_started",
                          audio_start_ms=round(self.heard_ms), item_id=self.user_item)  # fmt: skip

    def _release_held_start(self) -> list[dict[str, Any]]:
        if not self._held_start:
            return []
        self._held_start = False
        return [self._speech_started_event()]

    def _turn_heard(self, text: str) -> list[dict[str, Any]]:
        if self._typed:  # the echo of a typed turn: its item is already there
            self._typed -= 1
            return []
        out = self._release_held_start()
        item_id = self.user_item or self.new_item_id()
        self.user_item = None
        self._spoken_item = item_id
        end_ms = round(self.heard_ms)
        previous = self.last_item
        out += [
            self.stamp("input_audio_buffer.speech_stopped", audio_end_ms=end_ms, item_id=item_id),
            self.stamp("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id),
        ]
        item = self._user_item(item_id, [{"type": "input_audio", "transcript": text}])
        out += self._added({**item, "content": [{"type": "input_audio", "transcript": None}]})
        usage = {"type": "tokens", "input_tokens": 0, "output_tokens": estimate_tokens(text),
                 "total_tokens": estimate_tokens(text)}  # fmt: skip
        out.append(self.stamp("conversation.item.input_audio_transcription.completed",
                              item_id=item_id, content_index=0, transcript=text,
                              usage=usage))  # fmt: skip
        out.append(self.stamp("conversation.item.done", item=item))
        return out

    # --- Eva's responses

    def _part_type(self) -> str:
        return "audio" if self.modality == "audio" else "text"

    def _assistant_item(self, response: _Response, status: str, text: str | None) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if text is not None:
            key = "transcript" if self.modality == "audio" else "text"
            kind = "output_audio" if self.modality == "audio" else "output_text"
            content = [{"type": kind, key: text}]
        return {"id": response.item_id, "object": "realtime.item", "type": "message",
                "role": "assistant", "status": status, "content": content}  # fmt: skip

    def _response_object(self, response: _Response, status: str, **more: Any) -> dict[str, Any]:
        metadata = {"purpose": response.purpose} if response.purpose else None
        return {"id": response.id, "object": "realtime.response", "status": status,
                "output_modalities": [self.modality], "metadata": metadata,
                "conversation_id": "conversation", **more}  # fmt: skip

    def _where(self, response: _Response) -> dict[str, Any]:
        return {"response_id": response.id, "item_id": response.item_id,
                "output_index": 0, "content_index": 0}  # fmt: skip

    def _response_created(self, response_id: str, purpose: str | None) -> list[dict[str, Any]]:
        response = _Response(response_id, self.new_item_id(), purpose)
        self.response = response
        self.items_of[response_id] = response.item_id
        item = self._assistant_item(response, "in_progress", None)
        out = [
            self.stamp(
                "response.created",
                response=self._response_object(response, "in_progress", output=[]),
            )
        ]
        out.append(self.stamp("response.output_item.added", response_id=response_id,
                              output_index=0, item=item))  # fmt: skip
        out += self._added(item)
        part = {"type": self._part_type(), "transcript" if self.modality == "audio" else "text": ""}
        out.append(self.stamp("response.content_part.added", **self._where(response), part=part))
        return out

    def _text_delta(self, text: str) -> list[dict[str, Any]]:
        response = self.response
        if response is None:
            return []
        response.text.append(text)
        kind = ("response.output_audio_transcript.delta" if self.modality == "audio"
                else "response.output_text.delta")  # fmt: skip
        return [self.stamp(kind, **self._where(response), delta=text)]

    def _response_done(self, eva: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.response
        if response is None or response.id != eva["response_id"]:
            return []
        self.response = None
        said: str = eva["text"]
        self.said_of[response.id] = said
        interrupted = bool(eva["interrupted"])
        where = self._where(response)
        out: list[dict[str, Any]] = []
        if self.modality == "audio":
            out += [
                self.stamp("response.output_audio.done", **where),
                self.stamp("response.output_audio_transcript.done", **where, transcript=said),
            ]
        else:
            out.append(self.stamp("response.output_text.done", **where, text=said))
        key = "transcript" if self.modality == "audio" else "text"
        out.append(self.stamp("response.content_part.done", **where,
                              part={"type": self._part_type(), key: said}))  # fmt: skip
        item = self._assistant_item(response, "incomplete" if interrupted else "completed", said)
        out.append(self.stamp("response.output_item.done", response_id=response.id,
                              output_index=0, item=item))  # fmt: skip
        out.append(self.stamp("conversation.item.done", item=item))
        written = "".join(response.text)
        usage = {"input_tokens": 0, "output_tokens": estimate_tokens(written) if written else 0}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        details = (
            {"type": "cancelled", "reason": "turn_detected" if self._held_start or
             self.user_item else "client_cancelled"}
            if interrupted else None
        )  # fmt: skip
        status = "cancelled" if interrupted else "completed"
        out.append(self.stamp("response.done", response=self._response_object(
            response, status, output=[item], usage=usage, status_details=details)))  # fmt: skip
        return out
