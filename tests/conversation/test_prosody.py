"""Expressive speech with the real voices: question intonation, mood rates, pauses."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from eva.conversation.prosody import (
    CUT_TAIL_KEEP_MS,
    StyledVoice,
    VoiceStyle,
    clause_rate,
    pause_after_ms,
    style_for,
)
from eva.engines.runtime import Engines

_VOICED_LEVEL = 400  # PCM16 RMS under which a 40 ms window is not voiced


def _speak(engines: Engines, text: str, voice: str, rate: float = 1.0) -> np.ndarray:
    return np.concatenate(list(engines.tts.synthesize(text, voice, threading.Event(), rate)))


def _pitch_track(pcm: np.ndarray, rate: int) -> np.ndarray:
    """f0 every 10 ms by normalized autocorrelation (60-220 Hz, these voices are low);
    NaN where unvoiced. The first lag within 90 % of the best avoids octave errors."""
    x = pcm.astype(np.float64)
    voiced = np.flatnonzero(np.abs(x) > 500)
    x = x[voiced[0] : voiced[-1] + 1]
    window, hop = int(rate * 0.04), int(rate * 0.01)
    low, high = int(rate / 220), int(rate / 60)
    track = []
    for start in range(0, len(x) - window - high, hop):
        a = x[start : start + window] - x[start : start + window].mean()
        if np.sqrt(np.mean(a**2)) < _VOICED_LEVEL:
            track.append(np.nan)
            continue
        scores = []
        for lag in range(low, high):
            b = x[start + lag : start + lag + window]
            b = b - b.mean()
            scores.append(np.dot(a, b) / (np.sqrt(np.dot(a, a) * np.dot(b, b)) + 1e-9))
        best = max(scores)
        if best < 0.5:
            track.append(np.nan)
            continue
        lag = low + next(i for i, s in enumerate(scores) if s >= 0.9 * best)
        track.append(rate / lag)
    return np.array(track)


def _final_pitch(pcm: np.ndarray, rate: int) -> float:
    """Median f0 of the last ten voiced frames (about the last 100-300 ms)."""
    track = _pitch_track(pcm, rate)
    return float(np.median(track[~np.isnan(track)][-10:]))


@pytest.mark.parametrize("voice", ["en_US-joe-medium", "espeak-en-us"])
@pytest.mark.parametrize(
    "words", ["You are going home today", "It is raining again", "She likes green apples"]
)
def test_a_question_ends_higher_than_the_same_words_as_a_statement(
    engines: Engines, voice: str, words: str
) -> None:
    rate = engines.tts.info(voice).sample_rate
    # Piper samples its noise afresh on every call: one rendition of a statement may end
    # as high as a question (70-92 Hz against 89-142 Hz measured), the median of five not.
    renditions = 5
    statement = float(
        np.median(
            [_final_pitch(_speak(engines, f"{words}.", voice), rate) for _ in range(renditions)]
        )
    )
    question = float(
        np.median(
            [_final_pitch(_speak(engines, f"{words}?", voice), rate) for _ in range(renditions)]
        )
    )
    print(f"{voice} {words!r}: statement ends {statement:.0f} Hz, question {question:.0f} Hz")
    assert question > 1.1 * statement


@pytest.mark.parametrize("voice", ["en_US-joe-medium", "espeak-en-us"])
def test_every_backend_honours_the_speaking_rate(engines: Engines, voice: str) -> None:
    text = "We walked along the river until the sun went down."
    # Piper's durations vary by a few per cent from run to run: steps well beyond that.
    normal = len(_speak(engines, text, voice))
    faster = len(_speak(engines, text, voice, rate=1.5))
    slower = len(_speak(engines, text, voice, rate=0.67))
    assert faster < 0.85 * normal and slower > 1.15 * normal


def test_mood_rates_and_pauses_come_from_the_voice_style() -> None:
    style = VoiceStyle(rate=1.1, excited_rate=1.2, gentle_rate=0.8, sentence_pause_ms=300)
    assert clause_rate(style, "excited") == pytest.approx(1.32)
    assert clause_rate(style, "gentle") == pytest.approx(0.88)
    assert clause_rate(style, "neutral") == pytest.approx(1.1)
    assert pause_after_ms(style, "That's lovely!") == 300
    assert pause_after_ms(style, "Well,") == style.comma_pause_ms
    assert pause_after_ms(style, "and then the") == 0
    styles = {"default": VoiceStyle(rate=0.9), "espeak-en-us": style}
    assert style_for(styles, "espeak-en-us") is style
    assert style_for(styles, "en_US-joe-medium").rate == 0.9
    assert style_for({}, "anything") == VoiceStyle()


def test_styled_voice_pauses_between_clauses_but_never_before_the_first(
    engines: Engines,
) -> None:
    voice = engines.tts.info("en_US-joe-medium")
    style = VoiceStyle(comma_pause_ms=100, sentence_pause_ms=400)
    styled = StyledVoice(engines.tts, voice, style)
    never = threading.Event()
    clauses = ["Oh, I'm so sorry.", "That sounds hard,", "what happened next?", "Wow!"]
    audio = [np.concatenate(list(styled.synthesize(c, voice.id, never))) for c in clauses]
    # Piper's durations vary a little from run to run: measure the silence in front.
    leading = [int(np.argmax(pcm != 0)) for pcm in audio]
    expected = [0, 400, 100, 400]  # what the previous clause ends with: . , ?
    for silent, pause_ms in zip(leading, expected, strict=True):
        wanted = voice.sample_rate * pause_ms // 1000
        assert wanted <= silent < wanted + voice.sample_rate * 0.03
    # The moods: sorry is gentle (slower), the question as is, "Wow!" faster.
    assert styled.rates == pytest.approx([0.9, 0.9, 1.0, 1.08])


def test_voice_styles_come_from_the_environment_and_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from eva.config import Settings

    monkeypatch.setenv("EVA_VOICE_STYLES", '{"espeak-en-us": {"rate": 1.2, "comma_pause_ms": 0}}')
    style = style_for(Settings().voice_styles, "espeak-en-us")
    assert (style.rate, style.comma_pause_ms, style.sentence_pause_ms) == (1.2, 0, 200)
    monkeypatch.setenv("EVA_VOICE_STYLES", '{"default": {"rate": 9}}')
    with pytest.raises(ValidationError, match="rate"):
        Settings()
    monkeypatch.setenv("EVA_VOICE_STYLES", '{"default": {"speed": 1.1}}')
    with pytest.raises(ValidationError, match="speed"):
        Settings()


def test_a_clause_cut_mid_phrase_loses_the_synthesizers_closing_silence(
    engines: Engines,
) -> None:
    voice = engines.tts.info("en_US-joe-medium")
    styled = StyledVoice(engines.tts, voice, VoiceStyle())
    never = threading.Event()

    def closing_silence_s(text: str) -> float:
        pcm = np.concatenate(list(styled.synthesize(text, voice.id, never)))
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 300)
        return (len(pcm) - loud[-1] - 1) / voice.sample_rate

    # a full stop keeps Piper's own silence, a clause cut before its end goes on at once
    assert closing_silence_s("The keeper climbed the stairs.") > 0.08
    assert closing_silence_s("the keeper climbed the stairs") <= CUT_TAIL_KEEP_MS / 1000
