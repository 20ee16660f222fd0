"""``eva serve`` (or ``eva cluster``) as a child process on a free loopback port: for the
load test, which watches the server's own memory, and for the tests that signal or kill it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

# Loading and warming every model, on a busy two-core machine, with room to spare.
START_TIMEOUT_S = 180.0
# ``eva serve`` drains on SIGTERM (EVA_DRAIN_TIMEOUT_S, 20 s) and then shuts down within
# 7 s; past this it is killed.
STOP_TIMEOUT_S = 30.0
# Two workers, a model server and PostgreSQL starting at once on two cores.
CLUSTER_START_TIMEOUT_S = 300.0
_CLUSTER_READY = "Eva cluster ready"
_POLL_S = 0.2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS in /proc/<pid>/status), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class ServedEva:
    """``python -m eva.cli serve`` with ``EVA_DATA_DIR=data_dir``; output to server.log there."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.log_path = data_dir / "server.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        environment = {
            **os.environ,
            **(env or {}),
            "EVA_DATA_DIR": str(data_dir),
            "EVA_HOST": "127.0.0.1",
            "EVA_PORT": str(self.port),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eva.cli", "serve"],
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> ServedEva:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"eva serve exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).json().get("ready"):
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(_POLL_S)
        self.kill()
        raise RuntimeError(f"eva serve was not ready in {timeout} s:\n{self.log_tail()}")

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> float:
        """SIGTERM, then wait; seconds until it exited (killed past ``timeout``)."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def __enter__(self) -> ServedEva:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.terminate()


class ServedCluster:
    """``python -m eva.cli cluster`` in ``directory``: its balancer on a free port, its
    workers found in the cluster.json it writes."""

    def __init__(self, directory: Path, workers: int = 2, env: dict[str, str] | None = None):
        self.directory = directory
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.out_path = directory / "cluster.out"
        directory.mkdir(parents=True, exist_ok=True)
        with self.out_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "eva.cli", "cluster", "--workers", str(workers),
                 "--port", str(self.port), "--directory", str(directory)],
                env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = CLUSTER_START_TIMEOUT_S) -> ServedCluster:
        deadline = time.monotonic() + timeout
        while _CLUSTER_READY not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"eva cluster exited early:\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"eva cluster was not ready in {timeout} s:\n{self.output()}")
            time.sleep(_POLL_S)
        return self

    def state(self) -> dict[str, Any]:
        from eva.cluster.run import STATE_FILE

        return json.loads((self.directory / STATE_FILE).read_text())  # type: ignore[no-any-return]

    def workers(self) -> list[dict[str, Any]]:
        """name, port, pid and log of each worker, as the cluster last wrote them."""
        return [p for p in self.state()["processes"] if p["name"].startswith("worker")]

    def stop(self) -> None:
        """SIGTERM: the cluster drains its workers and stops everything it started."""
        from eva.cluster.run import postgres_root

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S * 3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if postgres_root(self.directory).parent != self.directory:
            shutil.rmtree(postgres_root(self.directory).parent, ignore_errors=True)

    def __enter__(self) -> ServedCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
