"""``eva bench``: the whole run, from generating its inputs to the JSON, table and plots.

1. In a background thread while the server starts: load the same models into this process
   for the sequential baseline, and speak every utterance of the run with Eva's voice.
2. Against the server (started here unless ``--url``), one thing at a time: typed turns,
   spoken turns at each concurrency level, barge-ins; the server's memory is sampled all
   along.
3. The server idle (stopped, when the bench started it): the baseline on the same inputs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eva.bench import core, openai_api, plots, report
from eva.bench.baseline import SequentialPipeline, run_baseline
from eva.bench.server import MemorySampler, running_server
from eva.bench.voice import (
    LISTEN_S,
    Speaker,
    Utterance,
    barge_in,
    concurrent_sessions,
    unique_utterances,
    voice_session,
)
from eva.config import Settings

# --quick: a couple of turns of everything, two concurrency levels, replies cut after their
# first audio; under a minute here including the server's start.
QUICK = {
    "messages": 3,
    "utterances": 2,
    "concurrency": "1,2",
    "turns_per_session": 1,
    "barge_ins": 0,
    "listen_s": 0.0,
    "realtime_utterances": 2,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="a running Eva; default: start one")
    parser.add_argument(
        "--server-pid", type=int, default=None, help="with --url: its process, for memory"
    )
    parser.add_argument("--quick", action="store_true", help="a small run, under a minute")
    parser.add_argument("--messages", type=int, default=20, help="typed messages per measure")
    parser.add_argument(
        "--utterances", type=int, default=12, help="spoken turns of the single session"
    )
    parser.add_argument(
        "--concurrency",
        default="1,2,4,8",
        help="simultaneous voice sessions, comma separated (1 = the --utterances turns)",
    )
    parser.add_argument(
        "--turns-per-session", type=int, default=3, help="spoken turns per session above 1"
    )
    parser.add_argument(
        "--listen-s",
        type=float,
        default=LISTEN_S,
        help="seconds of each spoken reply heard before the next turn (0: to its first audio)",
    )
    parser.add_argument("--barge-ins", type=int, default=4, help="barge-in trials")
    parser.add_argument(
        "--realtime-utterances",
        type=int,
        default=6,
        help="spoken turns over /v1/realtime (OpenAI's protocol), beside /ws",
    )
    parser.add_argument("--skip-voice", action="store_true", help="typed turns only")
    parser.add_argument(
        "--turn-taking",
        choices=("also", "only", "skip"),
        default="also",
        help="the turn-taking benchmark (eva/bench/turn_taking.py), in this process",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="no sequential baseline")
    parser.add_argument("--seed", type=int, default=None, help="default: from the clock")
    parser.add_argument("--out", default="bench/results", help="where to write the results")


def _levels(text: str) -> list[int]:
    levels = sorted({int(part) for part in text.split(",") if part.strip()})
    if not levels or levels[0] < 1:
        raise ValueError(f"--concurrency needs positive numbers, got {text!r}")
    return levels


def _prepare(
    settings: Settings, texts: list[str], baseline: bool
) -> tuple[SequentialPipeline | None, list[Utterance]]:
    pipeline = SequentialPipeline.load(settings) if baseline else None
    if pipeline is not None:
        tts, voice = pipeline.engines.tts, pipeline.voice
    else:
        from eva.engines import registry
        from eva.engines.voices import VoiceCatalog

        tts = VoiceCatalog([registry.create("tts", "piper", settings)], "", settings.language)
        voice = tts.info(None)
    speaker = Speaker(tts, voice.id, voice.sample_rate)
    return pipeline, [Utterance(text, speaker.say(text)) for text in texts]


def _voice(
    base: str, args: argparse.Namespace, utterances: list[Utterance], levels: list[int]
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    url = base.replace("http://", "ws://") + "/ws"
    pending = list(utterances)
    aggregated = []
    for sessions in levels:
        turns = args.utterances if sessions == 1 else args.turns_per_session
        plan = [[pending.pop() for _ in range(turns)] for _ in range(sessions)]
        if sessions == 1:
            results = asyncio.run(voice_session(url, plan[0], listen_s=args.listen_s))
        else:
            results = asyncio.run(concurrent_sessions(url, plan, listen_s=args.listen_s))
        aggregated.append(report.aggregate_level(sessions, results))
        print(
            f"  {sessions} session(s): {aggregated[-1]['summary']['voice_to_voice_ms']}, "
            f"{aggregated[-1]['failures']} failed",
            flush=True,
        )
    barges: dict[str, list[float]] = {}
    if args.barge_ins and utterances:
        interruption = utterances[-1].pcm  # spoken over the reply: any sentence will do
        for _ in range(args.barge_ins):
            for name, value in asyncio.run(barge_in(url, interruption)).items():
                barges.setdefault(name, []).append(value)
    return aggregated, barges


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    levels = [] if args.skip_voice else _levels(args.concurrency)
    seed = args.seed if args.seed is not None else time.time_ns() % (2**32)
    rng = random.Random(seed)
    messages = core.unique_messages(args.messages * 2, rng)
    chat_messages, stream_messages = messages[: args.messages], messages[args.messages :]
    clauses = core.short_clauses(args.messages, rng)
    spoken_turns = sum(args.utterances if n == 1 else n * args.turns_per_session for n in levels)
    realtime_turns = args.realtime_utterances if levels else 0
    texts = unique_utterances(spoken_turns + realtime_turns, rng)
    settings = Settings()
    load_before = os.getloadavg()
    with ThreadPoolExecutor(1) as prep:
        prepared = prep.submit(_prepare, settings, texts, not args.skip_baseline)
        with running_server(args.url, args.server_pid) as target:
            pipeline, spoken = prepared.result()
            utterances, realtime_utterances = spoken[:spoken_turns], spoken[spoken_turns:]
            print(f"bench against {target.base} (seed {seed})", flush=True)
            with MemorySampler(target.pid) as memory:
                raw = core.run_typed(target.base, chat_messages, stream_messages, clauses)
                raw.update(openai_api.speech_first_bytes(target.base, clauses))
                print("  typed turns done", flush=True)
                levels_report, barges = _voice(target.base, args, utterances, levels)
                raw.update(barges)
                if realtime_utterances:
                    raw.update(asyncio.run(openai_api.realtime_session(
                        target.base, realtime_utterances, args.listen_s)))  # fmt: skip
                    print("  /v1/realtime turns done", flush=True)
                served_by = core.backends(target.base)
    if levels_report and levels_report[0]["sessions"] == 1:
        raw.update(levels_report[0]["raw"])
    if pipeline is not None:
        print("  sequential baseline...", flush=True)
        try:
            single = [u for u in utterances[-args.utterances :]] if levels else []
            raw.update(run_baseline(pipeline, stream_messages, clauses, single))
        finally:
            pipeline.close()
    summaries = {name: report.summary(values) for name, values in raw.items()}
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": "quick" if args.quick else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": sys.platform,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "backends": served_by,
        "seed": seed,
        "inputs": {
            "messages": args.messages,
            "utterances": args.utterances,
            "concurrency": levels,
            "turns_per_session": args.turns_per_session,
            "barge_ins": args.barge_ins,
            "realtime_utterances": realtime_turns,
            "listen_s": args.listen_s,
        },
        "summary": report.with_ratios(summaries),
        "concurrency": levels_report,
        "memory": memory.report(),
        "raw": raw,
    }


def _without_nan(value: Any) -> Any:
    """NaN (a turn without that figure) as null: NaN is not JSON, and other tools reject it."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    return value


def write(result: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    paths = {
        "json": out / f"{stem}.json",
        "table": out / f"{stem}.md",
        "stages": out / f"{stem}-stages.png",
        "concurrency": out / f"{stem}-concurrency.png",
    }
    paths["json"].write_text(json.dumps(_without_nan(result), indent=2, allow_nan=False))
    paths["table"].write_text(report.markdown_table(result) + "\n")
    title = f"eva bench ({result['mode']}, {result['started']}, {result['machine']['cpus']} CPUs)"
    plots.stage_plot(result["raw"], paths["stages"], f"Where the time goes: {title}")
    plots.concurrency_plot(
        result["concurrency"],
        paths["concurrency"],
        f"Voice turns against load: {title}",
        result["summary"].get("baseline_voice_to_voice_ms", {}).get("p50"),
    )
    return {name: path for name, path in paths.items() if path.exists()}


def main(args: argparse.Namespace) -> int:
    from eva.bench import turn_taking

    turns = ["--turns", "6"] if args.quick else []
    if args.turn_taking == "only":
        return turn_taking.main(["--out", args.out, *turns])
    result = run(args)
    paths = write(result, Path(args.out))
    print(report.markdown_table(result))
    print(f"\nbackends: {result['backends']}")
    for name, path in paths.items():
        print(f"{name}: {path}")
    if args.turn_taking == "also":
        return turn_taking.main(["--out", args.out, *turns])
    return 0
