"""TurnDetector with the real VAD on synthesized speech, and the end-of-turn heuristic."""

from __future__ import annotations

import numpy as np

from eva.conversation.listener import (
    ListenerConfig,
    SpeechPaused,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
)
from eva.engines.runtime import Engines
from tests.server.ws_client import silence, speech


def _run(detector: TurnDetector, audio: np.ndarray, frame: int = 640) -> list[tuple[float, object]]:
    events: list[tuple[float, object]] = []
    for start in range(0, len(audio), frame):
        for event in detector.feed(audio[start : start + frame]):
            events.append(((start + frame) / 16000, event))
    return events


def test_a_spoken_turn_starts_pauses_and_ends(engines: Engines) -> None:
    detector = TurnDetector(engines.vad.new_stream())
    said = speech(engines, "Could you tell me a nice story?")
    events = _run(detector, np.concatenate([silence(0.5), said, silence(1.2)]))
    kinds = [type(event) for _, event in events]
    assert kinds == [SpeechStarted, SpeechPaused, TurnEnded]
    speech_end = 0.5 + len(said) / 16000
    paused_at, ended_at = events[1][0], events[2][0]
    assert 0.1 <= paused_at - speech_end <= 0.35  # ~pause_ms, plus the VAD's own lag
    assert 0.7 <= ended_at - speech_end <= 1.0  # end_of_turn_ms: unknown words, long wait
    ended = events[2][1]
    assert isinstance(ended, TurnEnded)
    heard = engines.stt.transcribe(ended.audio).text.lower()
    assert "nice story" in heard  # the preroll kept the first word


def test_a_shorter_turn_wait_ends_the_turn_sooner(engines: Engines) -> None:
    detector = TurnDetector(engines.vad.new_stream())
    said = speech(engines, "Could you tell me a nice story?")
    events = _run(detector, np.concatenate([silence(0.5), said, silence(0.3)]))
    assert isinstance(events[-1][1], SpeechPaused)
    assert detector.set_turn_wait_ms(500) is None  # ~300 ms of silence so far
    more = _run(detector, silence(1.0))
    assert isinstance(more[0][1], TurnEnded)
    assert more[0][0] < 0.5  # 500 ms of silence in all, not 800


def test_a_wait_already_elapsed_ends_the_turn_at_once(engines: Engines) -> None:
    detector = TurnDetector(engines.vad.new_stream())
    said = speech(engines, "Could you tell me a nice story?")
    _run(detector, np.concatenate([silence(0.5), said, silence(0.3)]))
    assert detector.silence_ms >= 160
    ended = detector.set_turn_wait_ms(150)
    assert isinstance(ended, TurnEnded) and not detector.speaking


def test_speech_after_a_short_pause_resumes_the_same_utterance(engines: Engines) -> None:
    detector = TurnDetector(engines.vad.new_stream())
    first, second = speech(engines, "I went to the market"), speech(engines, "and bought apples.")
    audio = np.concatenate([silence(0.4), first, silence(0.35), second, silence(1.2)])
    events = [event for _, event in _run(detector, audio)]
    assert [type(e) for e in events] == [
        SpeechStarted,
        SpeechPaused,
        SpeechStarted,
        SpeechPaused,
        TurnEnded,
    ]
    assert isinstance(events[2], SpeechStarted) and events[2].resumed
    ended = events[-1]
    assert isinstance(ended, TurnEnded)
    assert len(ended.audio) / 16000 > (len(first) + len(second)) / 16000


def test_silence_and_quiet_noise_never_start_speech(engines: Engines) -> None:
    detector = TurnDetector(engines.vad.new_stream())
    noise = (np.random.default_rng(4).standard_normal(16000 * 2) * 200).astype(np.int16)
    assert _run(detector, np.concatenate([silence(1.0), noise])) == []


def test_push_to_talk_ends_only_when_told(engines: Engines) -> None:
    detector = TurnDetector(engines.vad.new_stream(), ends_turns_on_silence=False)
    said = speech(engines, "Tell me something nice about today.")
    events = _run(detector, np.concatenate([silence(0.3), said, silence(2.0)]))
    assert not any(isinstance(event, TurnEnded) for _, event in events)
    ended = detector.end_turn_now()
    assert ended is not None and len(ended.audio) / 16000 > len(said) / 16000
    assert detector.end_turn_now() is None  # nothing left after the turn ended


def test_an_endless_utterance_is_cut_at_the_limit(engines: Engines) -> None:
    config = ListenerConfig(max_utterance_s=2.0)
    detector = TurnDetector(engines.vad.new_stream(), config)
    said = speech(engines, "I keep talking and talking and talking without any pause at all.")
    events = [event for _, event in _run(detector, np.concatenate([silence(0.3), said]))]
    forced = [e for e in events if isinstance(e, TurnEnded)]
    assert forced and forced[0].forced and len(forced[0].audio) / 16000 <= 2.1


def test_any_frame_size_is_accepted(engines: Engines) -> None:
    audio = np.concatenate([silence(0.4), speech(engines, "Hello there."), silence(1.2)])
    by_frames = {
        size: [type(e) for _, e in _run(TurnDetector(engines.vad.new_stream()), audio, size)]
        for size in (1, 333, 512, 4096)
    }
    assert all(kinds == by_frames[512] for kinds in by_frames.values()), by_frames
