"""Latency of typed turns, measured from a separate process over the HTTP API.

``eva bench`` starts an Eva server (or uses ``--url``), sends messages generated for this
run only (a fresh random seed and a nonce in each, so no cache of any kind can have seen
them), and reports medians and 95th percentiles:

- ``/chat`` latency_ms (whole typed turn, text only);
- text to first audio: client-side time from sending ``/chat/stream`` (audio on) to the
  first ``audio`` event, and the server's own ``first_audio_ms``;
- TTS first chunk for the first (short) clause of each reply, and for short clauses sent to
  ``/tts``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from eva.stats import percentile

_SUBJECTS = [
    "my sister",
    "my neighbour",
    "a friend from work",
    "my grandfather",
    "our dog",
    "my teacher",
    "the baker downstairs",
    "my cousin",
    "an old classmate",
    "my boss",
]
_EVENTS = [
    "started learning the cello",
    "moved to a small town",
    "ran a half marathon",
    "planted tomatoes",
    "lost their keys again",
    "adopted a kitten",
    "baked bread",
    "painted the kitchen yellow",
    "went camping by a lake",
    "fixed an old bicycle",
]
_ASKS = [
    "What do you think about that?",
    "Would you try it?",
    "Does that sound fun to you?",
    "How would you feel?",
    "What would you do?",
    "Any advice?",
]
# Short clauses (one to two seconds of speech), combined at random per run.
_OPENERS = ["Oh", "Hello", "Well", "Sure", "Good morning", "Of course", "Hmm", "Right"]
_NAMES = ["Maya", "Tom", "Aiko", "Lucas", "Ines", "Omar", "Greta", "Noor", "Pablo", "Zoe"]
_ENDINGS = ["how nice.", "I see.", "tell me more.", "that's lovely.", "good idea.", "welcome back."]
# How long a fresh server may take to load and warm its models before the run gives up.
_START_TIMEOUT_S = 180.0


def unique_messages(count: int, rng: random.Random) -> list[str]:
    messages: set[str] = set()
    while len(messages) < count:
        days = rng.randint(2, 400)
        messages.add(
            f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_EVENTS)} "
            f"{days} days ago. {rng.choice(_ASKS)}"
        )
    return sorted(messages, key=lambda _: rng.random())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(url: str | None) -> Iterator[str]:
    if url:
        yield url.rstrip("/")
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="eva-bench-") as data_dir:
        env = {**os.environ, "EVA_DATA_DIR": data_dir, "EVA_PORT": str(port)}
        log = Path(data_dir) / "server.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "eva.cli", "serve"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                _wait_ready(base, process, log)
                yield base
            finally:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1.0).json().get("ready"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    raise RuntimeError("the server was not ready in time")


def _stream_turn(client: httpx.Client, base: str, message: str) -> dict[str, float]:
    started = time.monotonic()
    first_audio: float | None = None
    done: dict[str, Any] = {}
    with client.stream(
        "POST", f"{base}/chat/stream", json={"message": message, "audio": True}
    ) as response:
        response.raise_for_status()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "audio" and first_audio is None:
                    first_audio = (time.monotonic() - started) * 1000.0
                elif event == "done":
                    done = json.loads(line[6:])
                elif event == "error":
                    raise RuntimeError(line[6:])
    timings = dict(done.get("timings", {}))
    timings["client_first_audio_ms"] = first_audio if first_audio is not None else float("nan")
    return timings


def _server_timing(response: httpx.Response) -> float:
    """The server's own first-chunk time, from its standard Server-Timing header."""
    header = response.headers.get("server-timing", "")
    return float(header.split("dur=")[1]) if "dur=" in header else float("nan")


def _summary(values: list[float]) -> dict[str, float]:
    clean = [v for v in values if v == v]  # drop NaN (a reply with no audio)
    if not clean:
        return {"n": 0}
    return {
        "n": len(clean),
        "p50": round(percentile(clean, 50), 1),
        "p95": round(percentile(clean, 95), 1),
        "max": round(max(clean), 1),
    }


def run(base: str, count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    chat_messages = unique_messages(count, rng)
    stream_messages = [m for m in unique_messages(count * 2, rng) if m not in chat_messages]
    stream_messages = stream_messages[:count]
    results: dict[str, list[float]] = {
        "chat_latency_ms": [],
        "chat_llm_first_token_ms": [],
        "stream_client_first_audio_ms": [],
        "stream_server_first_audio_ms": [],
        "stream_first_clause_ms": [],
        "stream_tts_first_chunk_ms": [],
        "tts_short_clause_request_ms": [],
        "tts_short_clause_first_chunk_ms": [],
    }
    with httpx.Client(timeout=60.0) as client:
        for message in chat_messages:
            reply = client.post(f"{base}/chat", json={"message": message})
            reply.raise_for_status()
            body = reply.json()
            results["chat_latency_ms"].append(body["latency_ms"])
            results["chat_llm_first_token_ms"].append(
                body["timings"].get("llm_first_token_ms", float("nan"))
            )
        for message in stream_messages:
            timings = _stream_turn(client, base, message)
            results["stream_client_first_audio_ms"].append(timings["client_first_audio_ms"])
            for key, name in (
                ("first_audio_ms", "stream_server_first_audio_ms"),
                ("first_clause_ms", "stream_first_clause_ms"),
                ("tts_first_chunk_ms", "stream_tts_first_chunk_ms"),
            ):
                results[name].append(timings.get(key, float("nan")))
        for _ in range(count):
            clause = f"{rng.choice(_OPENERS)} {rng.choice(_NAMES)}, {rng.choice(_ENDINGS)}"
            started = time.monotonic()
            response = client.post(f"{base}/tts", json={"text": clause})
            response.raise_for_status()
            results["tts_short_clause_request_ms"].append((time.monotonic() - started) * 1000)
            results["tts_short_clause_first_chunk_ms"].append(_server_timing(response))
        health = client.get(f"{base}/health").json()
    return {
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
        "backends": health.get("backends", {}),
        "messages": count,
        "seed": seed,
        "summary": {name: _summary(values) for name, values in results.items()},
        "raw": results,
    }


def markdown_table(report: dict[str, Any]) -> str:
    lines = ["| measure | n | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for name, s in report["summary"].items():
        lines.append(
            f"| {name} | {s.get('n', 0)} | {s.get('p50', '-')} | "
            f"{s.get('p95', '-')} | {s.get('max', '-')} |"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="a running Eva; default: start one")
    parser.add_argument("--messages", type=int, default=20, help="messages per measure")
    parser.add_argument("--seed", type=int, default=None, help="default: from the clock")
    parser.add_argument("--out", default="bench/results", help="where to write the JSON")
    parser.add_argument("--utterances", type=int, default=10, help="spoken turns over /ws")
    parser.add_argument("--skip-voice", action="store_true", help="typed turns only")


def main(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else time.time_ns() % (2**32)
    with running_server(args.url) as base:
        report = run(base, args.messages, seed)
        if not args.skip_voice:
            from eva.bench.voice import run_voice

            voice = run_voice(base, args.utterances, seed + 1)
            report["raw"].update(voice)
            report["summary"].update({name: _summary(v) for name, v in voice.items()})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"core-{stamp}.json").write_text(json.dumps(report, indent=2))
    table = markdown_table(report)
    (out / f"core-{stamp}.md").write_text(table + "\n")
    print(table)
    print(f"\nbackends: {report['backends']}\nwritten to {out}/core-{stamp}.json")
    return 0
