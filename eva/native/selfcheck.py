"""Run every native engine once, each in a child process, and explain any crash in words.

A library built for another CPU dies by a signal (SIGILL: "Illegal instruction") the first
time it runs a kernel; in the server that is a dead process with one line from the shell.
Here each engine does one tiny job in its own child (one LLM token, one clause of speech,
one short transcription, one VAD frame, ...), so a crash kills only the child, and the
parent says which engine, what the signal means, and what to do.

``--repair``: when llama.cpp crashes, the CPU variant ggml chose is taken out of the build
(ggml then picks the next best) and the check runs again. Exit status: 0 all passed, 1 an
engine failed, 3 llama.cpp crashes even on its baseline variant (scripts/install.sh then
rebuilds it from source once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eva.native import llama, smoke
from eva.native.signals import signal_meaning

# A child loads one model and runs it once: seconds here, a minute or more under an
# emulator (tests/native/test_portability.py) or on a very slow disk.
CHILD_TIMEOUT_S = float(os.environ.get("EVA_SELFCHECK_TIMEOUT_S", "240"))
EXIT_FAILED = 1
EXIT_LLAMA_CRASHES = 3
_STDERR_TAIL_CHARS = 2500


@dataclass
class CheckResult:
    name: str
    ok: bool
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)
    signal: int | None = None
    error: str = ""
    stderr_tail: str = ""

    def sentence(self) -> str:
        """One line a person can act on."""
        check = smoke.CHECKS[self.name]
        if self.ok:
            extra = ", ".join(f"{k} {v}" for k, v in self.detail.items() if k != "progress")
            return (
                f"ok    {check.label}: {self.seconds * 1000:.0f} ms{f' ({extra})' if extra else ''}"
            )
        if self.signal is not None:
            name = signal.Signals(self.signal).name
            meaning = signal_meaning(self.signal)
            return (
                f"CRASH {check.label} died by {name}: {meaning}. {check.advice}"
                f"{self._variant_clause()}"
            )
        return f"FAIL  {check.label}: {self.error}. {check.advice}"

    def _variant_clause(self) -> str:
        variant = self.detail.get("progress", {}).get("cpu_variant")
        return f" (llama.cpp CPU variant in use: {variant})" if variant else ""


def run_check(name: str) -> CheckResult:
    """Run one check in a child Python and read what it reported before ending or dying."""
    started = time.monotonic()
    command = [sys.executable, "-X", "faulthandler", "-m", "eva.native.smoke", name]
    try:
        child = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return CheckResult(name, False, CHILD_TIMEOUT_S, error=f"no answer in {CHILD_TIMEOUT_S} s")
    seconds = time.monotonic() - started
    reports = _reports(child.stdout)
    progress: dict[str, Any] = {}
    for report in reports:
        progress.update(report.get("progress", {}))
    final = next((r for r in reversed(reports) if "ok" in r), None)
    tail = _fatal_report(child.stderr)
    # The child's own death, or that of a program it ran (llama-server) as it reported.
    died_by = -child.returncode if child.returncode < 0 else (final or {}).get("signal")
    if died_by:
        tail = (final or {}).get("log", "") + tail
        return CheckResult(name, False, seconds, {"progress": progress}, died_by, "", tail)
    if final is None or not final["ok"]:
        error = final["error"] if final else f"exited with status {child.returncode}"
        return CheckResult(
            name, False, seconds, {"progress": progress}, error=error, stderr_tail=tail
        )
    return CheckResult(
        name, True, float(final["seconds"]), {**final.get("detail", {}), "progress": progress}
    )


def _fatal_report(stderr: str) -> str:
    """faulthandler's report (the signal and each thread's stack) if there is one, else the
    end of stderr; without the list of extension modules, which names no engine."""
    start = stderr.rfind("Fatal Python error")
    if start < 0:
        return stderr[-_STDERR_TAIL_CHARS:]
    return stderr[start:].split("\nExtension modules:")[0][:_STDERR_TAIL_CHARS]


def _reports(stdout: str) -> list[dict[str, Any]]:
    reports = []
    for line in stdout.splitlines():
        if line.startswith(smoke.REPORT_PREFIX):
            try:
                reports.append(json.loads(line[len(smoke.REPORT_PREFIX) :]))
            except json.JSONDecodeError:
                continue
    return reports


def disable_variant(variant: str) -> None:
    """Take one CPU variant out of the build and remember it for the next install."""
    directory = llama.llama_cpp_dir()
    (directory / f"libggml-cpu-{variant}.so").unlink(missing_ok=True)
    listed = llama.disabled_variants(directory)
    if variant not in listed:
        (directory / llama.DISABLED_VARIANTS_FILE).write_text("\n".join([*listed, variant]) + "\n")


def run_all(
    names: list[str] | None = None,
    *,
    repair: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """Run the checks, print a line each, and return the exit status described above."""
    status = 0
    for name in names or smoke.applicable_checks():
        result = run_check(name)
        while repair and smoke.CHECKS[name].uses_llama_cpp and result.signal is not None:
            variant = result.detail.get("progress", {}).get("cpu_variant")
            remaining = llama.shipped_variants()
            say(result.sentence())
            if not variant or remaining == [variant] or variant not in remaining:
                say(f"      {result.stderr_tail.strip()}")
                return EXIT_LLAMA_CRASHES
            disable_variant(variant)
            say(f"      repair: llama.cpp's {variant} variant is disabled on this machine; again")
            result = run_check(name)
        say(result.sentence())
        if not result.ok:
            if result.stderr_tail.strip():
                say("      " + result.stderr_tail.strip().replace("\n", "\n      "))
            crashed_llama = result.signal is not None and smoke.CHECKS[name].uses_llama_cpp
            status = max(status, EXIT_LLAMA_CRASHES if crashed_llama else EXIT_FAILED)
    return status
