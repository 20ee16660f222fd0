"""A child process of the cluster: started with its environment, logged to a file, checked
over HTTP until ready, stopped with SIGTERM (then SIGKILL)."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

# How often readiness is polled; a model server or Eva worker takes seconds to load.
_POLL_S = 0.2
_CHECK_TIMEOUT_S = 2.0


class Child:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        ready_url: str | None = None,
        is_ready: Callable[[httpx.Response], bool] = lambda reply: reply.is_success,
        nice: int = 0,
    ) -> None:
        """``nice``: added to the child's niceness before it starts."""
        self.name = name
        self.nice = nice
        self.command = list(command)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.ready_url = ready_url
        self._is_ready = is_ready
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches the cluster only
                preexec_fn=functools.partial(os.nice, self.nice) if self.nice else None,
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.alive and self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float) -> None:
        """Until its ``ready_url`` answers as ready; RuntimeError if it exits or is late."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited while starting:\n{self.log_tail()}")
            if self.ready_url is None or self._answers_ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} was not ready in {timeout_s:g} s")
            time.sleep(_POLL_S)

    def _answers_ready(self) -> bool:
        assert self.ready_url is not None
        try:
            return self._is_ready(httpx.get(self.ready_url, timeout=_CHECK_TIMEOUT_S))
        except (httpx.HTTPError, ValueError):
            return False

    def stop(self, timeout_s: float) -> None:
        """SIGTERM, wait up to ``timeout_s`` (an Eva worker drains), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
