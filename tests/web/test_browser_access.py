"""The browser client against a server that requires an API key: it asks for one, says so
when a key is refused, and talks to Eva once a valid key is entered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from eva.engines.runtime import Engines
from tests.support import ServerThread, make_settings
from tests.web.test_browser import (
    CONNECT_TIMEOUT_MS,
    RECORD_WIRE,
    EvaPage,
    Launch,
    launch,  # noqa: F401  (the fixture)
    playwright,  # noqa: F401  (the fixture)
    restarted_on_same_port,
)

KEY = "browser-key-0123456789"


@pytest.fixture(scope="module")
def keyed(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path_factory.mktemp("keyed-web"), api_keys=f"ana:{KEY}")
    running = ServerThread(settings, engines).start()
    yield running
    running.stop()


class KeyedPage(EvaPage):
    """The page before it is connected: EvaPage waits for a connection that needs a key."""

    def __init__(self, context: Any, base_url: str) -> None:
        self.page = context.pages[0] if context.pages else context.new_page()
        self.script_errors: list[str] = []
        self.page.on("pageerror", lambda error: self.script_errors.append(str(error)))
        self.page.add_init_script(RECORD_WIRE)
        self.page.goto(f"{base_url}/")


def test_page_asks_for_a_key_refuses_a_wrong_one_and_works_with_the_right_one(
    launch: Launch,  # noqa: F811
    keyed: ServerThread,
) -> None:
    eva = KeyedPage(launch(), keyed.base_url)
    form = eva.page.locator("#key-form")
    form.wait_for(state="visible", timeout=CONNECT_TIMEOUT_MS)
    assert "Enter your API key" in eva.page.locator("#key-message").inner_text()
    assert eva.debug()["connected"] is False

    eva.page.get_by_label("API key").fill("not-the-key-at-all-000")
    eva.page.get_by_role("button", name="Use this key").click()
    eva.wait_until("document.getElementById('key-message').textContent.includes('not accepted')")
    assert form.is_visible() and eva.debug()["connected"] is False

    eva.page.get_by_label("API key").fill(KEY)
    eva.page.get_by_role("button", name="Use this key").click()
    eva.wait_until("window.evaDebug.connected", CONNECT_TIMEOUT_MS)
    assert form.is_hidden()
    assert eva.page.evaluate("localStorage.getItem('eva.api_key')") == KEY
    eva.wait_until("!document.getElementById('voice').disabled")  # /voices with the key

    eva.send_typed("Hello Eva, this is Ana.")
    replies = eva.wait_for_finished_replies()
    assert len(replies) == 1 and replies[0].strip()

    # A reload keeps the key: no form, straight back to the conversation.
    eva.page.reload()
    eva.wait_until("window.evaDebug.connected", CONNECT_TIMEOUT_MS)
    assert form.is_hidden()
    assert eva.script_errors == []


def test_a_revoked_key_is_asked_for_again_and_the_conversation_resumes(
    launch: Launch,  # noqa: F811
    engines: Engines,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("revoked-key")
    first = ServerThread(make_settings(data_dir, api_keys=f"ana:{KEY}"), engines).start()
    second: ServerThread | None = None
    try:
        eva = KeyedPage(launch(), first.base_url)
        eva.page.get_by_label("API key").fill(KEY)
        eva.page.get_by_role("button", name="Use this key").click()
        eva.wait_until("window.evaDebug.connected", CONNECT_TIMEOUT_MS)
        session_id = eva.debug()["sessionId"]

        # The operator replaces Ana's key and restarts Eva: the page's key is refused.
        first.stop()
        new_key = "browser-key-rotated-98765"
        second = restarted_on_same_port(
            first, make_settings(data_dir, api_keys=f"ana:{new_key}"), engines
        )
        eva.wait_until(
            "document.getElementById('key-message').textContent.includes('no longer accepted')",
            CONNECT_TIMEOUT_MS,
        )
        assert eva.debug()["connected"] is False

        eva.page.get_by_label("API key").fill(new_key)
        eva.page.get_by_role("button", name="Use this key").click()
        eva.wait_until("window.evaDebug.connected", CONNECT_TIMEOUT_MS)
        assert eva.debug()["sessionId"] == session_id  # the same owner: her conversation
        assert eva.script_errors == []
    finally:
        (second or first).stop()
