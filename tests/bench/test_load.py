"""`eva loadtest --quick` as CI runs it: 50 typed /ws sessions for 45 s against a server it
starts itself. Latency is reported, never asserted here (speed targets live in the
benchmark); what must hold is no failure and a well-formed report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# 45 s of load, the server's start, and draining the turns in flight at the end.
_RUN_TIMEOUT_S = 240


def test_quick_load_test_has_no_failures_and_writes_a_well_formed_report(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "eva.cli", "loadtest", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=_RUN_TIMEOUT_S,
    )
    print(run.stdout[-3000:], run.stderr[-3000:])
    reports = list(out.glob("load-*.json"))
    assert len(reports) == 1 and len(list(out.glob("load-*.md"))) == 1
    report = json.loads(reports[0].read_text())
    assert report["failures"] == 0, report["failure_details"]
    assert run.returncode == 0
    assert report["sessions"] == {"typed": 50, "voice": 0, "idle": 0}
    assert report["turns_done"] > 0 and report["typed"]["done_ms"]["n"] == report["turns_done"]
    for measure in ("first_text_ms", "first_audio_ms", "done_ms"):
        stats = report["typed"][measure]
        assert stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    memory = report["server_rss"]
    assert memory["sampled"] and memory["peak_mb"] > 0
    assert len(memory["samples"]) >= 30  # one a second for 45 s
    # 50 people is more than Eva holds conversations with on these cores: the rest are
    # told "busy" and ask again, which is no failure.
    assert "ack_audio_ms" in report["typed"]  # "Mm." timed apart from the reply
    refused = report["refused"]
    assert refused["typed"] > 0 and refused["told_in_ms"]["n"] == refused["typed"]
    gaps = report["typed"]  # the gaps a listener hears, counted as the page's player plays
    assert 0 <= gaps["replies_with_gap"] <= gaps["turns_done"]
    assert gaps["gap_ms"]["n"] >= gaps["replies_with_gap"]
    text = (out / reports[0].with_suffix(".md").name).read_text()
    assert "| typed | done_ms |" in text and "gaps heard in the voice (typed)" in text
