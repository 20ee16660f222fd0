"""`eva bench --quick` as a user runs it: its own server, real models, every output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow  # about 70 s on a quiet 2-core machine: a server, the baseline models,
# and the turn-taking benchmark on six sentences
def test_quick_bench_writes_json_table_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "eva.cli", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        # the user's environment as is: its model caches are already prepared
        env={k: v for k, v in os.environ.items() if not k.startswith("EVA_")},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(path.name for path in out.iterdir())
    assert [n.split("-")[0] for n in names] == ["bench"] * 4 + ["turn"], names
    bench = [path for path in out.iterdir() if path.name.startswith("bench-")]
    assert {path.suffix for path in bench} == {".json", ".md", ".png"}, names
    report = json.loads(next(out.glob("bench-*.json")).read_text())
    summary = report["summary"]
    assert summary["stream_client_first_audio_ms"]["n"] == 3
    assert summary["voice_to_voice_ms"]["n"] == 2
    assert summary["stream_client_first_audio_ms"]["ratio_p50"] > 0
    assert summary["baseline_voice_to_voice_ms"]["n"] == 2
    # OpenAI's routes beside Eva's own, on inputs of their own
    assert summary["realtime_voice_to_voice_ms"]["n"] == 2
    assert summary["realtime_voice_to_voice_ms"]["ratio_p50"] > 0
    assert summary["speech_first_byte_ms"]["n"] == 3
    assert [level["sessions"] for level in report["concurrency"]] == [1, 2]
    assert all(level["failures"] == 0 for level in report["concurrency"])
    assert report["memory"]["available"] and report["memory"]["peak_rss_mib"] > 100
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    table = next(out.glob("*.md")).read_text()
    assert "vs baseline" in table and "| 2 | 2 | 0 |" in table
    turns = json.loads(next(out.glob("turn-taking-*.json")).read_text())
    for rule in ("model_and_words", "model_alone_when_confident", "words_rule"):
        assert 0 <= turns[rule]["false_cutoff_rate_all_pauses"] <= 1
        assert turns[rule]["end_of_turn_delay_ms"]["n"] > 0
        assert turns[rule]["eva_backchannels_while_the_person_speaks"] == 0
