"""In-memory service statistics behind ``GET /stats``.

Per-stage latencies (``stt``, ``llm_first_token``, ``tts``, ...) are kept in fixed-size
windows, so memory stays bounded however long the server runs and the percentiles describe
recent behaviour rather than the whole uptime. Counters are plain per-route integers.
Everything resets when the process restarts; durable history lives in the store.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter

# Last N samples per stage: enough for a stable p95 (50 samples above it) while a snapshot
# (a sort of N floats per stage) stays well under a millisecond.
DEFAULT_WINDOW = 1000
# The histograms' upper bounds in seconds: from a 5 ms VAD frame to the 30 s a turn may take
# under load; the targets (200 ms, 1 s, 3 s) are bounds, so a rate under them is exact.
STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0,
                   3.0, 5.0, 10.0, 30.0)  # fmt: skip


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (q in [0, 100]), interpolating linearly between closest ranks.

    Same definition as ``numpy.percentile``'s default ``method="linear"``; written out here so
    that the stats endpoint does not pay numpy's per-call overhead on small windows.
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    return _percentile_of_sorted(sorted(values), q)


def _percentile_of_sorted(ordered: Sequence[float], q: float) -> float:
    rank = (len(ordered) - 1) * q / 100
    lower = math.floor(rank)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = rank - lower
    low, high = ordered[lower], ordered[upper]
    # Interpolate from the nearer end, like numpy, which keeps the result monotonic in q and
    # exact at the data points despite rounding.
    if fraction >= 0.5:
        return float(high - (high - low) * (1 - fraction))
    return float(low + (high - low) * fraction)


class LatencyStats:
    """Request/error counters per route and latency percentiles per stage; thread-safe.

    Every sample also goes into Prometheus histograms and counters in ``registry`` (one
    per instance, so that several apps in a process do not mix): ``/stats`` shows recent
    percentiles for people, ``/metrics`` the same samples for a scraper."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._lock = threading.Lock()
        self._samples: dict[str, deque[float]] = {}
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self.registry = CollectorRegistry(auto_describe=True)
        self._stage_seconds = Histogram(
            "eva_stage_seconds",
            "Latency of each stage of a turn (the stages of /stats)",
            ["stage"],
            buckets=STAGE_BUCKETS_S,
            registry=self.registry,
        )
        self._requests_total = PromCounter(
            "eva_requests", "Requests and sessions per route", ["route"], registry=self.registry
        )
        self._errors_total = PromCounter(
            "eva_errors", "Backend failures per route", ["route"], registry=self.registry
        )

    def record(self, timings: Mapping[str, float | None]) -> None:
        """Add one sample per stage (milliseconds); stages that did not run are ``None``."""
        with self._lock:
            for stage, ms in timings.items():
                if ms is None:
                    continue
                samples = self._samples.get(stage)
                if samples is None:
                    samples = self._samples[stage] = deque(maxlen=self.window)
                samples.append(float(ms))
                self._stage_seconds.labels(stage).observe(float(ms) / 1000.0)

    def count_request(self, route: str) -> None:
        with self._lock:
            self._requests[route] += 1
        self._requests_total.labels(route).inc()

    def count_error(self, route: str) -> None:
        with self._lock:
            self._errors[route] += 1
        self._errors_total.labels(route).inc()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy: requests and errors per route, count/p50/p95/max per stage."""
        with self._lock:
            # Copy under the lock and sort outside it, so recording never waits on a sort.
            requests = dict(self._requests)
            errors = dict(self._errors)
            samples = {stage: list(values) for stage, values in self._samples.items()}
        stages: dict[str, dict[str, float]] = {}
        for stage, values in sorted(samples.items()):
            values.sort()
            stages[stage] = {
                "count": len(values),
                "p50": _percentile_of_sorted(values, 50),
                "p95": _percentile_of_sorted(values, 95),
                "max": values[-1],
            }
        return {"requests": requests, "errors": errors, "stages": stages}
