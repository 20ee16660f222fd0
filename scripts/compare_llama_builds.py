"""Speed of two llama.cpp builds on this machine, in one interleaved run (issue 10's ratio).

Each build's llama-server serves the same GGUF on 2 threads; requests alternate between
them, each with a prompt never sent before (random words from a fresh seed), so neither
build profits from a cached prefix. Reported per build: time to first streamed token, prompt
evaluation and generation tokens/s (llama-server's own timings), medians over the rounds,
and the ratio of the first build to the second.

    .venv/bin/python scripts/compare_llama_builds.py PORTABLE_DIR NATIVE_DIR [--model GGUF]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import time
from pathlib import Path

import httpx

from eva.bench.serve_process import free_port
from eva.native.llama import server_command

_READY_TIMEOUT_S = 120.0
_WORDS = (  # noqa: SIM905 (a list literal would take a line a word)
    "river morning quiet garden letter window travel music coffee winter friend story "
    "market mountain evening kitchen yellow bridge summer doctor engine forest candle "
    "harbor violin pocket meadow thunder silver ladder orange planet whisper"
).split()


def _start(directory: Path, model: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = server_command(model, port, threads=threads, ctx_size=2048, directory=directory)
    command += ["--parallel", "1"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"{directory}/llama-server did not start")


def _one_request(url: str, prompt: str, n_predict: int) -> dict[str, float]:
    body = {"prompt": prompt, "n_predict": n_predict, "stream": True, "cache_prompt": False,
            "temperature": 0.0, "ignore_eos": True}  # fmt: skip
    started = time.monotonic()
    first_token_s = None
    timings: dict[str, float] = {}
    with httpx.stream("POST", f"{url}/completion", json=body, timeout=300) as reply:
        for line in reply.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if first_token_s is None and event.get("content"):
                first_token_s = time.monotonic() - started
            if event.get("stop"):
                timings = event.get("timings", {})
    return {
        "first_token_ms": (first_token_s or 0.0) * 1000,
        "prompt_tokens_per_s": float(timings.get("prompt_per_second", 0.0)),
        "generated_tokens_per_s": float(timings.get("predicted_per_second", 0.0)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--model", type=Path, default=None, help="default: packaged SmolLM2")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--prompt-words", type=int, default=180)
    parser.add_argument("--n-predict", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.model is None:
        from eva.engines.llm_llamacpp import resolve_model_path

        args.model = resolve_model_path("smollm2")
    servers = [_start(d, args.model, args.threads) for d in (args.first, args.second)]
    rng = random.Random(time.time_ns())
    results: list[list[dict[str, float]]] = [[], []]
    try:
        for url in (s[1] for s in servers):  # one warm-up each: pages the weights in
            _one_request(url, "Hello", 4)
        for round_number in range(args.rounds):
            order = (0, 1) if round_number % 2 == 0 else (1, 0)
            for index in order:
                prompt = " ".join(rng.choice(_WORDS) for _ in range(args.prompt_words))
                results[index].append(_one_request(servers[index][1], prompt, args.n_predict))
    finally:
        for server, _ in servers:
            server.terminate()
            server.wait()
    print(f"model {args.model.name}, {args.threads} threads, {args.rounds} rounds, "
          f"{args.prompt_words}-word prompts, {args.n_predict} tokens generated")  # fmt: skip
    names = (args.first.name[:22], args.second.name[:22])
    print(f"{'measure (median)':28} {names[0]:>22} {names[1]:>22} {'ratio':>7}")
    for key in ("first_token_ms", "prompt_tokens_per_s", "generated_tokens_per_s"):
        a, b = (statistics.median(r[key] for r in results[i]) for i in (0, 1))
        print(f"{key:28} {a:22.1f} {b:22.1f} {a / b if b else float('nan'):7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
