"""The OpenAI-shaped routes, measured in the same run as Eva's own, on inputs of their own:

- ``/v1/realtime`` voice to voice: utterances made for this run streamed at real-time pace
  as ``input_audio_buffer.append`` events (PCM16 at 24 kHz), ``semantic_vad`` (Eva's own
  end of turn, as on ``/ws``) ending the turn; from the end of speech to the reply's first
  ``response.output_audio.delta``
  (the Realtime session says no acknowledgement unless asked, so that is the reply's own);
- ``/v1/audio/speech`` first byte: the time to the first byte of a streamed ``pcm``
  response for a short clause, beside ``/tts`` (whole WAV) on the same clauses.

``python -m eva.bench.openai_api`` compares ``/ws`` and ``/v1/realtime`` turn by turn,
interleaved, for the paired difference the protocols make.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

from eva.audio import resample_linear
from eva.bench import report
from eva.bench.server import running_server
from eva.bench.voice import (
    HELLO_TIMEOUT_S,
    LEAD_SILENCE_S,
    LISTEN_S,
    TURN_TIMEOUT_S,
    Speaker,
    Utterance,
    VoiceConnection,
    frame_schedule,
    one_turn,
    unique_utterances,
    word_error_rate,
)
from eva.engines.base import Int16Audio

REALTIME_RATE = 24_000
_FRAME = REALTIME_RATE * 40 // 1000  # 40 ms, as a browser sends


async def _append(socket: Any, pcm: Int16Audio) -> float:
    """``pcm`` (24 kHz) as append events at real-time pace; when the last one went."""
    started = time.monotonic()
    for index, due in enumerate(frame_schedule(len(pcm), _FRAME, REALTIME_RATE)):
        chunk = pcm[index * _FRAME : (index + 1) * _FRAME].astype("<i2").tobytes()
        event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}
        await socket.send(json.dumps(event))
        await asyncio.sleep(max(0.0, started + due - time.monotonic()))
    return time.monotonic()


async def _silence_forever(socket: Any) -> None:
    second = np.zeros(REALTIME_RATE, np.int16)
    while True:
        await _append(socket, second)


def _at_24k(pcm: Int16Audio) -> Int16Audio:
    return resample_linear(pcm.astype(np.float32), 16000, REALTIME_RATE).astype(np.int16)


class _Events:
    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self.socket:
                self.seen.append((time.monotonic(), json.loads(message)))
                self.changed.set()

    def first(self, kind: str, since: float) -> tuple[float, dict[str, Any]] | None:
        return next(((t, e) for t, e in self.seen if t >= since and e["type"] == kind), None)

    async def wait(self, kind: str, since: float, within: float) -> tuple[float, dict[str, Any]]:
        async with asyncio.timeout(within):
            while (found := self.first(kind, since)) is None:
                self.changed.clear()
                await self.changed.wait()
        return found


async def _turn(events: _Events, utterance: Utterance, listen_s: float) -> dict[str, Any]:
    socket = events.socket
    await _append(socket, np.zeros(int(REALTIME_RATE * LEAD_SILENCE_S), np.int16))
    speech_end = await _append(socket, _at_24k(utterance.pcm))
    tail = asyncio.create_task(_silence_forever(socket))
    try:
        audio_at, _ = await events.wait("response.output_audio.delta", speech_end, TURN_TIMEOUT_S)
        with contextlib.suppress(TimeoutError):
            await events.wait("response.done", speech_end, listen_s)
        if events.first("response.done", speech_end) is None:
            await socket.send(json.dumps({"type": "response.cancel"}))
        await events.wait("response.done", speech_end, TURN_TIMEOUT_S)
    finally:
        tail.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await tail
    error = events.first("error", speech_end)
    if error is not None:
        raise RuntimeError(f"server error: {error[1]['error']}")
    heard = events.first("conversation.item.input_audio_transcription.completed", speech_end)
    return {
        "realtime_voice_to_voice_ms": (audio_at - speech_end) * 1000.0,
        "realtime_wer": word_error_rate(utterance.text, heard[1]["transcript"] if heard else ""),
    }


async def _semantic_vad(events: _Events) -> None:
    """Eva's own end of turn, as on /ws: the difference is the protocol's alone."""
    await events.wait("session.created", 0.0, HELLO_TIMEOUT_S)
    detection = {"type": "semantic_vad", "eagerness": "auto"}
    update = {"type": "realtime", "audio": {"input": {"turn_detection": detection}}}
    await events.socket.send(json.dumps({"type": "session.update", "session": update}))
    await events.wait("session.updated", 0.0, HELLO_TIMEOUT_S)


async def realtime_session(
    base: str, utterances: Sequence[Utterance], listen_s: float
) -> dict[str, list[float]]:
    """One Realtime session, one turn per utterance; every figure of every turn."""
    url = base.replace("http://", "ws://") + "/v1/realtime?model=eva"
    results: dict[str, list[float]] = {"realtime_voice_to_voice_ms": [], "realtime_wer": []}
    async with websockets.connect(url, max_size=None) as socket:
        events = _Events(socket)
        reader = asyncio.create_task(events.read())
        try:
            await _semantic_vad(events)
            for utterance in utterances:
                for name, value in (await _turn(events, utterance, listen_s)).items():
                    results[name].append(value)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return results


def speech_first_bytes(base: str, clauses: Sequence[str]) -> dict[str, list[float]]:
    """``/v1/audio/speech`` for each clause: the first byte, and the whole response."""
    results: dict[str, list[float]] = {"speech_first_byte_ms": [], "speech_request_ms": []}
    body = {"model": "tts-1", "voice": "alloy", "response_format": "pcm"}
    with httpx.Client(timeout=60.0) as client:
        for clause in clauses:
            started = time.monotonic()
            first: float | None = None
            with client.stream(
                "POST", f"{base}/v1/audio/speech", json={**body, "input": clause}
            ) as r:
                r.raise_for_status()
                for chunk in r.iter_bytes():
                    if chunk and first is None:
                        first = time.monotonic()
            finished = time.monotonic()
            results["speech_first_byte_ms"].append(((first or finished) - started) * 1000.0)
            results["speech_request_ms"].append((finished - started) * 1000.0)
    return results


async def interleaved(
    base: str, pairs: Sequence[tuple[Utterance, Utterance]], listen_s: float
) -> dict[str, list[float]]:
    """One /ws session and one /v1/realtime session, their turns alternating (which goes
    first alternates too), each on an utterance of its own: drift of the machine falls on
    both alike, and the difference is the protocol's."""
    ws_url = base.replace("http://", "ws://") + "/ws"
    rt_url = base.replace("http://", "ws://") + "/v1/realtime?model=eva"
    results: dict[str, list[float]] = {"ws_voice_to_voice_ms": [],
                                       "realtime_voice_to_voice_ms": []}  # fmt: skip
    async with (
        websockets.connect(ws_url, max_size=None) as ws_socket,
        websockets.connect(rt_url, max_size=None) as rt_socket,
    ):
        ws = VoiceConnection(ws_socket)
        rt = _Events(rt_socket)
        readers = [asyncio.create_task(ws.read()), asyncio.create_task(rt.read())]
        try:
            await ws.wait("session.created", HELLO_TIMEOUT_S)
            await _semantic_vad(rt)
            for index, (for_ws, for_rt) in enumerate(pairs):
                turns = [("ws", for_ws), ("rt", for_rt)]
                for kind, utterance in turns if index % 2 == 0 else turns[::-1]:
                    if kind == "ws":
                        turn = await one_turn(ws, utterance, listen_s)
                        results["ws_voice_to_voice_ms"].append(turn["voice_to_voice_ms"])
                    else:
                        turn = await _turn(rt, utterance, listen_s)
                        results["realtime_voice_to_voice_ms"].append(
                            turn["realtime_voice_to_voice_ms"]
                        )
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    return results


def main() -> int:
    """``python -m eva.bench.openai_api --turns 16``: /ws against /v1/realtime, interleaved."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--turns", type=int, default=16, help="turns of each protocol")
    parser.add_argument("--url", default=None, help="a running Eva; default: start one")
    parser.add_argument("--listen-s", type=float, default=LISTEN_S)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    seed = time.time_ns() % (2**32)
    texts = unique_utterances(2 * args.turns, random.Random(seed))
    speaker = Speaker.packaged()
    spoken = [Utterance(text, speaker.say(text)) for text in texts]
    pairs = list(zip(spoken[: args.turns], spoken[args.turns :], strict=True))
    with running_server(args.url) as target:
        raw = asyncio.run(interleaved(target.base, pairs, args.listen_s))
    ws, rt = raw["ws_voice_to_voice_ms"], raw["realtime_voice_to_voice_ms"]
    differences = [b - a for a, b in zip(ws, rt, strict=True)]
    summaries = {
        "ws_voice_to_voice_ms": report.summary(ws),
        "realtime_voice_to_voice_ms": report.summary(rt),
        "realtime_minus_ws_ms": report.summary(differences),
    }
    result = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seed": seed,
        "cpus": os.cpu_count(),
        "summary": summaries,
        "raw": {**raw, "realtime_minus_ws_ms": differences},
    }
    out = Path(args.out) / f"openai-interleaved-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for name, summary in summaries.items():
        print(f"{name}: {summary}")
    print(f"json: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
