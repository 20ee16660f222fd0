"""The memory panel in a real browser: what Eva learned from a typed message shows up in
"What Eva remembers", forgetting an item removes it from the panel and the server, a new
tab is greeted by name, and "Forget everything" (confirmed) leaves nothing behind."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import ServerThread
from tests.web.test_browser import (  # the fixtures and page driver of the browser tests
    TURN_TIMEOUT_MS,
    EvaPage,
    Launch,
    launch,  # noqa: F401
    playwright,  # noqa: F401
)

MEMORY_TEXTS = "[...document.querySelectorAll('#memory-list .memory-text')].map(e => e.textContent)"


def server_memories(server: ServerThread, user_id: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=server.base_url) as http:
        found: list[dict[str, Any]] = http.get("/memories", params={"user_id": user_id}).json()[
            "memories"
        ]
    return found


def test_remembered_facts_show_in_the_panel_and_can_be_forgotten(
    launch: Launch,  # noqa: F811
    server: ServerThread,
) -> None:
    context = launch()
    eva = EvaPage(context, server.base_url)
    user_id: str = eva.page.evaluate("localStorage.getItem('eva.user_id')")
    assert user_id
    eva.send_typed("My name is Ana and I love jazz.")
    eva.wait_for_finished_replies()
    eva.page.locator("#memories summary").click()
    eva.wait_until(f"{MEMORY_TEXTS}.includes('Loves jazz.')")
    eva.wait_until(f"{MEMORY_TEXTS}.includes('Their name is Ana.')")

    eva.page.get_by_role("button", name="Forget: Loves jazz.").click()
    eva.wait_until(f"!{MEMORY_TEXTS}.includes('Loves jazz.')")
    assert [m["text"] for m in server_memories(server, user_id)] == ["Their name is Ana."]

    # A new tab is a new conversation of the same person: Eva greets her by name.
    tab = context.new_page()
    tab.goto(f"{server.base_url}/")
    tab.wait_for_function(
        "() => [...document.querySelectorAll('.turn.eva .text')]"
        ".some(line => line.textContent.startsWith('Welcome back, Ana!'))",
        timeout=TURN_TIMEOUT_MS,
    )
    tab.close()

    eva.page.once("dialog", lambda dialog: dialog.accept())
    eva.page.get_by_role("button", name="Forget everything").click()
    eva.wait_until(f"{MEMORY_TEXTS}.length === 0")
    eva.wait_until("document.querySelectorAll('#transcript .turn').length === 0")
    assert server_memories(server, user_id) == []
    assert eva.script_errors == []
