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

import json
import random
import time
from typing import Any

import httpx

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


def short_clauses(count: int, rng: random.Random) -> list[str]:
    return [
        f"{rng.choice(_OPENERS)} {rng.choice(_NAMES)}, {rng.choice(_ENDINGS)}" for _ in range(count)
    ]


def run_typed(
    base: str, chat_messages: list[str], stream_messages: list[str], clauses: list[str]
) -> dict[str, list[float]]:
    """Typed turns and short clauses, one at a time; every figure of every turn."""
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
        for clause in clauses:
            started = time.monotonic()
            response = client.post(f"{base}/tts", json={"text": clause})
            response.raise_for_status()
            results["tts_short_clause_request_ms"].append((time.monotonic() - started) * 1000)
            results["tts_short_clause_first_chunk_ms"].append(_server_timing(response))
    return results


def backends(base: str) -> dict[str, Any]:
    return dict(httpx.get(f"{base}/health", timeout=10.0).json().get("backends", {}))
