"""Servers with their own settings (keys, limits), over the models the session loaded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from eva.engines.runtime import Engines
from eva.server.serving import uvicorn_options
from tests.support import ServerThread, make_settings

StartServer = Callable[..., ServerThread]


def start_server(
    engines: Engines, data_dir: Path, as_served: bool = False, **overrides: object
) -> ServerThread:
    """A real server on loopback; ``as_served`` runs uvicorn with ``eva serve``'s options
    (no uvicorn access log, Eva's keepalive pings) instead of the test defaults."""
    settings = make_settings(data_dir, **overrides)
    running = ServerThread(settings, engines)
    if as_served:
        options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": running.port}
        config = uvicorn.Config(running.server.config.app, lifespan="on", **options)
        running.server = uvicorn.Server(config)
        running.thread = type(running.thread)(target=running.server.run, daemon=True)
    return running.start()


def servers_for_a_test(engines: Engines, tmp_path: Path) -> Iterator[StartServer]:
    """For a test module's ``start`` fixture: starts servers for one test, stops them after."""
    started: list[ServerThread] = []

    def run(as_served: bool = False, **overrides: object) -> ServerThread:
        data_dir = tmp_path / f"server-{len(started)}"
        running = start_server(engines, data_dir, as_served=as_served, **overrides)
        started.append(running)
        return running

    yield run
    for running in started:
        running.stop()
