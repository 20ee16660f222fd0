"""`eva selfcheck`: every engine runs in a child, and a native crash becomes a sentence.

The crash is real (tests/native/crash_build.py): a CPU backend that ggml scores above every
real variant and whose initialisation executes an undefined instruction.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from eva.native import llama, selfcheck
from tests.native.crash_build import crashing_build


def _selfcheck(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eva.cli", "selfcheck", *args],
        capture_output=True,
        text=True,
        env={**os.environ, llama.DIR_ENV: str(directory)},
        timeout=300,
        check=False,
    )


def test_engines_pass_their_checks_with_timings_on_this_machine() -> None:
    lines: list[str] = []
    status = selfcheck.run_all(["llm", "vad-silero", "audio"], say=lines.append)
    assert status == 0, lines
    assert [line.split()[0] for line in lines] == ["ok", "ok", "ok"]
    assert "cpu_variant" in lines[0] and " ms" in lines[0]


def test_a_crashing_variant_is_named_and_explained_without_repair(tmp_path: Path) -> None:
    directory = crashing_build(tmp_path / "build", keep_real_variants=True)
    run = _selfcheck(directory, "llm")
    assert run.returncode == selfcheck.EXIT_LLAMA_CRASHES, run.stdout + run.stderr
    assert "CRASH language model (llama.cpp in-process) died by SIGILL" in run.stdout
    assert "the CPU met an instruction it cannot run" in run.stdout
    assert "(llama.cpp CPU variant in use: zzcrash)" in run.stdout
    assert "Fatal Python error: Illegal instruction" in run.stdout  # the child's own stack


def test_repair_disables_the_crashing_variant_and_the_next_best_runs(tmp_path: Path) -> None:
    directory = crashing_build(tmp_path / "build", keep_real_variants=True)
    run = _selfcheck(directory, "--repair", "llm", "llama-server")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any("repair: llama.cpp's zzcrash variant is disabled" in line for line in lines)
    assert lines[-2].startswith("ok    language model") and "zzcrash" not in lines[-2]
    assert lines[-1].startswith("ok    llama.cpp's server")
    assert not (directory / "libggml-cpu-zzcrash.so").exists()
    assert llama.disabled_variants(directory) == ["zzcrash"]


def test_a_crash_with_no_variant_left_asks_for_a_rebuild(tmp_path: Path) -> None:
    directory = crashing_build(tmp_path / "build", keep_real_variants=False)
    run = _selfcheck(directory, "--repair", "llm")
    assert run.returncode == selfcheck.EXIT_LLAMA_CRASHES, run.stdout + run.stderr
    assert "died by SIGILL" in run.stdout
    assert (directory / "libggml-cpu-zzcrash.so").exists()


def test_a_missing_build_is_a_failure_that_says_how_to_install(tmp_path: Path) -> None:
    run = _selfcheck(tmp_path, "llm")
    assert run.returncode == selfcheck.EXIT_FAILED
    assert "FAIL  language model" in run.stdout
    assert "run scripts/install.sh" in run.stdout


def test_an_unknown_check_is_refused() -> None:
    run = _selfcheck(llama.llama_cpp_dir(), "nonsense")
    assert run.returncode == 2 and "unknown checks" in run.stdout
