"""The voice session core: turn-taking and manners with no I/O.

The websockets library's Sans-I/O ``Protocol`` is the model. The core is fed what happened
(microphone audio, client events, results of work it asked for, playback reports) with the
time, and returns what to do as commands. A driver executes them: eva/server/ws_voice.py
over a WebSocket, eva/bench/turn_taking.py against a virtual clock, the tests with fakes.

One spoken turn, as the core sees it::

    audio ─▶ detector: SpeechPaused ─▶ Transcribe + JudgeTurn       (speculative reply)
    judged(p) ─▶ turn wait from the policy (and maybe Eva's "mm-hm")
    transcribed(words) ─▶ turn wait again; StartReply (held: speculative)
    audio ─▶ detector: TurnEnded ─▶ reply.commit()                  (it may now be heard)
    reply_speaking_soon, reply_audio_ready ─▶ no acknowledgement needed
    reply_finished ─▶ a check-in is due after a long silence

Manners live here as a policy over the same events: the acknowledgement when a reply is
late, the person's backchannel over Eva (her reply pauses, then resumes or stops), Eva's
own backchannels during a long turn, and one check-in after a long silence. They act only
through ``SayLine``/``SayAck`` and the output commands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from eva.conversation.end_of_turn import TurnPolicy, looks_complete
from eva.conversation.listener import SpeechPaused, SpeechStarted, TurnDetector, TurnEnded
from eva.conversation.manners import (
    all_acknowledgements,
    backchannel_line,
    choose_acknowledgement,
    is_backchannel,
    reengage_line,
)
from eva.conversation.reply import Purpose, ReplyHandle, ReplyState
from eva.conversation.turn import TurnTimer
from eva.engines.base import STT_SAMPLE_RATE, Float32Audio, Int16Audio

Mode = Literal["hands_free", "push_to_talk"]
TranscriptPurpose = Literal["turn", "partial", "overlap"]

# Partial transcripts while the person speaks: one every 1.2 s keeps the screen alive
# without keeping the STT thread busy when the final transcript is needed.
PARTIAL_EVERY_S = 1.2
# A microphone that sent nothing for this long is off (the person stopped it, or the page
# is typed-only): nobody to re-engage.
MIC_LIVE_S = 2.0
# Eva's own backchannels: only in a turn that has gone on this long (a short pause in a
# short turn is just a breath), at most one per this many seconds, never at two pauses in
# a row, and only where the model is fairly sure the person is not done.
BACKCHANNEL_AFTER_SPEECH_S = 3.0
BACKCHANNEL_GAP_S = 6.0
BACKCHANNEL_BELOW = 0.3
# A person who goes on this soon after Eva decided their turn had ended, before any of her
# reply was heard, was not done: the reply is taken back and the turn goes on. Past it,
# speech is a new turn (or speech over Eva). Eva's first audio comes ~0.7-0.9 s after the
# end of speech; this covers it with room to spare.
RESUME_TURN_S = 2.0
# The silence after the person's last word before a spoken reply gets an acknowledgement
# ("Mm."): Eva's own first audio comes 0.8-1.1 s after the end of speech on 2 cores
# (docs/performance.md), so only a reply that is late for a reason (a busy machine, a
# long prompt) gets one.
ACK_AFTER_SPEECH_S = 1.2
# A reply committed before its transcript arrived has its acknowledgement checked again
# this often, until the words are known.
ACK_RETRY_S = 0.05


@dataclass(frozen=True)
class SessionConfig:
    policy: TurnPolicy = field(default_factory=TurnPolicy)
    language: str = "en"
    ack_after_s: float = 0.35  # 0: no acknowledgements
    overlap_max_ms: int = 800  # the person's backchannel over Eva (0: any speech interrupts)
    reengage_after_s: float = 20.0  # 0: never
    backchannels: bool = True  # Eva's own


# --- commands


@dataclass(frozen=True)
class Send:
    event: dict[str, Any]


@dataclass(frozen=True)
class Transcribe:
    job: int
    audio: Float32Audio
    purpose: TranscriptPurpose


@dataclass(frozen=True)
class JudgeTurn:
    job: int
    audio: Float32Audio


@dataclass(frozen=True)
class StartReply:
    """Prepare the answer to ``reply.user_text`` and say it once the reply is committed."""

    reply: ReplyHandle


@dataclass(frozen=True)
class SayLine:
    """Say one of Eva's prepared lines (``text``) as its own reply."""

    reply: ReplyHandle
    text: str


@dataclass(frozen=True)
class SayAck:
    """Say a prepared acknowledgement before the reply's own audio."""

    reply: ReplyHandle
    text: str


@dataclass(frozen=True)
class Greet:
    reply: ReplyHandle
    text: str


@dataclass(frozen=True)
class PauseOutput:
    """Hold the reply's audio: the client keeps what it has not played yet."""


@dataclass(frozen=True)
class ResumeOutput:
    pass


@dataclass(frozen=True)
class ClearOutput:
    """A barge-in: what was sent ahead is dropped, the playhead is now."""


Command = (
    Send | Transcribe | JudgeTurn | StartReply | SayLine | SayAck | Greet
    | PauseOutput | ResumeOutput | ClearOutput
)  # fmt: skip


def event(kind: str, **fields: Any) -> Send:
    return Send({"type": kind, **fields})


@dataclass
class _Utterance:
    """What is known about the person's current utterance, pause by pause."""

    job: int = 0  # the Transcribe/JudgeTurn job of its latest pause
    probability: float | None = None
    words: str | None = None
    reply: ReplyHandle | None = None  # the reply prepared from its latest pause
    backchannelled: bool = False  # Eva said "mm-hm" at its latest pause
    spoke: bool = False  # whether Eva says "mm-hm" at this pause is decided


class SessionCore:
    def __init__(
        self,
        detector: TurnDetector,
        config: SessionConfig,
        mode: Mode,
        line_ready: Callable[[str], bool],
    ) -> None:
        self.detector = detector
        # Whether a prepared line has been synthesized (until then it is not said: never
        # on the latency path).
        self.line_ready = line_ready
        self.config = config
        self.mode: Mode = mode
        self.backchannels = config.backchannels
        self.reply: ReplyHandle | None = None  # the latest reply or line, whatever its state
        self._replies = 0
        self._jobs = 0
        self._utterance = _Utterance()
        self._samples = 0  # microphone samples received so far
        self._partial_job: int | None = None
        self._last_partial_at = 0.0
        self._last_audio_at: float | None = None
        self._ack_due: float | None = None
        self._audio_ready: set[str] = set()  # replies whose own audio has begun
        self._reengage_due: float | None = None
        self._reengaged = False
        self._last_backchannel_at: float | None = None
        self._backchannel: ReplyHandle | None = None  # Eva's latest "mm-hm"
        # The person speaking over Eva: her reply is paused until it is clear whether
        # that was a backchannel ("mm-hm": she goes on) or the person's turn.
        self._overlapped: ReplyHandle | None = None
        self._overlap_start = 0  # stream position where their voice started
        self._overlap_job: int | None = None
        self._voice_open = False  # the person is speaking (no pause since speech started)
        self._deferred_end: TurnEnded | None = None  # a turn end awaiting the overlap check
        self._skip_turn = False  # that utterance was a backchannel: it is no turn
        self._ended_turn: tuple[float, Float32Audio] | None = None  # when, and its audio

    # --- what Eva has ready to say

    def wanted_lines(self) -> list[str]:
        """The lines this core may say at once, to be synthesized ahead."""
        language = self.config.language
        return [*all_acknowledgements(language), reengage_line(language),
                backchannel_line(language)]  # fmt: skip

    # --- client events

    def start(self, greeting: str | None) -> list[Command]:
        if greeting is None:
            return []
        reply = self._new_reply("greeting")
        reply.commit()  # nothing to wait for: Eva speaks first
        return [Greet(reply, greeting)]

    def text_turn(self, text: str, now: float) -> list[Command]:
        out = self._stop_current()
        reply = self._new_reply("reply", user_text=text)
        reply.commit()  # typed: no turn-taking to wait for
        self._ack_due = now + self.config.ack_after_s if self.config.ack_after_s > 0 else None
        return [*out, StartReply(reply)]

    def interrupt(self) -> list[Command]:
        return self._stop_current()

    def commit_audio(self, now: float) -> list[Command]:
        ended = self.detector.end_turn_now()
        if ended is None:
            return []
        out = self._on_turn_ended(ended, now)
        self._ended_turn = None  # the person ended it: going on is a new turn
        return out

    def clear_audio(self) -> list[Command]:
        """The client dropped what it had said so far: the utterance, and any reply being
        prepared from it, are forgotten."""
        self.detector.clear()
        self._voice_open = False
        self._utterance = _Utterance()
        current = self.reply
        if current is not None and not current.committed:
            current.interrupt()
        return []

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        self.detector.ends_turns_on_silence = mode == "hands_free"

    # --- microphone audio

    def audio(self, pcm: Int16Audio, now: float) -> list[Command]:
        out: list[Command] = []
        self._samples += len(pcm)
        self._last_audio_at = now
        for heard in self.detector.feed(pcm):
            if isinstance(heard, SpeechStarted):
                out += self._on_speech_started(now)
            elif isinstance(heard, SpeechPaused):
                out += self._on_speech_paused(heard, now)
            elif isinstance(heard, TurnEnded) and (self.mode == "hands_free" or heard.forced):
                out += self._on_turn_ended(heard, now)
        out += self._check_overlap_length()
        out += self._maybe_partial(now)
        return out

    def _wall_time(self, sample: int, now: float) -> float:
        """When microphone sample ``sample`` arrived, given that the latest arrived ``now``."""
        return now - (self._samples - sample) / STT_SAMPLE_RATE

    def _on_speech_started(self, now: float) -> list[Command]:
        out: list[Command] = []
        self._skip_turn = False
        self._voice_open = True
        self._reengaged = False
        self._reengage_due = None
        if self._backchannel is not None and not self._backchannel.over:
            self._backchannel.interrupt()  # never over the person
            out.append(ClearOutput())
        current = self.reply
        if self._resumes_turn(current, now):
            assert current is not None and self._ended_turn is not None
            current.retract()  # nobody heard it: the person was not done
            self._ack_due = None
            self.detector.carry_over(self._ended_turn[1])
            out.append(event("speech.started", resumed_turn=True))
            self._ended_turn = None
            return out
        if self._overlapped is None and self._may_overlap(current):
            assert current is not None
            self._overlapped = current
            min_speech = self.detector.config.min_speech_ms * STT_SAMPLE_RATE // 1000
            self._overlap_start = self._samples - min_speech
            current.pause()
            out += [PauseOutput(), event("response.paused", response_id=current.id)]
        elif self._overlapped is None:
            # The person went on after a pause (the speculative reply is moot), or spoke
            # over Eva.
            out += self._stop_current()
        out.append(event("speech.started"))
        return out

    def _resumes_turn(self, current: ReplyHandle | None, now: float) -> bool:
        return (
            self._ended_turn is not None
            and now - self._ended_turn[0] <= RESUME_TURN_S
            and current is not None
            and current.purpose == "reply"
            and current.speech_end_at is not None  # spoken, not typed
            and current.state is ReplyState.COMMITTED  # none of its audio has gone out
            and current.id not in self._audio_ready
        )

    def _may_overlap(self, current: ReplyHandle | None) -> bool:
        return (
            self.mode == "hands_free"
            and self.config.overlap_max_ms > 0
            and current is not None
            and current.committed
            and not current.over
        )

    def _on_speech_paused(self, paused: SpeechPaused, now: float) -> list[Command]:
        out: list[Command] = [event("speech.stopped")]
        self._voice_open = False
        if self._overlapped is not None and self._overlap_job is None:
            spoken_ms = (paused.speech_end_sample - self._overlap_start) * 1000 / STT_SAMPLE_RATE
            if spoken_ms <= self.config.overlap_max_ms:
                self._overlap_job = self._next_job()
                out.append(Transcribe(self._overlap_job, paused.audio, "overlap"))
                return out
            out += self._cancel_overlap()  # a turn, as usual (the length check missed it)
        if self._overlapped is not None or self.mode != "hands_free":
            return out
        speech_end = self._wall_time(paused.speech_end_sample, now)
        reply = self._new_reply("reply", speech_end_at=speech_end)
        backchannelled = self._utterance.backchannelled
        self._utterance = _Utterance(job=self._next_job(), reply=reply)
        self._utterance.backchannelled = backchannelled  # "never twice in a row"
        out.append(Transcribe(self._utterance.job, paused.audio, "turn"))
        if self.config.policy.model:
            out.append(JudgeTurn(self._utterance.job, paused.audio))
        return out

    def _check_overlap_length(self) -> list[Command]:
        """Speech over Eva that goes on past ``overlap_max_ms`` is a real interruption,
        decided as soon as the detector can know it."""
        if self._overlapped is None or not self._voice_open or self._overlap_job is not None:
            return []
        spoken_ms = (self._samples - self._overlap_start) * 1000 / STT_SAMPLE_RATE
        # The detector knows speech stopped only ``pause_ms`` of silence after it did.
        if spoken_ms > self.config.overlap_max_ms + self.detector.config.pause_ms:
            return self._cancel_overlap()
        return []

    def _on_turn_ended(self, ended: TurnEnded, now: float) -> list[Command]:
        if self._overlap_job is not None:
            self._deferred_end = ended  # decided when the overlap's words are known
            return []
        if self._skip_turn:
            self._skip_turn = False
            return []
        out: list[Command] = []
        if ended.forced:
            limit = self.detector.config.max_utterance_s
            message = f"over {limit:g} s of speech: Eva answers what she heard so far"
            out.append(event("error", code="turn_too_long", message=message))
        reply = self._utterance.reply
        if reply is not None and reply is self.reply and self._utterance.words == "":
            return out  # the pause's words were nothing (a cough): nothing to answer
        if reply is None or reply.over or reply is not self.reply:
            out += self._stop_current()
            reply = self._new_reply(
                "reply", speech_end_at=self._wall_time(ended.speech_end_sample, now)
            )
            self._utterance = _Utterance(job=self._next_job(), reply=reply)
            out.append(Transcribe(self._utterance.job, ended.audio, "turn"))
        reply.commit()  # the speculative reply for this utterance may now be heard
        reply.turn_ended_at = now
        # Only a turn that silence ended may be taken back: not one the length limit cut,
        # nor one the person ended themselves (push-to-talk).
        resumable = self.mode == "hands_free" and not ended.forced
        self._ended_turn = (now, ended.audio) if resumable else None
        self._utterance = _Utterance(job=self._utterance.job, reply=reply,
                                     words=self._utterance.words)  # fmt: skip
        if reply.error is not None:
            out += self._fail(reply)
        self._ack_due = self._spoken_ack_due(reply, now)
        return out

    def _spoken_ack_due(self, reply: ReplyHandle, now: float) -> float | None:
        """When a spoken turn's reply, still silent, gets an acknowledgement: ``ack_after``
        after the turn ended, and never before ``ACK_AFTER_SPEECH_S`` of silence. An
        acknowledgement plays whole before the reply: one said when the reply was about to
        come anyway only delays it (by "Mm.", 0.34 s)."""
        after = self.config.ack_after_s
        if after <= 0:
            return None
        if reply.speech_end_at is None:
            return now + after
        return max(now + after, reply.speech_end_at + ACK_AFTER_SPEECH_S)

    # --- results of work the core asked for

    def transcribed(self, job: int, words: str, stt_ms: float, now: float) -> list[Command]:
        words = words.strip()
        if job == self._partial_job:
            self._partial_job = None
            if words and self.detector.speaking:
                return [event("transcript.partial", text=words)]
            return []
        if job == self._overlap_job:
            return self._judge_overlap(words, now)
        utterance = self._utterance
        if job != utterance.job or utterance.reply is None:
            return []  # the person went on: that pause's words are moot
        reply = utterance.reply
        utterance.words = words
        out = self._set_wait(utterance, now) or self._maybe_backchannel(now)
        if reply.state in (ReplyState.DISCARDED, ReplyState.DONE):
            return out
        # An interrupted one is still said (nothing of it will be heard): the person's
        # words are stored, and the client gets the turn's transcript and its end.
        reply.timer = TurnTimer()  # the reply's stages count from its words
        reply.timer.set("stt_ms", stt_ms)
        if not words:  # noise, a cough: nothing to answer
            reply.finish()
            return out
        reply.user_text = words
        return [*out, StartReply(reply)]

    def transcription_failed(self, job: int, message: str) -> list[Command]:
        if job == self._partial_job:
            self._partial_job = None
            return []
        if job == self._overlap_job:
            return self._judge_overlap("", 0.0)
        reply = self._utterance.reply
        if job != self._utterance.job or reply is None or reply.over:
            return []
        reply.error = message
        return self._fail(reply) if reply.committed else []

    def _fail(self, reply: ReplyHandle) -> list[Command]:
        message = reply.error or "the transcription failed"
        reply.finish()
        return [event("error", code="backend_unavailable", message=message)]

    def judged(self, job: int, probability: float, now: float) -> list[Command]:
        utterance = self._utterance
        if job != utterance.job:
            return []
        utterance.probability = probability
        out = self._set_wait(utterance, now)
        return out or self._maybe_backchannel(now)

    def _set_wait(self, utterance: _Utterance, now: float) -> list[Command]:
        wait = self.config.policy.wait_ms(utterance.probability, utterance.words)
        ended = self.detector.set_turn_wait_ms(wait)
        if ended is None or self.mode != "hands_free":
            return []
        return self._on_turn_ended(ended, now)

    # --- playback reports

    def reply_speaking_soon(self, reply: ReplyHandle) -> None:
        """The reply's first words are out: its audio follows within a clause, so an
        acknowledgement now would only delay it."""
        if reply is self.reply:
            self._ack_due = None

    def reply_audio_ready(self, reply: ReplyHandle) -> None:
        """The reply's own audio is about to go out: no acknowledgement is needed now."""
        self._audio_ready.add(reply.id)
        if reply is self.reply:
            self._ack_due = None

    def reply_finished(self, reply: ReplyHandle, played_until: float, now: float) -> None:
        """A reply or line went out (or was stopped); ``played_until`` is when the client
        will have played all of it."""
        self._audio_ready.discard(reply.id)
        if self._overlapped is reply:
            self._overlapped = None
        if reply.state == "playing" or reply.state == "committed":
            reply.finish()
        if (
            reply.purpose == "reply"
            and reply.state == "done"
            and self.config.reengage_after_s > 0
            and not self._reengaged
            and self.mode == "hands_free"
            and self._last_audio_at is not None  # typed only: no microphone at all
        ):
            self._reengage_due = max(played_until, now) + self.config.reengage_after_s

    # --- time

    def next_deadline(self) -> float | None:
        due = [t for t in (self._ack_due, self._reengage_due) if t is not None]
        return min(due) if due else None

    def tick(self, now: float) -> list[Command]:
        out: list[Command] = []
        if self._ack_due is not None and now >= self._ack_due:
            self._ack_due = None
            out += self._maybe_ack(now)
        if self._reengage_due is not None and now >= self._reengage_due:
            self._reengage_due = None
            out += self._maybe_reengage(now)
        return out

    # --- manners

    def _maybe_ack(self, now: float) -> list[Command]:
        reply = self.reply
        if (
            reply is None
            or reply.purpose != "reply"
            or not reply.committed
            or reply.over
            or reply.id in self._audio_ready
        ):
            return []
        if reply.user_text is None:  # committed before its words were known: soon
            self._ack_due = now + ACK_RETRY_S
            return []
        text = choose_acknowledgement(reply.user_text, self.config.language)
        if not self.line_ready(text):
            return []  # not synthesized yet: never on the latency path
        reply.timer.mark("ack_ms")
        self._audio_ready.add(reply.id)  # heard from now on: it can no longer be taken back
        return [SayAck(reply, text)]

    def _maybe_reengage(self, now: float) -> list[Command]:
        current = self.reply
        if (
            self.mode != "hands_free"
            or self.detector.speaking
            or (current is not None and not current.over)
            or self._last_audio_at is None
            or now - self._last_audio_at > MIC_LIVE_S
        ):
            return []
        text = reengage_line(self.config.language)
        if not self.line_ready(text):
            return []
        self._reengaged = True
        reply = self._new_reply("reengage")
        reply.commit()
        return [SayLine(reply, text)]

    def _maybe_backchannel(self, now: float) -> list[Command]:
        """Once both judgements of a pause are in: the model and the words agree that the
        person is mid-thought (the model alone says so at the end of one question in
        four of the synthesized voice's)."""
        utterance = self._utterance
        if utterance.probability is None or utterance.words is None or utterance.spoke:
            return []
        utterance.spoke = True  # one decision per pause
        speech_s = len(self.detector.utterance_audio()) / STT_SAMPLE_RATE
        text = backchannel_line(self.config.language)
        if (
            not self.backchannels
            or self.mode != "hands_free"
            or not self.detector.speaking  # the turn has ended
            # The judgements came in after they went on: never a "mm-hm" over their voice.
            or self._voice_open
            or utterance.probability >= BACKCHANNEL_BELOW
            or looks_complete(utterance.words)
            or speech_s < BACKCHANNEL_AFTER_SPEECH_S
            or utterance.backchannelled
            or (
                self._last_backchannel_at is not None
                and now - self._last_backchannel_at < BACKCHANNEL_GAP_S
            )
            or not self.line_ready(text)
        ):
            utterance.backchannelled = False
            return []
        utterance.backchannelled = True
        self._last_backchannel_at = now
        # Not the session's reply: the reply being prepared from this pause goes on.
        self._backchannel = ReplyHandle(id=self._next_reply_id(), purpose="backchannel")
        self._backchannel.commit()
        return [SayLine(self._backchannel, text)]

    def _judge_overlap(self, words: str, now: float) -> list[Command]:
        self._overlap_job = None
        out: list[Command] = []
        deferred, self._deferred_end = self._deferred_end, None
        if self._overlapped is not None:
            if is_backchannel(words) and not self._voice_open:
                self._skip_turn = True
                reply, self._overlapped = self._overlapped, None
                reply.resume()
                out += [ResumeOutput(), event("response.resumed", response_id=reply.id)]
            else:
                out += self._cancel_overlap()
                if not self._voice_open and words:
                    # The short utterance was a turn ("Stop." "Wait."): answer it, as any
                    # utterance that ends in a pause.
                    reply = self._new_reply("reply", user_text=words, speech_end_at=now)
                    self._utterance = _Utterance(job=self._next_job(), reply=reply, words=words)
                    out.append(StartReply(reply))
        if deferred is not None:
            out += self._on_turn_ended(deferred, now)
        return out

    def _cancel_overlap(self) -> list[Command]:
        reply, self._overlapped = self._overlapped, None
        if reply is None:
            return []
        reply.interrupt()
        return [event("response.cancelled", response_id=reply.id), ClearOutput()]

    # --- replies

    def _next_reply_id(self) -> str:
        self._replies += 1
        return f"resp_{self._replies}"

    def _next_job(self) -> int:
        self._jobs += 1
        return self._jobs

    def _new_reply(
        self, purpose: Purpose, *, user_text: str | None = None, speech_end_at: float | None = None
    ) -> ReplyHandle:
        """The one reply in flight from now on (the caller stopped the previous one)."""
        previous = self.reply
        if previous is not None and not previous.over and previous.purpose != "backchannel":
            previous.interrupt()
        self.reply = ReplyHandle(
            id=self._next_reply_id(), purpose=purpose, user_text=user_text,
            speech_end_at=speech_end_at,
        )  # fmt: skip
        return self.reply

    def _stop_current(self) -> list[Command]:
        """Stop the reply in flight: a committed one as a barge-in (what was heard is
        kept), a speculative one is thrown away."""
        if self._overlapped is not None:
            return self._cancel_overlap()
        current = self.reply
        if current is None or current.over:
            return []
        committed = current.committed
        current.interrupt()
        return [ClearOutput()] if committed else []

    # --- partial transcripts

    def _maybe_partial(self, now: float) -> list[Command]:
        detector = self.detector
        reply = self.reply
        if (
            not detector.speaking
            # Only mid-voice: a partial still running when a pause begins would delay the
            # final transcript, which waits for the same STT thread.
            or detector.last_probability < detector.config.threshold
            or now - self._last_partial_at < PARTIAL_EVERY_S
            or self._partial_job is not None
            or (reply is not None and not reply.committed and not reply.over)
        ):
            return []
        audio = detector.utterance_audio()
        if len(audio) < STT_SAMPLE_RATE * PARTIAL_EVERY_S:
            return []
        self._last_partial_at = now
        self._partial_job = self._next_job()
        return [Transcribe(self._partial_job, audio, "partial")]
