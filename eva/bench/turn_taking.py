"""The turn-taking benchmark: does Eva let people finish, and answer quickly when they have?

Like LiveKit's eot-bench, on speech made here: each turn is spoken whole by Eva's packaged
voice (a stand-in for a person, so its melody runs on through the sentence), then

- *finished*: the whole turn, then silence. Measured: the silence after which the turn
  ended (the end-of-turn delay);
- *paused*: the same audio cut at a word boundary inside a clause (Whisper's word times),
  with 400-1500 ms of silence put in, then the rest. A turn that ends inside that silence
  is a false cut-off.

Each trial drives the real session core (eva/conversation/session.py) on a virtual clock,
with the real VAD, recognizer and end-of-turn model: each result is delivered as late as
it really took to compute. The model and the rule on words run on the same audio in the
same run. Eva's own backchannels are counted, and any said while the person speaks.

    python -m eva.bench.turn_taking [--turns N]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eva.bench.voice import Speaker
from eva.config import Settings
from eva.conversation.listener import TurnDetector
from eva.conversation.session import (
    Command,
    JudgeTurn,
    SayLine,
    SessionConfig,
    SessionCore,
    StartReply,
    Transcribe,
)
from eva.engines import registry
from eva.engines.base import STT_SAMPLE_RATE, EndOfTurnEngine, STTEngine, TimedWord, VADEngine
from eva.server.ws_voice import listener_config, session_config

FRAME = 512  # what a browser sends: about 32 ms
TAIL_S = 3.0  # silence after the turn: more than the longest wait
PAUSES_S = (0.4, 1.5)
SHORT_PAUSE_S = 1.0  # the target counts pauses up to this long
CUTS_PER_TURN = 2  # paused trials per sentence, each cut at a different word
# Each sentence is spoken this many times: Piper's voice differs from one synthesis to the
# next (the model's judgement of one finished sentence ranges 0.4-0.98), and the delay's
# distribution has several modes (200, 500, 1500 ms waits), so a median needs numbers.
SYNTHESES = 2
# Eva's first reply audio after the words are known: text to first audio, p50 706 ms in
# eva bench on this machine (docs/performance.md). A reply is heard from then on.
REPLY_AUDIO_S = 0.7

TURNS = [
    "I went to the market this morning and bought some fresh bread for breakfast.",
    "Can you tell me how long it takes to boil an egg properly?",
    "My brother called me yesterday because he wanted to borrow my car for the weekend.",
    "I think I should start running again, but my knee still hurts a little.",
    "What is the best way to learn a new language when you are very busy?",
    "Yesterday the doctor said that I should drink more water every single day.",
    "We are planning a trip to the mountains with some friends next summer.",
    "Do you remember the name of the book I told you about last week?",
    "My daughter started school this year and she already loves her teacher.",
    "I have been trying to cook more at home instead of ordering food every night.",
    "Could you help me write a short message to my neighbour about the noise?",
    "The train was late again this morning so I missed the start of the meeting.",
    "I would like to find a quiet place in the city where I can read on Sundays.",
    "When I was a child my grandmother used to tell me stories about the sea.",
    "How do you think I should tell my friend that I cannot come to her party?",
    "Last night I watched a film about a man who sails around the world alone.",
    "I am not sure whether I should take the new job or stay where I am.",
    "My cat keeps waking me up at five in the morning because she wants food.",
    "Why do the leaves of the trees change colour in the autumn?",
    "I finally finished painting the kitchen and it looks much brighter now.",
    "Tomorrow I have to give a presentation in front of the whole department.",
    "What would you recommend for someone who wants to sleep better at night?",
    "We adopted a small dog from the shelter and named him after my grandfather.",
    "I keep forgetting to call my mother back and I feel a bit guilty about it.",
]


@dataclass
class Trial:
    text: str
    kind: str  # "finished" | "paused"
    audio: np.ndarray  # 16 kHz PCM16, the whole trial
    speech_end_s: float  # the end of the person's last word
    pause: tuple[float, float] | None = None  # the silence put in, when paused
    voiced: list[tuple[float, float]] = field(default_factory=list)


def cut_after(words: list[TimedWord], rng: random.Random) -> list[int]:
    """Words inside a clause to pause after (``CUTS_PER_TURN``, each its own trial): not
    the first or the last two words, not one with punctuation (a comma is a natural place
    to stop, not a mid-clause pause)."""
    inside = [i for i, w in enumerate(words[:-2]) if i >= 1 and w.text[-1:].isalnum()]
    return sorted(rng.sample(inside, min(CUTS_PER_TURN, len(inside))))


def pause_inside(
    pcm: np.ndarray, words: list[TimedWord], after: int, pause_s: float
) -> tuple[np.ndarray, tuple[float, float]]:
    """``pcm`` with ``pause_s`` of silence put in between word ``after`` and the next: cut
    halfway between the two words' times, where the voice is between words."""
    cut_s = (words[after].end_s + words[after + 1].start_s) / 2
    cut = int(cut_s * STT_SAMPLE_RATE)
    silence = np.zeros(int(pause_s * STT_SAMPLE_RATE), dtype=np.int16)
    return np.concatenate([pcm[:cut], silence, pcm[cut:]]), (cut_s, cut_s + pause_s)


def make_trials(speaker: Speaker, stt: STTEngine, count: int, seed: int = 7) -> list[Trial]:
    rng = random.Random(seed)
    trials: list[Trial] = []
    tail = np.zeros(int(TAIL_S * STT_SAMPLE_RATE), dtype=np.int16)
    lead = np.zeros(int(0.3 * STT_SAMPLE_RATE), dtype=np.int16)
    for text in [t for t in TURNS[:count] for _ in range(SYNTHESES)]:
        pcm = speaker.say(text)
        seconds = len(pcm) / STT_SAMPLE_RATE
        trials.append(
            Trial(text, "finished", np.concatenate([lead, pcm, tail]), 0.3 + seconds,
                  voiced=[(0.3, 0.3 + seconds)])
        )  # fmt: skip
        words = stt.timed_words(pcm.astype(np.float32) / 32768.0, "en")
        for after in cut_after(words, rng):
            paused, (start, end) = pause_inside(pcm, words, after, rng.uniform(*PAUSES_S))
            total = len(paused) / STT_SAMPLE_RATE
            voiced = [(0.3, 0.3 + start), (0.3 + end, 0.3 + total)]
            trials.append(
                Trial(text, "paused", np.concatenate([lead, paused, tail]), 0.3 + total,
                      pause=(0.3 + start, 0.3 + end), voiced=voiced)
            )  # fmt: skip
    return trials


class _Work:
    """Real STT and end-of-turn model, memoised per audio so that both rules see the same
    words, probabilities and latencies for the same audio (each measured once, cold)."""

    def __init__(self, stt: STTEngine, model: EndOfTurnEngine | None) -> None:
        self.stt, self.model = stt, model
        self._words: dict[bytes, tuple[str, float]] = {}
        self._judged: dict[bytes, tuple[float, float]] = {}

    def words(self, audio: np.ndarray) -> tuple[str, float]:
        key = audio.tobytes()
        if key not in self._words:
            started = time.perf_counter()
            text = self.stt.transcribe(audio, "en").text
            self._words[key] = (text, time.perf_counter() - started)
        return self._words[key]

    def judge(self, audio: np.ndarray) -> tuple[float, float]:
        assert self.model is not None
        key = audio.tobytes()
        if key not in self._judged:
            started = time.perf_counter()
            probability = self.model.probability_complete(audio)
            self._judged[key] = (probability, time.perf_counter() - started)
        return self._judged[key]


@dataclass
class Outcome:
    ended_at_s: list[float]  # each time Eva decided the turn had ended
    heard_at_s: list[float]  # each time a reply's audio began
    backchannels: list[float]


def run_trial(trial: Trial, vad: VADEngine, config: SessionConfig, work: _Work) -> Outcome:
    """One trial through the core. A committed reply's audio begins ``REPLY_AUDIO_S`` after
    its words are known (or at the commit, if later), unless the person went on before and
    the core took it back."""
    detector = TurnDetector(vad.new_stream(), listener_config(Settings()))
    core = SessionCore(detector, config, "hands_free", lambda text: True)
    due: list[tuple[float, int, Any]] = []  # (virtual time, order, what to feed)
    order = 0
    outcome = Outcome([], [], [])
    seen: set[str] = set()

    def later(at: float, what: tuple[Any, ...]) -> None:
        nonlocal order
        order += 1
        heapq.heappush(due, (at, order, what))

    def handle(commands: list[Command], now: float) -> None:
        for command in commands:
            if isinstance(command, Transcribe) and command.purpose != "partial":
                text, took = work.words(command.audio)
                later(now + took, ("words", command.job, text, took))
            elif isinstance(command, JudgeTurn):
                probability, took = work.judge(command.audio)
                later(now + took, ("judged", command.job, probability))
            elif isinstance(command, StartReply):
                later(now + REPLY_AUDIO_S, ("audio", command.reply))
            elif isinstance(command, SayLine) and command.reply.purpose == "backchannel":
                outcome.backchannels.append(now)
        reply = core.reply
        if reply is not None and reply.committed and reply.id not in seen:
            seen.add(reply.id)
            outcome.ended_at_s.append(now)

    def feed(what: tuple[Any, ...], at: float) -> None:
        if what[0] == "words":
            handle(core.transcribed(what[1], what[2], what[3] * 1000, at), at)
        elif what[0] == "judged":
            handle(core.judged(what[1], what[2], at), at)
        elif what[0] == "audio":
            reply = what[1]
            if not reply.committed:
                if not reply.over:
                    later(at + FRAME / STT_SAMPLE_RATE, what)  # ready: waits for the commit
                return
            if not reply.over:
                core.reply_audio_ready(reply)
                reply.start_playing()
                outcome.heard_at_s.append(at)

    for start in range(0, len(trial.audio), FRAME):
        now = (start + FRAME) / STT_SAMPLE_RATE
        while due and due[0][0] <= now:
            at, _, what = heapq.heappop(due)
            feed(what, at)
        handle(core.audio(trial.audio[start : start + FRAME], now), now)
    return outcome


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 1),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
        "max": round(ordered[-1], 1),
    }


def evaluate(
    trials: list[Trial], vad: VADEngine, config: SessionConfig, work: _Work
) -> dict[str, Any]:
    """A false cut-off: Eva's reply began before the person had finished (they would hear
    her answer half a sentence). A turn end decided inside the pause and taken back when
    they went on, before any of the reply was heard, is counted apart."""
    delays: list[float] = []
    paused = paused_short = cut = cut_short = decided = decided_short = 0
    cut_elsewhere = never = backchannels = over_person = 0
    for trial in trials:
        outcome = run_trial(trial, vad, config, work)
        backchannels += len(outcome.backchannels)
        over_person += sum(any(a <= t <= b for a, b in trial.voiced) for t in outcome.backchannels)
        early = [t for t in outcome.heard_at_s if t < trial.speech_end_s]
        if trial.pause is not None:
            short = trial.pause[1] - trial.pause[0] <= SHORT_PAUSE_S
            paused += 1
            paused_short += short
            inside = any(trial.pause[0] <= t < trial.pause[1] for t in outcome.ended_at_s)
            decided += inside
            decided_short += inside and short
            if any(t < trial.pause[1] + 0.2 for t in early):  # before their voice is heard again
                cut += 1
                cut_short += short
                continue
        if early:
            cut_elsewhere += 1  # at a pause of the voice's own (a comma): not the one put in
            continue
        last = [t for t in outcome.ended_at_s if t >= trial.speech_end_s]
        if not last:
            never += 1
            continue
        delays.append((last[0] - trial.speech_end_s) * 1000)
    speech_s = sum(b - a for trial in trials for a, b in trial.voiced)
    return {
        "false_cutoff_rate_pauses_up_to_1s": round(cut_short / max(1, paused_short), 3),
        "false_cutoffs_pauses_up_to_1s": f"{cut_short}/{paused_short}",
        "false_cutoff_rate_all_pauses": round(cut / max(1, paused), 3),
        "false_cutoffs_all_pauses": f"{cut}/{paused}",
        "turn_end_decided_inside_the_pause_up_to_1s": f"{decided_short}/{paused_short}",
        "turn_end_decided_inside_the_pause_all": f"{decided}/{paused}",
        "cut_at_the_voices_own_pauses": cut_elsewhere,
        "never_ended": never,
        "end_of_turn_delay_ms": _summary(delays),
        "eva_backchannels": backchannels,
        "eva_backchannels_per_minute_of_speech": round(backchannels / (speech_s / 60), 2),
        "eva_backchannels_while_the_person_speaks": over_person,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=len(TURNS))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    settings = Settings()
    stt: STTEngine = registry.create("stt", settings.stt_backend, settings)
    vad: VADEngine = registry.create("vad", settings.vad_backend, settings)
    model: EndOfTurnEngine = registry.create("turn", "smart_turn", settings)
    stt.transcribe(np.zeros(STT_SAMPLE_RATE, dtype=np.float32))  # warm: no cold first trial
    model.probability_complete(np.zeros(STT_SAMPLE_RATE, dtype=np.float32))
    trials = make_trials(Speaker.packaged(), stt, args.turns)
    work = _Work(stt, model)
    result: dict[str, Any] = {
        "trials": len(trials),
        "paused": sum(t.kind == "paused" for t in trials),
    }
    config = session_config(settings, True)
    result["model_and_words"] = evaluate(trials, vad, config, work)
    alone = replace(config, policy=replace(config.policy, confirm=False))
    result["model_alone_when_confident"] = evaluate(trials, vad, alone, work)
    result["words_rule"] = evaluate(trials, vad, session_config(settings, False), work)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"turn-taking-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
