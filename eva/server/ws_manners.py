"""Conversation manners of one /ws session: acknowledgements, backchannels, re-engagement.

- Acknowledgement: a reply whose first audio is not ready ``ack_after_ms`` after the end of
  the turn starts with a short pre-synthesized line ("Mm."), announced by ``response.ack``.
- Backchannel: speech over Eva pauses her reply at once (``response.paused``) instead of
  cancelling it. Speech that stays short and is transcribed as a listening noise ("mm-hm",
  "yeah") resumes it (``response.resumed``); anything else cancels it
  (``response.cancelled``, then ``response.done`` with ``interrupted: true``) and becomes
  the person's turn, as a barge-in always did.
- Re-engagement: after a long hands-free silence following Eva's reply, she checks in once
  ("Still there? No rush."), and not again until the person has spoken.

The words are chosen by plain functions in eva/conversation/manners.py. docs/protocol.md
describes the events and their timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from eva.conversation.manners import (
    all_acknowledgements,
    choose_acknowledgement,
    is_backchannel,
    reengage_line,
)
from eva.engines.base import STT_SAMPLE_RATE, EngineError, Float32Audio
from eva.server.ws_protocol import event

if TYPE_CHECKING:
    from eva.server.ws_voice import Response, VoiceSession

# A microphone that sent nothing for this long is off (the person stopped it, or the page
# is typed-only): nobody to re-engage.
MIC_LIVE_S = 2.0


class SessionManners:
    def __init__(self, session: VoiceSession) -> None:
        self.session = session
        self.settings = session.settings
        self.paused: Response | None = None  # the reply held while the person speaks over it
        self._held_s = 0.0  # audio the client holds (sent ahead of real time) at the pause
        self._voice_open = False  # the person is speaking (no pause since speech started)
        self._spoken_samples = 0  # stream position where the person's voice started
        self._check: asyncio.Task[None] | None = None
        self._ignore_turn = False  # the utterance was a backchannel: it is not a turn
        self._lines: asyncio.Task[None] | None = None
        self._reengage: asyncio.Task[None] | None = None
        self._reengaged = False
        self.last_audio_at = 0.0

    # --- lines kept in memory

    def prepare_lines(self) -> None:
        """Synthesize this voice's acknowledgements and re-engagement line, in the
        background: until they exist, none is said."""
        if self._lines is not None and not self._lines.done():
            self._lines.cancel()
        language = self.settings.language
        texts = [*all_acknowledgements(language), reengage_line(language)]
        lines = self.session.service.lines
        self._lines = asyncio.create_task(lines.prepare(self.session.voice.id, texts))

    # --- acknowledgements

    async def acknowledge(
        self, response: Response, user_text: str, announced: asyncio.Task[None]
    ) -> None:
        """Say a short acknowledgement if the reply's first audio is late. Runs beside the
        reply; the reply waits for it (``before_first_audio``) once it has begun."""
        threshold = self.settings.ack_after_ms / 1000
        if threshold <= 0:
            return
        # From the end of the turn as decided (the reply is committed): measured from the
        # end of speech instead, the end-of-turn wait alone would call for one every time.
        await announced
        await asyncio.sleep(threshold)
        if response.audio_started or response.stop_audio.is_set():
            return
        text = choose_acknowledgement(user_text, self.settings.language)
        pcm = self.session.service.lines.get(self.session.voice.id, text)
        if pcm is None or not pcm.size:
            return  # not synthesized yet: never on the latency path
        response.acking = True
        response.timer.mark("ack_ms")
        await self.session.out.json(
            event("response.ack", response_id=response.id, text=text, samples=int(pcm.size))
        )
        await self.session._send_paced(pcm, self.session.voice.sample_rate, response)

    @staticmethod
    async def before_first_audio(response: Response, ack: asyncio.Task[None]) -> None:
        """The reply's audio is ready: an acknowledgement already going out is finished
        first; one not yet begun never will be."""
        response.audio_started = True
        if response.acking:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ack
        else:
            ack.cancel()

    # --- backchannels

    async def on_speech_started(self) -> bool:
        """The person's voice began. True when it was taken as a possible backchannel (the
        reply is held, not stopped); False when the caller should interrupt as usual."""
        session = self.session
        self._ignore_turn = False
        self._voice_open = True
        self.person_spoke()
        current = session.response
        if self.paused is not None:
            return True  # still held from the first burst: "mm... hm"
        if (
            session.mode != "hands_free"
            or self.settings.backchannel_max_ms <= 0
            or current is None
            or not current.active
            or not current.committed.is_set()
        ):
            return False
        self.paused = current
        min_speech = session.detector.config.min_speech_ms * STT_SAMPLE_RATE // 1000
        self._spoken_samples = session.stream_samples - min_speech
        now = time.monotonic()
        self._held_s = max(0.0, session.playhead - now)
        current.hold.clear()
        await session.out.json(event("response.paused", response_id=current.id))
        return True

    async def on_audio(self) -> None:
        """Speech over Eva that goes on past ``backchannel_max_ms`` is a real interruption,
        decided as soon as the detector can know it."""
        self.last_audio_at = time.monotonic()
        if self.paused is None or not self._voice_open or self._check is not None:
            return
        spoken_ms = (self.session.stream_samples - self._spoken_samples) * 1000 / STT_SAMPLE_RATE
        # The detector knows speech stopped only ``pause_ms`` of silence after it did.
        if spoken_ms > self.settings.backchannel_max_ms + self.session.detector.config.pause_ms:
            await self.cancel_pause()

    def on_speech_paused(self, audio: Float32Audio, speech_end_sample: int, at: float) -> bool:
        """The person stopped. True when this utterance is being judged as a backchannel
        (the caller does not start a turn for it)."""
        self._voice_open = False
        if self.paused is None or self._check is not None:
            return False
        spoken = (speech_end_sample - self._spoken_samples) / STT_SAMPLE_RATE
        if spoken * 1000 > self.settings.backchannel_max_ms:
            return False  # on_audio's check missed it by a frame: a turn, as usual
        self._check = asyncio.create_task(self._judge(audio, at))
        return True

    async def on_turn_ended(self) -> bool:
        """True when the turn that just ended was a backchannel, and is no turn at all."""
        if self._check is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._check
        ignored, self._ignore_turn = self._ignore_turn, False
        return ignored

    async def _judge(self, audio: Float32Audio, speech_end_at: float) -> None:
        session = self.session
        try:
            try:
                words = (await session.service.transcribe(audio)).transcript.text
            except EngineError:
                words = ""
            if self.paused is None:
                return
            if is_backchannel(words) and not self._voice_open:
                self._ignore_turn = True
                await self._resume()
                return
            await self.cancel_pause()
            if not self._voice_open and words.strip():
                # The short utterance was a turn ("Stop." "Wait."): answer it, as any
                # utterance that ends in a pause.
                await session.start_voice_turn(audio, speech_end_at)
        finally:
            self._check = None

    async def _resume(self) -> None:
        response, self.paused = self.paused, None
        if response is None:
            return
        # The client held what it had not played yet; it plays on from there.
        self.session.playhead = time.monotonic() + self._held_s
        response.hold.set()
        await self.session.out.json(event("response.resumed", response_id=response.id))

    async def cancel_pause(self) -> None:
        response, self.paused = self.paused, None
        if response is None:
            return
        await self.session.out.json(event("response.cancelled", response_id=response.id))
        await self.session.barge_in(response)

    # --- re-engagement

    def reply_finished(self, response: Response, interrupted: bool) -> None:
        """A reply went out whole: in hands-free mode, a long silence from now on gets one
        gentle check-in (if the microphone is still sending then)."""
        wait = self.settings.reengage_after_s
        if (
            wait <= 0
            or interrupted
            or self._reengaged
            or self.session.mode != "hands_free"
            or self.session.stream_samples == 0  # typed only: no microphone at all
        ):
            return
        self.cancel_reengage()
        played_at = max(self.session.playhead, time.monotonic())
        self._reengage = asyncio.create_task(self._reengage_after(played_at + wait))

    def person_spoke(self) -> None:
        self._reengaged = False
        self.cancel_reengage()

    def cancel_reengage(self) -> None:
        if self._reengage is not None and self._reengage is not asyncio.current_task():
            self._reengage.cancel()
        self._reengage = None

    async def _reengage_after(self, due: float) -> None:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        session = self.session
        current = session.response
        if (
            session.mode != "hands_free"
            or session.detector.speaking
            or (current is not None and current.active)
            or time.monotonic() - self.last_audio_at > MIC_LIVE_S
        ):
            return
        text = reengage_line(self.settings.language)
        pcm = session.service.lines.get(session.voice.id, text)
        if pcm is None:
            return
        self._reengaged = True
        self._reengage = None
        response = await session._new_response()
        response.committed.set()
        response.task = asyncio.create_task(session.say_line(response, text, pcm, "reengage"))

    async def close(self) -> None:
        tasks = [t for t in (self._check, self._lines, self._reengage) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
