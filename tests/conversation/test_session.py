"""The session core on a virtual clock: exact turn-taking and manners, no I/O, no models.

The VAD is scripted (a frame of non-zero samples is voiced), the recognizer's and the
end-of-turn model's results are handed in by the test at the virtual time it chooses, and
time is the number of samples fed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eva.conversation.end_of_turn import TurnPolicy
from eva.conversation.listener import ListenerConfig, TurnDetector
from eva.conversation.reply import ReplyState
from eva.conversation.session import (
    ClearOutput,
    Command,
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

FRAME = 512  # 32 ms


class ScriptedVAD:
    frame_samples = FRAME

    def speech_probability(self, frame: np.ndarray) -> float:
        return 0.95 if np.abs(frame).max() > 0 else 0.01


@dataclass
class Session:
    core: SessionCore
    now: float = 0.0
    commands: list[tuple[float, Command]] = field(default_factory=list)

    @classmethod
    def make(cls, **config: object) -> Session:
        detector = TurnDetector(ScriptedVAD(), ListenerConfig())
        core = SessionCore(detector, SessionConfig(**config), "hands_free", lambda _: True)  # type: ignore[arg-type]
        return cls(core)

    def feed(self, seconds: float, voiced: bool) -> list[Command]:
        out: list[Command] = []
        frame = np.full(FRAME, 3000 if voiced else 0, dtype=np.int16)
        for _ in range(round(seconds * 16000 / FRAME)):
            self.now += FRAME / 16000
            out += self.core.audio(frame, self.now)
        self.commands += [(self.now, c) for c in out]
        return out

    def speak(self, seconds: float) -> list[Command]:
        return self.feed(seconds, voiced=True)

    def silence(self, seconds: float) -> list[Command]:
        return self.feed(seconds, voiced=False)

    def job(self, purpose: str) -> Transcribe:
        return [c for _, c in self.commands if isinstance(c, Transcribe) and c.purpose == purpose][
            -1
        ]

    def events(self, kind: str) -> list[dict[str, object]]:
        return [
            c.event for _, c in self.commands if isinstance(c, Send) and c.event["type"] == kind
        ]

    def record(self, out: list[Command]) -> list[Command]:
        self.commands += [(self.now, c) for c in out]
        return out


def _committed_at(session: Session, step_s: float, until_s: float) -> float | None:
    """Feed silence until the reply is committed; the silence it took, in ms."""
    start = session.now
    while session.now - start < until_s:
        session.silence(step_s)
        reply = session.core.reply
        if reply is not None and reply.committed:
            return session.now
    return None


def test_a_pause_starts_a_transcription_and_a_judgement_of_the_same_audio() -> None:
    session = Session.make()
    session.speak(1.0)
    out = session.silence(0.16)
    kinds = [type(c) for c in out]
    assert Transcribe in kinds and JudgeTurn in kinds
    transcribe = next(c for c in out if isinstance(c, Transcribe))
    judge = next(c for c in out if isinstance(c, JudgeTurn))
    assert transcribe.job == judge.job and transcribe.audio is judge.audio
    reply = session.core.reply
    assert reply is not None and reply.state is ReplyState.SPECULATIVE


def test_a_confident_model_and_finished_words_end_the_turn_at_200_ms_of_silence() -> None:
    session = Session.make()
    session.speak(1.5)
    speech_end = session.now
    session.silence(0.16)  # the pause is noticed at 128 ms
    job = session.job("turn").job
    assert session.record(session.core.judged(job, 0.95, session.now)) == []
    out = session.record(session.core.transcribed(job, "How are you today?", 40, session.now))
    assert any(isinstance(c, StartReply) for c in out)
    ended = _committed_at(session, 0.032, 1.0)
    assert ended is not None and 0.2 <= ended - speech_end <= 0.232


def test_words_arriving_after_200_ms_end_the_turn_the_moment_they_arrive() -> None:
    session = Session.make()
    session.speak(1.5)
    speech_end = session.now
    session.silence(0.16)
    job = session.job("turn").job
    session.core.judged(job, 0.95, session.now)
    session.silence(0.192)  # 352 ms of silence: the model alone does not end it
    assert session.core.reply is not None and not session.core.reply.committed
    session.record(session.core.transcribed(job, "How are you today?", 200, session.now))
    reply = session.core.reply
    assert reply is not None and reply.committed
    assert round((session.now - speech_end) * 1000) == 352


def test_a_mid_thought_pause_of_over_a_second_does_not_end_the_turn() -> None:
    session = Session.make()
    session.speak(2.0)
    session.silence(0.16)
    job = session.job("turn").job
    session.core.judged(job, 0.1, session.now)
    session.core.transcribed(job, "And then the doctor said that I should...", 200, session.now)
    speculative = session.core.reply
    assert _committed_at(session, 0.032, 1.5) is None  # a 1.66 s pause: still their turn
    out = session.speak(0.5)  # they go on
    assert any(isinstance(c, Send) and c.event["type"] == "speech.started" for c in out)
    assert speculative is not None and speculative.state is ReplyState.DISCARDED


def test_without_the_model_finished_words_end_the_turn_after_500_ms() -> None:
    session = Session.make(policy=TurnPolicy(model=False))
    session.speak(1.0)
    speech_end = session.now
    out = session.silence(0.16)
    assert not any(isinstance(c, JudgeTurn) for c in out)
    session.core.transcribed(session.job("turn").job, "How are you today?", 100, session.now)
    ended = _committed_at(session, 0.032, 1.0)
    assert ended is not None and 0.5 <= ended - speech_end <= 0.532


def _playing_reply(session: Session) -> None:
    session.record(session.core.text_turn("Tell me a story.", session.now))
    reply = session.core.reply
    assert reply is not None
    session.core.reply_audio_ready(reply)
    reply.start_playing()


def test_speech_over_eva_pauses_her_and_a_backchannel_lets_her_go_on() -> None:
    session = Session.make()
    _playing_reply(session)
    reply = session.core.reply
    out = session.speak(0.3)
    assert any(isinstance(c, PauseOutput) for c in out)
    assert session.events("response.paused") and reply is not None
    assert reply.state is ReplyState.PAUSED
    session.silence(0.16)
    overlap = session.job("overlap")
    out = session.record(session.core.transcribed(overlap.job, "Mm-hm.", 80, session.now))
    assert any(isinstance(c, ResumeOutput) for c in out)
    assert reply.state is ReplyState.PLAYING
    assert _committed_at(session, 0.032, 1.5) is not None  # it stays Eva's reply
    assert session.core.reply is reply  # and the backchannel was no turn


def test_speech_over_eva_that_goes_on_is_an_interruption() -> None:
    session = Session.make()
    _playing_reply(session)
    reply = session.core.reply
    session.speak(1.2)  # longer than overlap_max_ms plus the pause that would end it
    assert reply is not None and reply.state is ReplyState.INTERRUPTED
    assert session.events("response.cancelled")
    assert any(isinstance(c, ClearOutput) for _, c in session.commands)


def test_a_late_reply_gets_one_acknowledgement_exactly_at_350_ms() -> None:
    session = Session.make()
    session.record(session.core.text_turn("Why is the sky blue?", 10.0))
    assert session.core.next_deadline() == 10.35
    assert session.core.tick(10.349) == []
    out = session.core.tick(10.35)
    assert len(out) == 1 and isinstance(out[0], SayAck) and out[0].text == "Hmm."
    assert session.core.next_deadline() is None


def test_a_reply_whose_audio_is_ready_in_time_gets_no_acknowledgement() -> None:
    session = Session.make()
    session.core.text_turn("Why is the sky blue?", 10.0)
    reply = session.core.reply
    assert reply is not None
    session.core.reply_audio_ready(reply)
    assert session.core.tick(10.4) == []


def _pause_judged(
    session: Session, speak_s: float, probability: float, words: str = "and then I"
) -> list[Command]:
    session.speak(speak_s)
    session.silence(0.16)
    job = session.job("turn").job
    out = session.record(session.core.judged(job, probability, session.now))
    return out + session.record(session.core.transcribed(job, words, 150, session.now))


def test_eva_backchannels_in_a_long_turn_never_twice_in_a_row_nor_over_the_person() -> None:
    session = Session.make()
    out = _pause_judged(session, 3.5, 0.1)
    lines = [c for c in out if isinstance(c, SayLine)]
    assert len(lines) == 1 and lines[0].reply.purpose == "backchannel"
    backchannel = lines[0].reply
    speculative = session.core.reply
    assert speculative is not None and speculative is not backchannel  # prepared all the same
    out = session.speak(0.3)  # the person goes on over the "mm-hm"
    assert backchannel.state is ReplyState.INTERRUPTED
    assert any(isinstance(c, ClearOutput) for c in out)
    assert not any(isinstance(c, SayLine) for c in _pause_judged(session, 3.0, 0.1))  # in a row
    assert any(isinstance(c, SayLine) for c in _pause_judged(session, 3.0, 0.1))  # 6 s later


def test_a_judgement_that_comes_after_the_person_went_on_says_no_backchannel() -> None:
    session = Session.make()
    session.speak(3.5)
    session.silence(0.16)
    job = session.job("turn").job
    session.speak(0.2)  # they went on before the model and the words came back (a busy CPU)
    out = session.record(session.core.judged(job, 0.1, session.now))
    out += session.record(session.core.transcribed(job, "and then I", 150, session.now))
    assert not any(isinstance(c, SayLine) for c in out)


def test_eva_never_backchannels_a_short_turn_a_finished_one_or_when_switched_off() -> None:
    assert not any(isinstance(c, SayLine) for c in _pause_judged(Session.make(), 1.5, 0.1))
    assert not any(isinstance(c, SayLine) for c in _pause_judged(Session.make(), 4.0, 0.9))
    # the model alone is not enough: finished words say the person may be done
    finished = _pause_judged(Session.make(), 4.0, 0.1, "Have you ever tried it?")
    assert not any(isinstance(c, SayLine) for c in finished)
    quiet = Session.make(backchannels=False)
    assert not any(isinstance(c, SayLine) for c in _pause_judged(quiet, 4.0, 0.1))


def test_after_a_long_silence_eva_checks_in_once() -> None:
    session = Session.make(reengage_after_s=20.0)
    session.silence(0.1)  # the microphone is on
    session.core.text_turn("Hello!", session.now)
    reply = session.core.reply
    assert reply is not None
    session.core.reply_audio_ready(reply)
    reply.start_playing()
    session.core.reply_finished(reply, played_until=session.now + 2.0, now=session.now)
    due = session.core.next_deadline()
    assert due is not None and round(due - session.now, 3) == 22.0
    session.silence(22.0)
    out = session.core.tick(session.now)
    assert len(out) == 1 and isinstance(out[0], SayLine) and out[0].reply.purpose == "reengage"
    line = out[0].reply
    line.start_playing()
    session.core.reply_finished(line, session.now + 1.5, session.now)
    assert session.core.next_deadline() is None  # once, until the person speaks again


def test_going_on_before_any_reply_was_heard_takes_the_reply_back_and_the_turn_goes_on() -> None:
    session = Session.make()
    _end_the_turn_fast(session, "I went to the market.")
    first = session.core.reply
    assert first is not None and first.committed  # a false end of turn
    out = session.speak(0.5)  # they go on before Eva's reply has any audio out
    assert first.state is ReplyState.DISCARDED and first.control.cancelled
    started = [c.event for c in out if isinstance(c, Send) and c.event["type"] == "speech.started"]
    assert started == [{"type": "speech.started", "resumed_turn": True}]
    assert not any(isinstance(c, (PauseOutput, ClearOutput)) for c in out)
    out = session.silence(0.16)
    again = next(c for c in out if isinstance(c, Transcribe))
    # the whole turn is heard as one: 1.5 s, the pause, and the 0.5 s that followed
    assert len(again.audio) / 16000 >= 2.2


def test_going_on_once_the_reply_is_heard_is_speech_over_eva_not_the_same_turn() -> None:
    session = Session.make()
    _end_the_turn_fast(session, "I went to the market.")
    reply = session.core.reply
    assert reply is not None
    session.core.reply_audio_ready(reply)
    reply.start_playing()
    out = session.speak(0.3)
    assert reply.state is ReplyState.PAUSED and any(isinstance(c, PauseOutput) for c in out)


def test_a_spoken_reply_is_acknowledged_only_after_1200_ms_of_silence() -> None:
    session = Session.make()
    speech_end = _end_the_turn_fast(session, "How are you today?")
    assert session.core.reply is not None and session.core.reply.committed
    due = session.core.next_deadline()
    assert due is not None and round(due - speech_end, 3) == 1.2  # ACK_AFTER_SPEECH_S


def test_a_reply_whose_words_have_begun_gets_no_acknowledgement() -> None:
    session = Session.make()
    session.core.text_turn("Why is the sky blue?", 10.0)
    reply = session.core.reply
    assert reply is not None
    session.core.reply_speaking_soon(reply)  # its audio follows within a clause
    assert session.core.next_deadline() is None and session.core.tick(10.4) == []


def _end_the_turn_fast(session: Session, words: str) -> float:
    """1.5 s of speech, a pause the model and the words agree ends the turn; when the
    speech ended."""
    session.speak(1.5)
    speech_end = session.now
    session.silence(0.16)
    job = session.job("turn").job
    session.core.judged(job, 0.95, session.now)
    session.core.transcribed(job, words, 40, session.now)
    session.silence(0.1)
    return speech_end


def test_a_turn_the_length_limit_cut_is_answered_even_while_the_person_goes_on() -> None:
    detector = TurnDetector(ScriptedVAD(), ListenerConfig(max_utterance_s=1.5))
    session = Session(SessionCore(detector, SessionConfig(), "push_to_talk", lambda _: True))
    session.core.set_mode("push_to_talk")
    session.speak(2.5)
    assert session.events("error")[0]["code"] == "turn_too_long"
    cut = session.job("turn")
    assert len(cut.audio) / 16000 <= 1.5 + 0.032  # to the frame
    assert not any(e.get("resumed_turn") for e in session.events("speech.started"))
    out = session.core.transcribed(cut.job, "I would like to tell you", 100, session.now)
    assert any(isinstance(c, StartReply) for c in out)  # said, though interrupted: stored
