"""``eva loadtest``: many concurrent /ws sessions against one server, for minutes.

Typed sessions send a turn, read the whole reply (text and paced audio) and, after a short
think time, send the next one. The mixed form adds voice sessions that stream a spoken
question at real-time pace like a microphone (and silence while Eva answers), and idle
connections that only have to stay open. Every message is made for this run (a nonce in
each), so no cache can have seen it.

Reported: turns done, failures (any ``error`` event, a disconnect, or a turn over its
timeout), latency percentiles from the client's side (first text, first audio, done), and
the server's resident memory sampled over time (when the harness started the server).
At the end of the run, turns still in flight are interrupted (not failures: counted as
``cut_at_end``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

from eva.bench.playback import PlaybackGaps
from eva.bench.serve_process import ServedCluster, ServedEva, rss_bytes
from eva.stats import percentile

FRAME_SAMPLES = 640  # 40 ms of 16 kHz microphone audio, what a browser worklet sends
# A turn waits behind every other session's turn for the one LLM thread: with 50 sessions
# on two cores that is minutes, so only a reply that never comes is a failure.
TURN_TIMEOUT_S = 300.0
# How long the end of the run waits for interrupted turns to say response.done.
_DRAIN_TIMEOUT_S = 60.0
# A person reads or listens before typing again.
THINK_S = (1.0, 4.0)
RSS_EVERY_S = 1.0
# Every session connects in the first seconds and asks at once: the turns asked in this
# first stretch of the run are also reported apart (the rest is the load as it settles).
BUSY_START_S = 20.0
_CONNECT_TIMEOUT_S = 60.0
# The target for telling a refused person "busy"; the refusals slower than this are
# listed with when they happened and what was refused (a herd, a stall, the start).
REFUSAL_TARGET_MS = 100.0

_TOPICS = ["the sea", "a garden", "old trains", "winter", "bread", "music", "a lost cat"]
_ASKS = ["Say one kind thing about", "Tell me a short fact about", "What do you like about"]


class Refused(Exception):
    """Eva said "busy" (a turn or a new session): not a failure, if it said so at once."""

    def __init__(self, retry_after_s: float, refused_in_ms: float, kind: str) -> None:
        super().__init__(f"busy, retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.refused_in_ms = refused_in_ms
        self.kind = kind  # "conversation" (a new session) or "turn"


@dataclass
class Tally:
    done: int = 0
    cut_at_end: int = 0
    failures: list[str] = field(default_factory=list)
    refused_in_ms: list[float] = field(default_factory=list)  # from asking to "busy"
    ack_audio_ms: list[float] = field(default_factory=list)  # "Mm.", apart from the reply
    first_text_ms: list[float] = field(default_factory=list)
    done_ms: list[float] = field(default_factory=list)
    gap_ms: list[float] = field(default_factory=list)  # each audible gap in a reply's voice
    gap_after_ms: list[float] = field(default_factory=list)  # the reply's speech before it
    replies_with_gap: int = 0
    # (when the turn was asked, on the monotonic clock; its first audio in ms): where in
    # the run the slow ones fall (a busy start, or all along), and the first audio's figures
    first_audio_when: list[tuple[float, float]] = field(default_factory=list)
    # (when it was asked, on the monotonic clock; what was refused; ms): those over target
    slow_refusals: list[tuple[float, str, float]] = field(default_factory=list)

    def refusal(self, refused: Refused) -> None:
        self.refused_in_ms.append(refused.refused_in_ms)
        if refused.refused_in_ms > REFUSAL_TARGET_MS:
            asked = time.monotonic() - refused.refused_in_ms / 1000
            self.slow_refusals.append((asked, refused.kind, refused.refused_in_ms))


class _Session:
    """One /ws connection whose reader sorts what arrives into the turn being waited for."""

    def __init__(self, socket: Any, rate: int) -> None:
        self.socket = socket
        self.rate = rate  # of Eva's voice
        self.events: asyncio.Queue[tuple[float, str, dict[str, Any]]] = asyncio.Queue()

    @classmethod
    async def open(cls, url: str) -> _Session:
        asked = time.monotonic()
        async with asyncio.timeout(_CONNECT_TIMEOUT_S):
            try:
                socket = await websockets.connect(url, max_size=2**24, open_timeout=None)
            except websockets.InvalidStatus as refused:  # a balancer with no worker free
                if refused.response.status_code != 503:
                    raise
                retry = float(refused.response.headers.get("Retry-After", "1"))
                raise Refused(retry, (time.monotonic() - asked) * 1000, "conversation") from None
            created = json.loads(await socket.recv())
        if created.get("type") == "error" and created.get("code") == "busy":
            await socket.close()
            raise Refused(
                created["retry_after_s"], (time.monotonic() - asked) * 1000, "conversation"
            )
        if created.get("type") != "session.created":
            raise RuntimeError(f"unexpected first event {created}")
        return cls(socket, created["output_audio"]["sample_rate"])

    @classmethod
    async def admitted(cls, url: str, until: float, tally: Tally) -> _Session | None:
        """A session, asking again as long as Eva says "busy" and the run lasts."""
        while True:
            try:
                return await cls.open(url)
            except Refused as refused:
                tally.refusal(refused)
                if time.monotonic() + refused.retry_after_s >= until:
                    return None
                await asyncio.sleep(refused.retry_after_s)

    async def read(self) -> None:
        try:
            async for message in self.socket:
                now = time.monotonic()
                if isinstance(message, bytes):
                    self.events.put_nowait((now, "audio", {"bytes": len(message)}))
                else:
                    event = json.loads(message)
                    self.events.put_nowait((now, event["type"], event))
        except websockets.ConnectionClosed:
            pass
        self.events.put_nowait((time.monotonic(), "closed", {}))

    async def reply(self, since: float, tally: Tally, deadline: float) -> bool:
        """Read one reply to its response.done; False when the run ended first. Audio of
        an acknowledgement ("Mm.", its own response with a ``purpose``) is timed apart,
        never as the reply's first audio; the gaps in the reply's voice are counted as the
        page's player would make them."""
        first_text = first_audio = first_ack = heard_stop = None
        heard = PlaybackGaps(self.rate)
        ack_bytes = 0  # of audio still to come that is the acknowledgement (16-bit PCM)
        async with asyncio.timeout(TURN_TIMEOUT_S):
            while True:
                remaining = deadline - time.monotonic()
                try:
                    at, kind, event = await asyncio.wait_for(self.events.get(), max(remaining, 0))
                except TimeoutError:
                    return False
                if kind == "speech.stopped":
                    heard_stop = at  # Eva heard a pause: a spoken turn is refused from here
                if at < since and kind not in ("closed", "error"):
                    # still arriving for an earlier turn (one refused after its "Mm."), or
                    # sent before the person finished speaking: not this turn's reply
                    continue
                if kind == "response.ack":  # the next `samples` of audio are "Mm."
                    ack_bytes += 2 * int(event.get("samples", 0))
                elif kind == "response.text.delta" and first_text is None:
                    first_text = at
                elif kind == "audio" and ack_bytes > 0:
                    first_ack = first_ack or at
                    ack_bytes -= event["bytes"]
                elif kind == "audio":
                    first_audio = first_audio or at
                    heard.arrived(at, event["bytes"])
                elif kind == "error" and event.get("code") == "busy":
                    asked = since if heard_stop is None else heard_stop
                    raise Refused(event["retry_after_s"], (at - asked) * 1000, "turn")
                elif kind == "error":
                    raise RuntimeError(f"error event {event.get('code')}: {event.get('message')}")
                elif kind == "closed":
                    raise RuntimeError(f"disconnected (close code {self.socket.close_code})")
                elif kind == "response.done":
                    tally.done += 1
                    if first_ack is not None:
                        tally.ack_audio_ms.append((first_ack - since) * 1000)
                    tally.done_ms.append((at - since) * 1000)
                    tally.gap_ms += [gap * 1000 for gap in heard.gaps_s]
                    tally.gap_after_ms += [after * 1000 for after in heard.gaps_after_s]
                    tally.replies_with_gap += bool(heard.gaps_s)
                    if first_text is not None:
                        tally.first_text_ms.append((first_text - since) * 1000)
                    if first_audio is not None:
                        tally.first_audio_when.append((since, (first_audio - since) * 1000))
                    return True

    async def drain(self, tally: Tally) -> None:
        """The run is over: stop the reply in flight and wait for its response.done."""
        await self.socket.send(json.dumps({"type": "interrupt"}))
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            while True:
                _, kind, event = await self.events.get()
                if kind == "closed":
                    raise RuntimeError("disconnected while stopping")
                if kind == "response.done":
                    tally.cut_at_end += 1
                    return
                if kind == "error" and event.get("code") == "busy":
                    return  # the last turn was refused: there is no reply to stop

    async def close(self) -> None:
        await self.socket.close()


async def typed_session(url: str, index: int, until: float, tally: Tally, nonce: str) -> None:
    rng = random.Random(f"{nonce}-{index}")
    try:
        session = await _Session.admitted(url, until, tally)
    except (OSError, TimeoutError, RuntimeError, websockets.WebSocketException) as exc:
        tally.failures.append(f"typed {index}: connect: {exc!r}")
        return
    if session is None:
        return  # refused until the end of the run
    reader = asyncio.create_task(session.read())
    try:
        turn = 0
        while time.monotonic() < until:
            text = f"{rng.choice(_ASKS)} {rng.choice(_TOPICS)} ({nonce} {index}.{turn})."
            sent = time.monotonic()
            await session.socket.send(json.dumps({"type": "text", "text": text}))
            try:
                if not await session.reply(sent, tally, until):
                    await session.drain(tally)
                    break
            except Refused as refused:  # asked again as told, with a new message
                tally.refusal(refused)
                await asyncio.sleep(refused.retry_after_s)
            turn += 1
            await asyncio.sleep(min(rng.uniform(*THINK_S), max(0.0, until - time.monotonic())))
    except (RuntimeError, TimeoutError, websockets.WebSocketException, OSError) as exc:
        tally.failures.append(f"typed {index}: {exc!r}")
    finally:
        with contextlib.suppress(Exception):
            await session.close()
        await asyncio.gather(reader, return_exceptions=True)


async def _stream(socket: Any, pcm: np.ndarray) -> float:
    """Send ``pcm`` at real-time pace in 40 ms frames; returns when the last one went."""
    started = time.monotonic()
    for index, start in enumerate(range(0, len(pcm), FRAME_SAMPLES)):
        await socket.send(pcm[start : start + FRAME_SAMPLES].astype("<i2").tobytes())
        due = started + (index + 1) * FRAME_SAMPLES / 16000
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    return time.monotonic()


async def _silence_forever(socket: Any) -> None:
    """A live microphone keeps sending while Eva answers."""
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            await _stream(socket, np.zeros(16000, np.int16))


async def voice_session(
    url: str, index: int, until: float, tally: Tally, utterances: list[np.ndarray]
) -> None:
    try:
        session = await _Session.admitted(url, until, tally)
    except (OSError, TimeoutError, RuntimeError, websockets.WebSocketException) as exc:
        tally.failures.append(f"voice {index}: connect: {exc!r}")
        return
    if session is None:
        return
    reader = asyncio.create_task(session.read())
    silence: asyncio.Task[None] | None = None
    try:
        await _stream(session.socket, np.zeros(8000, np.int16))
        turn = 0
        while time.monotonic() < until:
            spoken = utterances[(index + turn) % len(utterances)]
            speech_end = await _stream(session.socket, spoken)
            silence = asyncio.create_task(_silence_forever(session.socket))
            try:
                if not await session.reply(speech_end, tally, until):
                    await session.drain(tally)
                    break
            except Refused as refused:  # said again after the wait, like a person would
                tally.refusal(refused)
                await asyncio.sleep(refused.retry_after_s)
            silence.cancel()
            await asyncio.gather(silence, return_exceptions=True)
            silence = None
            turn += 1
    except (RuntimeError, TimeoutError, websockets.WebSocketException, OSError) as exc:
        tally.failures.append(f"voice {index}: {exc!r}")
    finally:
        if silence is not None:
            silence.cancel()
            await asyncio.gather(silence, return_exceptions=True)
        with contextlib.suppress(Exception):
            await session.close()
        await asyncio.gather(reader, return_exceptions=True)


async def idle_connection(url: str, index: int, until: float, failures: list[str]) -> None:
    """Connects, says nothing for the whole run, then must still get a pong."""
    try:
        session = await _Session.open(url)
    except Refused:
        return  # no room for a connection that would say nothing: as it should be
    except (OSError, TimeoutError, RuntimeError, websockets.WebSocketException) as exc:
        failures.append(f"idle {index}: connect: {exc!r}")
        return
    reader = asyncio.create_task(session.read())
    try:
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        await session.socket.send(json.dumps({"type": "ping"}))
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            while True:
                _, kind, _ = await session.events.get()
                if kind == "pong":
                    break
                if kind in ("closed", "error"):
                    raise RuntimeError(f"idle connection got {kind}")
    except (RuntimeError, TimeoutError, websockets.WebSocketException, OSError) as exc:
        failures.append(f"idle {index}: {exc!r}")
    finally:
        with contextlib.suppress(Exception):
            await session.close()
        await asyncio.gather(reader, return_exceptions=True)


async def _sample_rss(pid: int | None, samples: list[tuple[float, int]], started: float) -> None:
    if pid is None:
        return
    while True:
        samples.append((round(time.monotonic() - started, 1), rss_bytes(pid)))
        await asyncio.sleep(RSS_EVERY_S)


async def _sample_capacity(base: str, samples: list[dict[str, Any]], started: float) -> None:
    """The model's queue as the server reports it, once a second: how many turns it ran
    at once, how many it let in, how many waited."""
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                capacity = (await http.get(f"{base}/health")).json().get("capacity") or {}
                if capacity:
                    samples.append({"t": round(time.monotonic() - started, 1), **capacity})
            await asyncio.sleep(RSS_EVERY_S)


def capacity_report(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The share of the run with each number of turns on the model, and the limit's."""
    if not samples:
        return {"sampled": False}

    def shares(key: str) -> dict[str, float]:
        counts: dict[str, int] = {}
        for sample in samples:
            value = str(sample.get(key))
            counts[value] = counts.get(value, 0) + 1
        return {k: round(v / len(samples), 3) for k, v in sorted(counts.items())}

    waiting = [s.get("turns_waiting_spoken", 0) + s.get("turns_waiting_typed", 0) for s in samples]
    return {
        "sampled": True,
        "samples": len(samples),
        "turns_running": shares("turns_running"),
        "turns_limit": shares("turns_limit"),
        "turns_waiting_max": max(waiting),
        "turn_hold_s_last": samples[-1].get("turn_hold_s"),
    }


async def _worker_report(http: httpx.AsyncClient, base: str) -> dict[str, Any]:
    """What one worker of a cluster did, and the capacity it reported."""
    stats = (await http.get(f"{base}/stats")).json()
    capacity = (await http.get(f"{base}/health")).json().get("capacity") or {}
    turns = stats.get("stages", {}).get("total_ms", {}).get("count", 0)
    return {"url": base, "turns": turns, "capacity": capacity}


def channel_report(tally: Tally, started: float) -> dict[str, Any]:
    """One kind of session's figures; ``started``: the run's start, on the same clock."""
    timeline = [(round(asked - started, 1), round(ms, 1)) for asked, ms in tally.first_audio_when]
    return {
        "turns_done": tally.done,
        "first_text_ms": summary(tally.first_text_ms),
        "first_audio_ms": summary([ms for _, ms in tally.first_audio_when]),
        "first_audio_after_busy_start_ms": summary(
            [ms for at, ms in timeline if at >= BUSY_START_S]
        ),
        "first_audio_timeline": timeline,
        "ack_audio_ms": summary(tally.ack_audio_ms),
        "done_ms": summary(tally.done_ms),
        "replies_with_gap": tally.replies_with_gap,
        "gap_ms": summary(tally.gap_ms),
        "gap_after_ms": summary(tally.gap_after_ms),
    }


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
    }


def memory_report(samples: list[tuple[float, int]]) -> dict[str, Any]:
    """Peak RSS, and whether it is flat after warm-up: the mean of the last third of the
    samples against the mean of the middle third."""
    if not samples:
        return {"sampled": False}
    values = [rss for _, rss in samples]
    third = max(1, len(values) // 3)
    middle = values[third : 2 * third] or values
    last = values[2 * third :] or values
    middle_mean, last_mean = sum(middle) / len(middle), sum(last) / len(last)
    return {
        "sampled": True,
        "peak_mb": round(max(values) / 2**20, 1),
        "start_mb": round(values[0] / 2**20, 1),
        "middle_third_mean_mb": round(middle_mean / 2**20, 1),
        "last_third_mean_mb": round(last_mean / 2**20, 1),
        "last_vs_middle_pct": round((last_mean / middle_mean - 1) * 100, 2),
        "samples": [(t, round(rss / 2**20, 1)) for t, rss in samples],
    }


async def run_load(
    url: str,
    *,
    sessions: int,
    duration_s: float,
    voice_sessions: int = 0,
    idle: int = 0,
    utterances: list[np.ndarray] | None = None,
    server_pid: int | None = None,
    workers: list[str] | None = None,
) -> dict[str, Any]:
    """``workers``: the base URLs of a cluster's workers behind ``url``, for the split."""
    nonce = f"{random.getrandbits(32):08x}"
    typed, voiced = Tally(), Tally()
    idle_failures: list[str] = []
    rss: list[tuple[float, int]] = []
    started = time.monotonic()
    until = started + duration_s
    sampler = asyncio.create_task(_sample_rss(server_pid, rss, started))
    base = url.replace("ws://", "http://").removesuffix("/ws")
    queue: list[dict[str, Any]] = []
    watcher = asyncio.create_task(_sample_capacity(base, queue, started))
    # Voice sessions connect first: a person at the microphone opens the page before the
    # crowd of typists (and the conversation cap admits in arrival order).
    work = [voice_session(url, n, until, voiced, utterances or []) for n in range(voice_sessions)]
    work += [typed_session(url, n, until, typed, nonce) for n in range(sessions)]
    work += [idle_connection(url, n, until, idle_failures) for n in range(idle)]
    await asyncio.gather(*work)
    sampler.cancel()
    watcher.cancel()
    await asyncio.gather(sampler, watcher, return_exceptions=True)
    failures = typed.failures + voiced.failures + idle_failures
    async with httpx.AsyncClient(timeout=30) as http:  # the server's own view of the stages
        server_stats = (await http.get(f"{base}/stats")).json()
        split = [await _worker_report(http, worker) for worker in workers or []]
    refused = typed.refused_in_ms + voiced.refused_in_ms
    slow = sorted(typed.slow_refusals + voiced.slow_refusals)
    return {
        "sessions": {"typed": sessions, "voice": voice_sessions, "idle": idle},
        "duration_s": duration_s,
        "elapsed_s": round(time.monotonic() - started, 1),
        "turns_done": typed.done + voiced.done,
        "cut_at_end": typed.cut_at_end + voiced.cut_at_end,
        "failures": len(failures),
        "failure_details": failures[:50],
        "typed": channel_report(typed, started),
        "voice": channel_report(voiced, started),
        "refused": {
            "typed": len(typed.refused_in_ms),
            "voice": len(voiced.refused_in_ms),
            "told_in_ms": summary(refused),
            "typed_told_in_ms": summary(typed.refused_in_ms),
            # from when Eva heard the person pause (speech.stopped): she cannot know before
            "voice_told_in_ms": summary(voiced.refused_in_ms),
            "over_target": [(round(at - started, 1), kind, round(ms, 1)) for at, kind, ms in slow],
        },
        "workers": split,
        "server_rss": memory_report(rss),
        "model_queue": capacity_report(queue),
        "server_stages": server_stats.get("stages", {}),
        "server_errors": server_stats.get("errors", {}),
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["sessions"]
    memory = report["server_rss"]
    refused = report["refused"]
    lines = [
        f"# eva loadtest ({report['form']})",
        "",
        f"{s['typed']} typed sessions, {s['voice']} voice sessions, {s['idle']} idle "
        f"connections, {report['duration_s']:.0f} s on {report['machine']['cpus']} CPUs.",
        "",
        f"- turns done: {report['turns_done']} (cut at the end: {report['cut_at_end']})",
        f"- failures: {report['failures']}",
        f'- refused ("busy", asked again after Retry-After): {refused["typed"]} '
        f"typed, {refused['voice']} voice; told in "
        f"{_brief(refused['told_in_ms'])} (typed {_brief(refused.get('typed_told_in_ms', {}))}; "
        f"voice, from the pause heard, {_brief(refused.get('voice_told_in_ms', {}))})",
    ]
    if refused.get("over_target"):
        lines.append(
            f"- told after more than {REFUSAL_TARGET_MS:.0f} ms: "
            + ", ".join(f"{kind} at {at} s ({ms} ms)" for at, kind, ms in refused["over_target"])
        )
    for worker in report.get("workers", []):
        capacity = worker["capacity"]
        lines.append(
            f"- worker {worker['url']}: {worker['turns']} turns; reported "
            f"{capacity.get('max_conversations')} conversations, "
            f"{capacity.get('llm_slots')} model slots, hold {capacity.get('turn_hold_s')} s"
        )
    if memory.get("sampled"):
        lines.append(
            f"- server RSS: start {memory['start_mb']} MB, peak {memory['peak_mb']} MB, "
            f"middle third {memory['middle_third_mean_mb']} MB, last third "
            f"{memory['last_third_mean_mb']} MB ({memory['last_vs_middle_pct']:+.2f} %)"
        )
    queue = report.get("model_queue", {})
    if queue.get("sampled"):
        lines.append(
            f"- the model's queue, share of the run: turns running {queue['turns_running']}, "
            f"let in at once {queue['turns_limit']}; most waiting {queue['turns_waiting_max']}"
        )
    for kind in ("typed", "voice"):
        channel = report[kind]
        lines.append(
            f"- gaps heard in the voice ({kind}): {channel['replies_with_gap']} of "
            f"{channel['turns_done']} replies; each gap {_brief(channel['gap_ms'])}; "
            f"after {_brief(channel['gap_after_ms'])} of the reply's speech"
        )
    lines += [
        "",
        "| sessions | measure | n | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("typed", "voice"):
        measures = ("first_text_ms", "first_audio_ms", "first_audio_after_busy_start_ms",
                    "ack_audio_ms", "done_ms")  # fmt: skip
        for measure in measures:
            v = report[kind][measure]
            if v.get("n"):
                lines.append(
                    f"| {kind} | {measure} | {v['n']} | {v['p50']} | {v['p95']} | "
                    f"{v['p99']} | {v['max']} |"
                )
    return "\n".join(lines) + "\n"


def _brief(values: dict[str, float]) -> str:
    if not values.get("n"):
        return "-"
    return f"p50 {values['p50']} ms, p95 {values['p95']} ms, max {values['max']} ms"


def _utterances(count: int) -> list[np.ndarray]:
    from eva.bench.voice import Speaker, unique_utterances

    speaker = Speaker.packaged()
    return [speaker.say(text) for text in unique_utterances(count, random.Random())]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="a running Eva; default: start one")
    parser.add_argument("--sessions", type=int, default=50, help="typed /ws sessions")
    parser.add_argument("--duration", type=float, default=240.0, help="seconds")
    parser.add_argument(
        "--mixed", action="store_true", help="add voice sessions and idle connections"
    )
    parser.add_argument("--voice-sessions", type=int, default=4, help="with --mixed")
    parser.add_argument("--idle", type=int, default=20, help="idle connections, with --mixed")
    parser.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="WORKERS",
        help="start `eva cluster` with this many workers and load it through its balancer",
    )
    parser.add_argument(
        "--no-admission",
        action="store_true",
        help="the baseline: admit every conversation and turn (the server this test starts)",
    )
    parser.add_argument("--quick", action="store_true", help="45 s, for CI")
    parser.add_argument("--out", default="bench/results", help="where to write the report")


def main(args: argparse.Namespace) -> int:
    duration = 45.0 if args.quick else args.duration
    voice_sessions = args.voice_sessions if args.mixed else 0
    idle = args.idle if args.mixed else 0
    utterances = _utterances(6) if voice_sessions else None
    with contextlib.ExitStack() as stack:
        served: ServedEva | None = None
        workers: list[str] = []
        url = args.url
        # Every simulated person connects from 127.0.0.1 without a key: lift the
        # per-address caps, which would otherwise treat them all as one client (32
        # sessions, and 300 connections and turns a minute between them).
        no_address_cap = {
            "EVA_MAX_ANONYMOUS_SESSIONS_PER_ADDRESS": "0",
            "EVA_RATE_LIMIT_PER_ADDRESS": "0",
        }
        if args.no_admission:
            no_address_cap |= {"EVA_MAX_CONVERSATIONS": "100000", "EVA_MAX_TURN_WAIT_S": "1e9"}
        if url is None and args.cluster:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eva-load-")))
            cluster = stack.enter_context(ServedCluster(data_dir, args.cluster, no_address_cap))
            cluster.wait_ready()
            url = cluster.base_url
            workers = [f"http://127.0.0.1:{w['port']}" for w in cluster.workers()]
        elif url is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eva-load-")))
            served = stack.enter_context(ServedEva(data_dir, env=no_address_cap))
            served.wait_ready()
            url = served.base_url
        report = asyncio.run(
            run_load(
                url.replace("http://", "ws://").rstrip("/") + "/ws",
                sessions=args.sessions,
                duration_s=duration,
                voice_sessions=voice_sessions,
                idle=idle,
                utterances=utterances,
                server_pid=served.pid if served else None,
                workers=workers,
            )
        )
    report["form"] = ("quick" if args.quick else "full") + (" mixed" if args.mixed else "")
    if args.cluster:
        report["form"] += f", cluster of {args.cluster} workers behind HAProxy"
    if args.no_admission:
        report["form"] += ", admission off (baseline)"
    report["machine"] = {"cpus": os.cpu_count(), "platform": sys.platform}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kind = ("cluster-" if args.cluster else "") + ("mixed-" if args.mixed else "")
    stem = out / f"load-{kind}{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    stem.with_suffix(".md").write_text(table)
    print(table)
    print(f"written to {stem}.json and .md")
    return 1 if report["failures"] else 0
