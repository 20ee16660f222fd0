"""Admission on a real server: busy answers, capacity for the balancer, metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from eva.conversation.admission import Channel, Ticket
from eva.engines.runtime import Engines
from tests.server.servers import StartServer, servers_for_a_test
from tests.server.ws_client import VoiceClient, silence, speech
from tests.support import ServerThread

CLOSE_TRY_AGAIN_LATER = 1013
LONG_ASK = "Tell me a long story about a lighthouse keeper, please, in three sentences."


@pytest.fixture
def start(engines: Engines, tmp_path: Path) -> Iterator[StartServer]:
    yield from servers_for_a_test(engines, tmp_path)


def _ws(server: ServerThread, query: str = "") -> str:
    return server.base_url.replace("http://", "ws://") + "/ws" + (f"?{query}" if query else "")


async def test_turns_beyond_what_the_model_serves_in_time_are_refused_at_once_with_retry_after(
    start: StartServer, engines: Engines
) -> None:
    # No wait allowed: a turn is admitted only while one of the model's slots is free.
    server = start(max_turn_wait_s=0)
    slots = engines.llm.concurrent_streams
    asks = 2 * slots
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
        replies = await asyncio.gather(
            *(http.post("/chat", json={"message": f"{LONG_ASK} ({n})"}) for n in range(asks))
        )
        metrics = (await http.get("/metrics")).text
    answered = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 503]
    assert len(answered) + len(refused) == asks, [r.status_code for r in replies]
    assert 1 <= len(answered) <= slots and refused
    for reply in refused:
        assert reply.json()["error"]["code"] == "busy"
        assert int(reply.headers["Retry-After"]) >= 1
    for reply in answered:
        assert reply.json()["response"]
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    counted = {s.labels["kind"]: s.value for s in families["eva_admission_refusals"].samples}
    assert counted["turn"] == len(refused)


async def test_a_spoken_turn_eva_cannot_take_is_refused_at_the_pause_without_transcribing_it(
    start: StartServer, engines: Engines
) -> None:
    # No wait allowed, every slot a place from the start (no latency target to adapt to),
    # and every place held, as by turns in flight, for as long as the test needs.
    server = start(max_turn_wait_s=0, first_audio_target_s=0)
    queue = server.server.config.app.state.conversation.gate.queue
    held = [queue.ask(f"holder {n}", Channel.TYPED, time.monotonic()) for n in range(queue.slots)]
    assert len(queue.start_next(time.monotonic())) == queue.slots
    client = await VoiceClient.connect(server.base_url)
    await client.wait_for("session.created")
    said = speech(engines, "Could you tell me what time the museum opens tomorrow?")
    await client.stream(np.concatenate([silence(0.3), said, silence(1.0)]))
    busy = await client.wait_for("error", within=10)
    for ticket in held:
        assert isinstance(ticket, Ticket)
        queue.finish(ticket, time.monotonic())
    # Free again, but what is said before the time the person was told to come back at
    # is not answered: told at a pause inside a sentence, the rest of it is not either.
    await client.stream(np.concatenate([speech(engines, "And one more thing."), silence(1.5)]))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        transcribed = (await http.get("/stats")).json()["stages"].get("stt_ms", {})
    assert busy["code"] == "busy" and busy["retry_after_s"] >= 1
    told = next(r for r in client.received if r.event is not None and r.event["type"] == "error")
    assert told.at - client.first("speech.stopped").at < 0.1
    assert not client.events("transcript.final") and not client.events("response.created")
    assert transcribed.get("count", 0) == 0  # neither the turn nor a partial of it
    await client.close()


async def test_a_conversation_beyond_the_cap_is_told_busy_and_the_balancer_sees_it_full(
    start: StartServer,
) -> None:
    server = start(max_conversations=1)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        assert (await http.get("/health/ready")).status_code == 200
        async with websockets.connect(_ws(server)) as first:
            assert json.loads(await first.recv())["type"] == "session.created"
            full = await http.get("/health/ready")
            assert full.status_code == 503
            capacity = full.json()["capacity"]
            assert capacity["free_conversations"] == 0 and not capacity["accepting"]
            async with websockets.connect(_ws(server)) as second:
                refused = json.loads(await asyncio.wait_for(second.recv(), 10))
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(second.recv(), 10)
            assert refused["type"] == "error" and refused["code"] == "busy"
            assert refused["retry_after_s"] >= 1
            assert second.close_code == CLOSE_TRY_AGAIN_LATER
        for _ in range(100):  # the closed conversation's place comes back
            if (await http.get("/health/ready")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the conversation's place never came back")


async def test_metrics_parse_and_their_histograms_count_what_stats_counts(
    start: StartServer,
) -> None:
    server = start()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        for n in range(3):
            assert (await http.post("/chat", json={"message": f"Name a fruit. ({n})"})).is_success
        stats = (await http.get("/stats")).json()
        text = (await http.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    histogram = families["eva_stage_seconds"]
    counts = {s.labels["stage"]: s.value for s in histogram.samples if s.name.endswith("_count")}
    for stage, summary in stats["stages"].items():
        assert counts[stage] == summary["count"], stage
        # The p50 lies in the histogram's cumulative buckets where half the samples are.
        buckets = sorted(
            (float(s.labels["le"]), s.value)
            for s in histogram.samples
            if s.name.endswith("_bucket") and s.labels["stage"] == stage
        )
        below = [count for bound, count in buckets if bound >= summary["p50"] / 1000.0]
        assert below[0] >= summary["count"] / 2, stage
    assert families["eva_requests"].samples  # per-route counters
    assert {s.value for s in families["eva_ready"].samples} == {1.0}
    slots = families["eva_llm_slots"].samples[0].value
    assert slots >= 1 and families["eva_turns_running"].samples[0].value == 0
