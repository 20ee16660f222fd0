"""Helpers shared by tests: real Eva servers on loopback ports (uvicorn in a thread, so
they share the models the test session loaded once)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from eva.config import Settings
from eva.engines.runtime import Engines
from eva.server.app import create_app

# Loading and warming every model takes a few seconds; a server answers /health at once.
_READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a test server. Its admission has no latency target unless a test sets
    one: a limit adapted to how fast turns happen to run on a shared CI machine would refuse
    turns in tests about something else. The adaptation is tested on a virtual clock
    (tests/conversation/test_admission.py) and under load by ``eva loadtest``."""
    overrides.setdefault("first_audio_target_s", 0)
    return Settings(data_dir=data_dir, **overrides)  # type: ignore[arg-type]


class ServerThread:
    """A real uvicorn server on 127.0.0.1, serving an Eva app over already loaded engines."""

    def __init__(self, settings: Settings, engines: Engines | None) -> None:
        self.settings = settings
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        app = create_app(settings, engines=engines)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).json()["ready"]:
                    return self
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise RuntimeError("the test server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


async def pools_are_idle(engines: Engines) -> bool:
    """Every engine worker thread takes new work at once: nothing is left running in them."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    await asyncio.gather(
        loop.run_in_executor(engines.pools.llm, lambda: None),
        loop.run_in_executor(engines.pools.tts, lambda: None),
        loop.run_in_executor(engines.pools.stt, lambda: None),
    )
    return time.monotonic() - started < 0.3


def raw_http(port: int, head: str, body: bytes = b"", timeout: float = 10.0) -> str:
    """Send a request written by hand (HTTP clients refuse to announce a body they do not
    send) and return the start of the answer, or "" if the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
        try:
            return connection.recv(65536).decode(errors="replace")
        except (ConnectionError, TimeoutError):
            return ""
