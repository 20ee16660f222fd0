"""llama.cpp's own server (``llama-server``) as a supervised child process of Eva.

It listens on a unix socket in a private directory (mode 0700), not on a TCP port: other
users of the machine cannot read the conversations in its prompt caches (``/slots``), and
no port can be taken by someone else first. One supervisor thread starts it, waits for its
``/health``, and restarts it when it dies, with a growing delay so that a server that
crashes at once does not spin. The child is stopped with Eva: ``close()`` on a clean exit,
and the kernel (``PR_SET_PDEATHSIG``) when Eva itself is killed.

While it restarts, ``ready`` is clear and the engine answers "restarting" at once instead
of waiting: the turn becomes an ``error`` event, or goes to the next backend in the chain.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from eva.engines.base import EngineError
from eva.native.signals import describe_exit

log = logging.getLogger("eva.engines")

# Loading the 1.07 GB 1.5B model from a cold disk and warming it up takes 5-20 s here; a
# slow machine or an emulator gets ample room before the start counts as failed.
START_TIMEOUT_S = 180.0
_HEALTH_POLL_S = 0.1
_HEALTH_TIMEOUT_S = 2.0
# Restart delays: the first restart is quick (a kill -9 of a healthy server costs about its
# load time), repeated crashes back off; a server that stayed up this long starts afresh.
RESTART_DELAY_S = 0.2
MAX_RESTART_DELAY_S = 10.0
STABLE_AFTER_S = 60.0
# SIGTERM lets llama-server finish cleanly; one that hangs is killed after this.
STOP_GRACE_S = 5.0
LOG_TAIL_BYTES = 4000
_PR_SET_PDEATHSIG = 1


def _prepare_child(nice: int) -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    # SIGKILL, not SIGTERM: the child may be stopped (``pause``) when Eva dies, and a stopped
    # process acts on no other signal.
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if nice:
        os.nice(nice)  # before exec: every thread the server starts inherits it


class ModelServer:
    """One llama-server child, kept alive."""

    def __init__(
        self,
        command: Callable[[Path], list[str]],
        *,
        label: str,
        on_restart: Callable[[], None] = lambda: None,
        nice: int = 0,
    ) -> None:
        """``command(directory)``: the command line, given the private directory it may
        use (the socket is ``directory / "llama.sock"``). ``on_restart`` runs in the
        supervisor thread each time a restarted server is ready. ``nice``: added to the
        server's niceness."""
        self.label = label
        self.nice = nice
        self._command = command
        self._on_restart = on_restart
        self.directory = Path(tempfile.mkdtemp(prefix="eva-llm-"))  # mode 0700
        self.socket_path = self.directory / "llama.sock"
        self.log_path = self.directory / "llama-server.log"
        self.ready = threading.Event()
        self.restarts = 0
        self._closing = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._first_start = threading.Event()
        self._signal_lock = threading.Lock()
        self._paused = False
        self._first_error: str | None = None
        self._supervisor = threading.Thread(
            target=self._supervise, name="eva-llm-supervisor", daemon=True
        )

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        """Start the server and wait until it answers; an EngineError if it never does."""
        # The child is started from the supervisor thread only: PR_SET_PDEATHSIG fires
        # when the thread that forked it ends, and the supervisor lives as long as Eva's use.
        self._supervisor.start()
        self._first_start.wait()
        if self._first_error is not None:
            self.close()
            raise EngineError(self._first_error)

    def transport(self) -> httpx.HTTPTransport:
        return httpx.HTTPTransport(uds=str(self.socket_path))

    def pause(self) -> None:
        """Stop the server's computing (SIGSTOP) until ``resume``: its connections wait."""
        self._signal(signal.SIGSTOP, paused=True)

    def resume(self) -> None:
        self._signal(signal.SIGCONT, paused=False)

    def _signal(self, signum: int, *, paused: bool) -> None:
        with self._signal_lock:
            process = self._process
            if self._paused == paused or process is None or process.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)
            self._paused = paused

    def close(self) -> None:
        self._closing.set()
        self.resume()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._supervisor.is_alive() and threading.current_thread() is not self._supervisor:
            self._supervisor.join(STOP_GRACE_S)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as file:
                file.seek(0, 2)
                file.seek(max(0, file.tell() - LOG_TAIL_BYTES))
                return file.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    # --- the supervisor thread

    def _supervise(self) -> None:
        delay = RESTART_DELAY_S
        while not self._closing.is_set():
            started = time.monotonic()
            problem = self._run_once()
            if self._closing.is_set():
                break
            if not self._first_start.is_set():
                self._first_error = problem
                self._first_start.set()
                return
            if time.monotonic() - started > STABLE_AFTER_S:
                delay = RESTART_DELAY_S
            log.warning("%s %s; restarting it in %.1f s", self.label, problem, delay)
            if self._closing.wait(delay):
                break
            delay = min(delay * 2, MAX_RESTART_DELAY_S)
            self.restarts += 1

    def _run_once(self) -> str:
        """Run the server until it exits; what went wrong, in words."""
        self.socket_path.unlink(missing_ok=True)
        with self._signal_lock:
            self._paused = False
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                self._command(self.directory),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # only prctl and nice: safe between fork and exec
                preexec_fn=functools.partial(_prepare_child, self.nice),
            )
        process = self._process
        if not self._wait_healthy(process):
            if process.poll() is None:
                process.kill()
                process.wait()
                return f"did not become ready within {START_TIMEOUT_S:g} s{self._tail_clause()}"
            return f"exited while loading: {describe_exit(process.returncode)}{self._tail_clause()}"
        self.ready.set()
        log.info("%s is ready (pid %d)", self.label, process.pid)
        if self._first_start.is_set():
            self._on_restart()
        self._first_start.set()
        returncode = process.wait()
        self.ready.clear()
        return f"died: {describe_exit(returncode)}"

    def _wait_healthy(self, process: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(transport=self.transport(), timeout=_HEALTH_TIMEOUT_S) as client:
            while time.monotonic() < deadline and not self._closing.is_set():
                if process.poll() is not None:
                    return False
                try:
                    if client.get("http://llama-server/health").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass  # not listening yet, or still loading the model (503)
                time.sleep(_HEALTH_POLL_S)
        return False

    def _tail_clause(self) -> str:
        tail = self.log_tail().strip()
        return f". Its last output:\n{tail}" if tail else ""
