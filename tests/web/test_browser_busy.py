"""The page when Eva is full: it says so kindly, waits as long as Eva asked, and joins
by itself once there is room."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from eva.engines.runtime import Engines
from tests.support import ServerThread, make_settings
from tests.web.test_browser import (
    CONNECT_TIMEOUT_MS,
    Launch,
    launch,  # noqa: F401  (the fixture)
    playwright,  # noqa: F401  (the fixture)
)
from tests.web.test_browser_access import KeyedPage


@pytest.fixture(scope="module")
def full(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path_factory.mktemp("full-web"), max_conversations=1)
    running = ServerThread(settings, engines).start()
    yield running
    running.stop()


def test_a_full_eva_is_explained_kindly_and_the_page_joins_when_there_is_room(
    launch: Launch,  # noqa: F811
    full: ServerThread,
) -> None:
    ws_url = full.base_url.replace("http://", "ws://") + "/ws"
    with connect(ws_url) as someone_else:  # takes the one conversation there is
        assert json.loads(someone_else.recv(timeout=10))["type"] == "session.created"
        eva = KeyedPage(launch(), full.base_url)  # not connected: it cannot be yet
        eva.wait_until(
            "document.getElementById('toast').textContent.includes('a lot of people')",
            timeout_ms=CONNECT_TIMEOUT_MS,
        )
        assert eva.debug()["connected"] is False
    # The other conversation ended: the page comes in by itself, no click needed.
    eva.wait_until("window.evaDebug.connected === true", timeout_ms=CONNECT_TIMEOUT_MS)
    assert eva.script_errors == []
