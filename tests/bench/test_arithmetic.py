"""The bench's own arithmetic: summaries, word error rate, baseline ratios, concurrency
aggregation, and the table that shows them."""

from __future__ import annotations

import math
import os
import subprocess

import numpy as np
import pytest

from eva.bench import report
from eva.bench.server import MemorySampler, process_tree, read_memory_kib, tree_memory_kib
from eva.bench.voice import word_error_rate


def test_summary_gives_numpy_percentiles_and_skips_turns_without_the_figure() -> None:
    values = [120.0, 80.0, float("nan"), 300.0, 95.0, 101.0]
    clean = [v for v in values if not math.isnan(v)]
    s = report.summary(values)
    assert s["n"] == 5
    assert s["p50"] == pytest.approx(np.percentile(clean, 50), abs=0.05)
    assert s["p95"] == pytest.approx(np.percentile(clean, 95), abs=0.05)
    assert s["max"] == 300.0
    assert report.summary([float("nan")]) == {"n": 0}


def test_word_error_rate_ignores_case_and_punctuation_and_counts_each_error() -> None:
    spoken = "My uncle moved to the seaside on Sunday. Is that a good idea?"
    same = "my uncle moved to the seaside on sunday is that a good idea"
    assert word_error_rate(spoken, same) == 0
    # one substitution (seaside -> sea), one deletion (good): 2 errors in 13 words
    heard = "My uncle moved to the sea on Sunday, is that a idea?"
    assert word_error_rate(spoken, heard) == pytest.approx(2 / 13)
    assert word_error_rate(spoken, "") == 1.0
    with pytest.raises(ValueError):
        word_error_rate("...", "anything")


def test_ratio_is_measure_over_baseline_and_none_without_a_baseline() -> None:
    assert report.ratio({"p50": 300.0}, {"p50": 1200.0}, "p50") == 0.25
    assert report.ratio({"p50": 300.0}, {"n": 0}, "p50") is None
    assert report.ratio({"p50": 300.0}, {"p50": 0.0}, "p50") is None


def test_with_ratios_pairs_each_streamed_figure_with_its_baseline() -> None:
    summaries = {
        "stream_client_first_audio_ms": {"n": 3, "p50": 200.0, "p95": 300.0, "max": 310.0},
        "baseline_text_to_audio_ms": {"n": 3, "p50": 800.0, "p95": 1500.0, "max": 1600.0},
        "voice_to_voice_ms": {"n": 2, "p50": 600.0, "p95": 900.0, "max": 900.0},
        "barge_in_stop_ms": {"n": 2, "p50": 120.0, "p95": 130.0, "max": 130.0},
    }
    out = report.with_ratios(summaries)
    first_audio = out["stream_client_first_audio_ms"]
    assert first_audio["baseline"] == "baseline_text_to_audio_ms"
    assert first_audio["ratio_p50"] == 0.25 and first_audio["ratio_p95"] == 0.2
    assert "ratio_p50" not in out["voice_to_voice_ms"]  # its baseline was not measured
    assert "baseline" not in out["barge_in_stop_ms"]  # a sequential pipeline has no barge-in
    table = report.markdown_table({"summary": out, "memory": {"available": False, "reason": "x"}})
    assert "| stream_client_first_audio_ms | 3 | 200.0 | 300.0 | 310.0 | ×0.25 / ×0.2 |" in table
    assert "| baseline_text_to_audio_ms | 3 | 800.0 | 1500.0 | 1600.0 |" in table
    assert "memory: unavailable (x)" in table


def test_a_concurrency_level_counts_failures_and_summarises_only_finished_turns() -> None:
    turns = [
        {"voice_to_voice_ms": 500.0, "stt_ms": 200.0, "wer": 0.0, "first_audio_any_ms": 500.0},
        {"voice_to_voice_ms": 700.0, "stt_ms": 260.0, "wer": 0.1, "first_audio_any_ms": 650.0},
        {"failure": "TimeoutError: "},
        {"voice_to_voice_ms": 900.0, "stt_ms": 300.0, "wer": 0.0, "first_audio_any_ms": 900.0},
        {"failure": "TimeoutError: "},
    ]
    level = report.aggregate_level(4, turns)
    assert (level["sessions"], level["turns"], level["failures"]) == (4, 5, 2)
    assert level["failure_reasons"] == ["TimeoutError: "]
    v2v = level["summary"]["voice_to_voice_ms"]
    assert v2v["n"] == 3 and v2v["p50"] == 700.0 and v2v["p95"] == pytest.approx(880.0)
    assert level["summary"]["server_voice_to_voice_ms"] == {"n": 0}
    table = report.markdown_table(
        {
            "summary": {"baseline_voice_to_voice_ms": {"n": 1, "p50": 1400.0, "p95": 1400.0}},
            "concurrency": [level],
            "memory": {"available": True, "peak_rss_mib": 700.0},
        }
    )
    assert "| 4 | 5 | 2 | 700.0 | 880.0 | 0.5 | 260.0 |" in table
    assert "peak resident memory (Eva and its model server, summed" in table
    assert "processes: 1): 700.0 MiB" in table


def test_memory_is_read_from_proc_and_unavailable_without_a_pid() -> None:
    mine = read_memory_kib(os.getpid())
    assert 0 < mine["VmRSS"] <= mine["VmHWM"]
    with MemorySampler(os.getpid()) as sampler:
        pass
    measured = sampler.report()
    assert measured["available"] and measured["peak_rss_mib"] >= mine["VmRSS"] / 1024 - 1
    with subprocess.Popen(["sleep", "30"]) as child:  # a child counts, as the model server
        try:
            assert child.pid in process_tree(os.getpid())
            assert tree_memory_kib(os.getpid())["VmRSS"] > mine["VmRSS"] // 2
            assert tree_memory_kib(os.getpid())["processes"] >= 2
        finally:
            child.kill()
    with MemorySampler(None) as nothing:
        pass
    assert nothing.report() == {"available": False, "reason": "no server pid (use --server-pid)"}


def test_the_json_report_writes_a_missing_figure_as_null() -> None:
    from eva.bench.harness import _without_nan

    cleaned = _without_nan({"a": [1.0, float("nan")], "b": {"c": float("nan")}, "d": "x"})
    assert cleaned == {"a": [1.0, None], "b": {"c": None}, "d": "x"}
