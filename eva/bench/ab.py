"""A/B of two server configurations in the same run, turns interleaved.

On a shared, noisy machine two runs minutes apart differ by more than most single changes
do; here two servers (A and B, each with its own environment) get the same never-seen
inputs in alternating order (A then B, then B then A), so drift hits both arms alike.

    python -m eva.bench.ab --b EVA_VAD_PAUSE_MS=96 --typed 20 --voice 10

Voice replies are cut after their first audio (only the time to it is compared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from eva.bench import core, report
from eva.bench.server import running_server
from eva.bench.voice import Speaker, Utterance, unique_utterances, voice_session
from eva.stats import percentile


def _env(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def _typed(base: str, message: str) -> dict[str, float]:
    with httpx.Client(timeout=60.0) as client:
        timings = core._stream_turn(client, base, message)
    return {
        "text_first_audio_ms": timings["client_first_audio_ms"],
        "first_clause_ms": timings.get("first_clause_ms", float("nan")),
        "tts_first_chunk_ms": timings.get("tts_first_chunk_ms", float("nan")),
        "llm_first_token_ms": timings.get("llm_first_token_ms", float("nan")),
    }


def _voice(base: str, utterance: Utterance) -> dict[str, float]:
    url = base.replace("http://", "ws://") + "/ws"
    turn = asyncio.run(voice_session(url, [utterance], listen_s=0.0))[0]
    if "failure" in turn:
        return {"failures": 1.0}
    return {k: float(v) for k, v in turn.items() if k in ("voice_to_voice_ms", "stt_ms")}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m eva.bench.ab")
    parser.add_argument("--a", nargs="*", default=[], help="NAME=value for server A")
    parser.add_argument("--b", nargs="*", default=[], help="NAME=value for server B")
    parser.add_argument("--typed", type=int, default=20)
    parser.add_argument("--voice", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else time.time_ns() % (2**32)
    rng = random.Random(seed)
    messages = core.unique_messages(args.typed, rng)
    speaker = Speaker.packaged()
    utterances = [Utterance(t, speaker.say(t)) for t in unique_utterances(args.voice, rng)]
    arms = {"A": _env(args.a), "B": _env(args.b)}
    raw: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    with ExitStack() as stack:
        bases = {
            name: stack.enter_context(running_server(None, None, env)).base
            for name, env in arms.items()
        }
        jobs: list[tuple[str, Any]] = [("typed", m) for m in messages]
        jobs += [("voice", u) for u in utterances]
        for index, (kind, item) in enumerate(jobs):
            order = ["A", "B"] if index % 2 == 0 else ["B", "A"]
            for arm in order:
                measured = _typed(bases[arm], item) if kind == "typed" else _voice(bases[arm], item)
                for name, value in measured.items():
                    raw[arm].setdefault(name, []).append(value)
    summaries = {
        arm: {name: report.summary(values) for name, values in measures.items()}
        for arm, measures in raw.items()
    }
    result = {"seed": seed, "arms": arms, "summary": summaries, "raw": raw}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    for name in sorted({n for measures in raw.values() for n in measures}):
        a = summaries["A"].get(name, {})
        b = summaries["B"].get(name, {})
        print(
            f"{name:22} A p50 {a.get('p50')} p95 {a.get('p95')} (n {a.get('n')})   "
            f"B p50 {b.get('p50')} p95 {b.get('p95')} (n {b.get('n')})"
        )
        arm_a, arm_b = raw["A"].get(name, []), raw["B"].get(name, [])
        pairs = [y - x for x, y in zip(arm_a, arm_b, strict=False)]
        if pairs:
            faster = sum(d < 0 for d in pairs)
            print(
                f"{'':22} paired B-A median {percentile(pairs, 50):.1f}, "
                f"B faster in {faster}/{len(pairs)}"
            )
    print(f"A={arms['A']} B={arms['B']} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
