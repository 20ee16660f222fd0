"""The Eva under test: a server process the bench starts (or one it is pointed at), and the
peak resident memory of that process, read from ``/proc/<pid>/status``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# How long a fresh server may take to load and warm its models before the run gives up.
START_TIMEOUT_S = 180.0
# Resident memory is sampled this often: the kernel's own high-water mark (VmHWM) gives the
# exact peak whatever the rate; the samples only show how memory moves during the run.
MEMORY_SAMPLE_EVERY_S = 0.5


@dataclass(frozen=True)
class Target:
    base: str  # http://host:port
    pid: int | None  # the server's process id when it is known (memory is read from it)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    url: str | None, pid: int | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[Target]:
    """``url``: use that server (``pid`` if given is its process); else start one, with its
    own temporary data directory (and ``extra_env``), and stop it on the way out."""
    if url:
        yield Target(url.rstrip("/"), pid)
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="eva-bench-") as data_dir:
        env = {**os.environ, **(extra_env or {}), "EVA_DATA_DIR": data_dir, "EVA_PORT": str(port)}
        log = Path(data_dir) / "server.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "eva.cli", "serve"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                _wait_ready(base, process, log)
                yield Target(base, process.pid)
            finally:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1.0).json().get("ready"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    raise RuntimeError("the server was not ready in time")


def read_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Eva's model server is its child)."""
    tree, index = [pid], 0
    while index < len(tree):
        for children in Path(f"/proc/{tree[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):  # it ended meanwhile
                tree += [int(child) for child in children.read_text().split()]
        index += 1
    return tree


def tree_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS summed over the process and its descendants, and the largest VmHWM of them."""
    total = {"VmRSS": 0, "VmHWM": 0, "processes": 0}
    for member in process_tree(pid):
        try:
            memory = read_memory_kib(member)
        except OSError:
            if member == pid:
                raise
            continue
        total["VmRSS"] += memory.get("VmRSS", 0)
        total["VmHWM"] = max(total["VmHWM"], memory.get("VmHWM", 0))
        total["processes"] += 1
    return total


class MemorySampler:
    """Samples the resident memory of a process and its children (the model server) in a
    background thread while the bench runs. The peak is the largest sampled sum: the
    kernel's high-water mark (VmHWM) is per process and cannot be added up."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []  # (seconds since start, VmRSS KiB)
        self.peak_kib = 0
        self.processes = 0
        self.error: str | None = None if pid is not None else "no server pid (use --server-pid)"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def __enter__(self) -> MemorySampler:
        if self.pid is not None:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        assert self.pid is not None
        started = time.monotonic()
        while True:
            try:
                memory = tree_memory_kib(self.pid)
            except (OSError, ValueError) as exc:
                self.error = self.error or f"cannot read /proc/{self.pid}/status: {exc}"
                return
            self.samples.append((round(time.monotonic() - started, 2), memory["VmRSS"]))
            self.peak_kib = max(self.peak_kib, memory["VmRSS"])
            self.processes = max(self.processes, memory["processes"])
            if self._stop.wait(MEMORY_SAMPLE_EVERY_S):
                return

    def report(self) -> dict[str, Any]:
        if not self.samples:
            return {"available": False, "reason": self.error or "no sample taken"}
        return {
            "available": True,
            "pid": self.pid,
            "peak_rss_mib": round(self.peak_kib / 1024, 1),
            "processes": self.processes,
            "last_rss_mib": round(self.samples[-1][1] / 1024, 1),
            "samples": len(self.samples),
        }
