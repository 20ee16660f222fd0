"""``GET /metrics``: what an operator scrapes, in Prometheus' text format.

The per-stage histograms and the request and error counters live in ``LatencyStats``
(``eva.stats``), fed by the same samples as ``/stats``. This module adds what is read at
scrape time: the admission state of ``TurnGate`` (conversations, the queue for the model,
refusals, draining) and whether the models are loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from eva.conversation.turn_gate import TurnGate

router = APIRouter()


class AdmissionCollector(Collector):
    """The gate's state at scrape time; nothing when the models are not loaded yet."""

    def __init__(self, gate: Callable[[], TurnGate | None]) -> None:
        self._gate = gate

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        gate = self._gate()
        yield GaugeMetricFamily("eva_ready", "1 once the models are loaded", gate is not None)
        if gate is None:
            return
        capacity = gate.capacity()
        yield GaugeMetricFamily(
            "eva_conversations", "Conversations open (WebSocket sessions)", capacity.conversations
        )
        yield GaugeMetricFamily(
            "eva_conversations_max", "Conversations admitted at most", capacity.max_conversations
        )
        yield GaugeMetricFamily(
            "eva_llm_slots", "Turns the model serves at once", capacity.llm_slots
        )
        yield GaugeMetricFamily(
            "eva_turns_running", "Turns holding a slot of the model", capacity.turns_running
        )
        yield GaugeMetricFamily(
            "eva_turns_limit", "Turns let in at once now (adapts)", capacity.turns_limit
        )
        waiting = GaugeMetricFamily(
            "eva_turns_waiting", "Turns queued for the model", labels=["channel"]
        )
        waiting.add_metric(["spoken"], capacity.turns_waiting_spoken)
        waiting.add_metric(["typed"], capacity.turns_waiting_typed)
        yield waiting
        yield GaugeMetricFamily(
            "eva_turn_hold_seconds",
            "Moving average of a turn's hold on a slot",
            capacity.turn_hold_s,
        )
        yield GaugeMetricFamily("eva_draining", "1 after SIGTERM", capacity.draining)
        refusals = CounterMetricFamily(
            "eva_admission_refusals", "Conversations and turns told to come back", labels=["kind"]
        )
        for kind, count in sorted(gate.refusals.items()):
            refusals.add_metric([kind], count)
        yield refusals


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = request.app.state.stats.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
