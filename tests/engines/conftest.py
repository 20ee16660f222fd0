"""Shared fixtures for the engine tests: the packaged SmolLM2 model, loaded in-process and
served by llama.cpp's own OpenAI-compatible server (``llama-server`` from Eva's build),
plus small scripted HTTP servers on loopback for the behaviours a healthy server never
shows (429, silence, broken streams).
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eva.engines.llm_llamacpp import LlamaCppLLM
from eva.engines.llm_models import SMOLLM2, packaged_file
from eva.native.llama import server_command

# Loading a 135M model takes a second or two; a slow CI machine gets
# plenty of slack before the fixture gives up.
_SERVER_START_TIMEOUT_S = 90.0
_SERVER_POLL_S = 0.2
_SERVER_STOP_GRACE_S = 5.0
_LOG_TAIL_CHARS = 3000
_SHUTDOWN_POLL_S = 0.05


@pytest.fixture(scope="session")
def smollm2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return packaged_file(SMOLLM2, tmp_path_factory.mktemp("verified"))


@pytest.fixture(scope="session")
def llamacpp_llm(smollm2_path: Path) -> Iterator[LlamaCppLLM]:
    llm = LlamaCppLLM(smollm2_path, n_ctx=1024, n_threads=1)
    llm.warm_up()
    yield llm
    llm.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def closed_port_url() -> str:
    """An OpenAI-style base URL on a loopback port that nothing listens on."""
    return f"http://127.0.0.1:{free_port()}/v1"


class LlamaServer:
    """llama.cpp's ``llama-server`` serving SmolLM2 on a loopback port."""

    def __init__(self, model: Path, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = server_command(model, self.port, threads=1, ctx_size=1024)
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                pytest.fail(f"llama-server exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(_SERVER_POLL_S)
        self.stop()
        pytest.fail(f"llama-server not ready in {_SERVER_START_TIMEOUT_S} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(_SERVER_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def llama_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = LlamaServer(smollm2_path, tmp_path_factory.mktemp("llama") / "server.log")
    yield server.base_url
    server.stop()


@pytest.fixture
def own_llama_server(smollm2_path: Path, tmp_path: Path) -> Iterator[LlamaServer]:
    """A server this test alone uses, so it may stop it."""
    server = LlamaServer(smollm2_path, tmp_path / "server.log")
    yield server
    server.stop()


# --- scripted loopback servers

Respond = Callable[[http.server.BaseHTTPRequestHandler], None]


def sse_event(content: str) -> bytes:
    delta = {"index": 0, "delta": {"content": content}}
    event = {"object": "chat.completion.chunk", "choices": [delta]}
    return f"data: {json.dumps(event)}\n\n".encode()


class ScriptedServer(http.server.ThreadingHTTPServer):
    """A real HTTP server on 127.0.0.1 whose answer to each POST is ``respond``."""

    daemon_threads = True

    def __init__(self, respond: Respond) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.respond = respond
        self.requests: list[dict[str, Any]] = []
        self.released = threading.Event()  # set at teardown: frees handlers that hold on
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # scripted faults (cut connections, clients that give up) are the point here


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked bodies, so that a cut-off stream is detectable
    server: ScriptedServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        record = {"path": self.path, "headers": dict(self.headers), "body": body}
        self.server.requests.append(record)
        self.server.respond(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


def _start_chunked(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()


def _send_chunk(handler: http.server.BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


class LoopbackServers:
    """Starts scripted servers for one test; all are shut down after it."""

    def __init__(self) -> None:
        self._servers: list[ScriptedServer] = []

    def start(self, respond: Respond) -> ScriptedServer:
        server = ScriptedServer(respond)
        # a short poll interval keeps teardown (shutdown waits for one poll) quick
        threading.Thread(target=server.serve_forever, args=(_SHUTDOWN_POLL_S,), daemon=True).start()
        self._servers.append(server)
        return server

    def sse(self, deltas: list[str]) -> ScriptedServer:
        """A well-formed streamed reply made of ``deltas``."""

        def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
            _start_chunked(handler)
            for delta in deltas:
                _send_chunk(handler, sse_event(delta))
            _send_chunk(handler, b"data: [DONE]\n\n")
            _send_chunk(handler, b"")  # the terminating zero-length chunk

        return self.start(respond)

    def status(self, code: int, body: str, headers: dict[str, str] | None = None) -> ScriptedServer:
        def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
            data = body.encode()
            handler.send_response(code)
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)

        return self.start(respond)

    def silent(self) -> ScriptedServer:
        """Accepts and reads the request, then says nothing until the test is over."""

        def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
            handler.server.released.wait()  # type: ignore[attr-defined]

        return self.start(respond)

    def one_delta_then_cut(self) -> ScriptedServer:
        """Starts a reply, then drops the connection without ending the chunked body."""

        def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
            _start_chunked(handler)
            _send_chunk(handler, sse_event("Hello"))
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)

        return self.start(respond)

    def close(self) -> None:
        for server in self._servers:
            server.released.set()
            server.shutdown()
            server.server_close()


@pytest.fixture
def loopback() -> Iterator[LoopbackServers]:
    servers = LoopbackServers()
    yield servers
    servers.close()
