"""Service statistics: numpy-compatible percentiles, bounded windows, thread safety."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from eva.stats import LatencyStats, percentile


def test_percentile_matches_numpy_linear_on_random_data() -> None:
    rng = random.Random(1234)
    for _ in range(500):
        n = rng.randint(1, 60)
        values = [rng.uniform(-1e3, 1e4) for _ in range(n)]
        if rng.random() < 0.3:  # ties and repeated values
            values = [round(v, -3) for v in values]
        for q in [0, 100, 50, 95, 99.9, rng.uniform(0, 100), rng.uniform(0, 100)]:
            expected = float(np.percentile(values, q))
            assert percentile(values, q) == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_percentile_exact_on_small_known_inputs() -> None:
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0


def test_percentile_rejects_empty_input_and_bad_q() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        percentile([1.0], -0.1)


def test_window_bounds_memory_and_keeps_most_recent_samples() -> None:
    stats = LatencyStats(window=1000)
    for i in range(5000):
        stats.record({"stt": float(i)})
    stage = stats.snapshot()["stages"]["stt"]
    assert stage["count"] == 1000
    assert stage["max"] == 4999.0
    # Only the last 1000 samples (4000..4999) remain.
    assert stage["p50"] == pytest.approx(float(np.percentile(np.arange(4000, 5000), 50)))


def test_snapshot_shape_and_values() -> None:
    stats = LatencyStats()
    stats.count_request("/chat")
    stats.count_request("/chat")
    stats.count_request("/ws")
    stats.count_error("/chat")
    stats.record({"stt": 10.0, "llm": 100.0, "tts": None})
    stats.record({"stt": 30.0, "llm": 300.0})
    snap = stats.snapshot()
    assert set(snap) == {"requests", "errors", "stages"}
    assert snap["requests"] == {"/chat": 2, "/ws": 1}
    assert snap["errors"] == {"/chat": 1}
    assert set(snap["stages"]) == {"stt", "llm"}  # a None-only stage never appears
    assert snap["stages"]["stt"] == {"count": 2, "p50": 20.0, "p95": 29.0, "max": 30.0}
    assert set(snap["stages"]["llm"]) == {"count", "p50", "p95", "max"}


def test_empty_stats_snapshot() -> None:
    assert LatencyStats().snapshot() == {"requests": {}, "errors": {}, "stages": {}}


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LatencyStats(window=0)


def test_concurrent_recording_and_snapshots_are_consistent() -> None:
    stats = LatencyStats(window=100_000)
    threads_n, per_thread = 8, 2000
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n + 1)

    def writer(index: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                stats.record({"stt": float(i), f"only-{index}": 1.0})
                stats.count_request("/chat")
                if i % 10 == 0:
                    stats.count_error("/chat")
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            start.wait()
            for _ in range(200):
                snap = stats.snapshot()
                for stage in snap["stages"].values():
                    assert stage["p50"] <= stage["p95"] <= stage["max"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(threads_n)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    snap = stats.snapshot()
    assert snap["requests"] == {"/chat": threads_n * per_thread}
    assert snap["errors"] == {"/chat": threads_n * per_thread // 10}
    assert snap["stages"]["stt"]["count"] == threads_n * per_thread
    assert all(snap["stages"][f"only-{i}"]["count"] == per_thread for i in range(threads_n))
