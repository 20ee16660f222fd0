"""`eva bench --quick` as a user runs it: its own server, real models, every output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow  # about 40 s on a quiet 2-core machine: a server, the baseline models
def test_quick_bench_writes_json_table_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "eva.cli", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        # the user's environment as is: its model caches are already prepared
        env={k: v for k, v in os.environ.items() if not k.startswith("EVA_")},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    files = {path.name.split("-", 3)[-1] for path in out.iterdir()}
    stems = {path.suffix for path in out.iterdir()}
    assert stems == {".json", ".md", ".png"} and len(files) == 4, files
    report = json.loads(next(out.glob("*.json")).read_text())
    summary = report["summary"]
    assert summary["stream_client_first_audio_ms"]["n"] == 3
    assert summary["voice_to_voice_ms"]["n"] == 2
    assert summary["stream_client_first_audio_ms"]["ratio_p50"] > 0
    assert summary["baseline_voice_to_voice_ms"]["n"] == 2
    assert [level["sessions"] for level in report["concurrency"]] == [1, 2]
    assert all(level["failures"] == 0 for level in report["concurrency"])
    assert report["memory"]["available"] and report["memory"]["peak_rss_mib"] > 100
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    table = next(out.glob("*.md")).read_text()
    assert "vs baseline" in table and "| 2 | 2 | 0 |" in table
