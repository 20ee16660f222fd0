"""`eva serve` never dies silently: a fatal signal in an engine inside Eva's process is
reported on stderr with the Python stack that names the engine, and ./start.sh adds what to
do. A fatal signal in the model server (the default brain's llama-server) does not take Eva
down at all: /health says what happened, in words."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from eva.native import llama
from tests.native.crash_build import crashing_build
from tests.support import free_port

_ROOT = Path(__file__).resolve().parents[2]


def test_a_crash_while_loading_the_model_names_the_engine_on_stderr(tmp_path: Path) -> None:
    directory = crashing_build(tmp_path / "build", keep_real_variants=False)
    env = {**os.environ, llama.DIR_ENV: str(directory), "EVA_DATA_DIR": str(tmp_path / "data")}
    env["EVA_LLM_BACKENDS"] = "llamacpp"  # the model inside Eva's own process
    run = subprocess.run(
        [sys.executable, "-m", "eva.cli", "serve", "--port", str(free_port())],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )  # fmt: skip
    assert run.returncode == -signal.SIGILL, run.stderr[-2000:]
    assert "Fatal Python error: Illegal instruction" in run.stderr
    assert "eva/engines/llm_llamacpp.py" in run.stderr
    assert "loading language model" in run.stdout


def test_start_sh_turns_the_signal_into_a_sentence(tmp_path: Path) -> None:
    directory = crashing_build(tmp_path / "build", keep_real_variants=False)
    env = {**os.environ, llama.DIR_ENV: str(directory), "EVA_DATA_DIR": str(tmp_path / "data")}
    env["EVA_LLM_BACKENDS"] = "llamacpp"
    # start.sh runs the installer first; here the venv is installed and self-checked already.
    run = subprocess.run(
        ["bash", str(_ROOT / "start.sh"), "--port", str(free_port())],
        capture_output=True, text=True, env=env, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 128 + signal.SIGILL, run.stdout[-2000:] + run.stderr[-2000:]
    assert "eva: the server died by SIGILL in native code" in run.stderr
    assert "Run .venv/bin/eva doctor" in run.stderr


def test_a_model_server_that_dies_by_sigill_leaves_eva_up_and_says_why(tmp_path: Path) -> None:
    directory = crashing_build(tmp_path / "build", keep_real_variants=False)
    env = {**os.environ, llama.DIR_ENV: str(directory), "EVA_DATA_DIR": str(tmp_path / "data")}
    env["EVA_LLM_BACKENDS"] = "llamaserver"
    port = free_port()
    eva = subprocess.Popen(
        [sys.executable, "-m", "eva.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        health: dict[str, object] = {}
        while health.get("status") != "error":
            assert eva.poll() is None, "Eva died with her model server"
            assert time.monotonic() < deadline, f"no error reported: {health}"
            time.sleep(0.2)
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
        assert "exited while loading: SIGILL" in str(health["loading"])
        assert "an instruction it cannot run" in str(health["loading"])
    finally:
        eva.terminate()
        eva.communicate(timeout=30)
