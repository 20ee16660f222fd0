"""The memory API and the greeting on a real server with the real models: a person's
memories are theirs alone (another user's is a 404), can be corrected and forgotten, and
a known person opening a new /ws session with greet=true is welcomed with what Eva
remembers, spoken and stored."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from tests.server.ws_client import VoiceClient
from tests.support import ServerThread

# Facts are stored just after the reply's last event; a client asking at once may be first.
LEARN_WAIT_S = 5.0


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def memories_of(client: httpx.Client, user: str, at_least: int = 0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + LEARN_WAIT_S
    while True:
        response = client.get("/memories", params={"user_id": user})
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["memories"]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def tell(client: httpx.Client, user: str, message: str, session_id: str | None = None) -> str:
    body = {"message": message, "user_id": user, "session_id": session_id}
    response = client.post("/chat", json=body)
    assert response.status_code == 200, response.text
    session: str = response.json()["session_id"]
    return session


def test_memories_are_listed_corrected_and_forgotten_by_their_owner_only(
    client: httpx.Client,
) -> None:
    ana, bob = new_user(), new_user()
    tell(client, ana, "My name is Ana and I live in Lyon.")
    found = {m["key"]: m for m in memories_of(client, ana, at_least=2)}
    assert found["name"]["text"] == "Their name is Ana."
    assert found["lives_in"]["text"] == "Lives in Lyon."
    assert memories_of(client, bob) == []

    name_id = found["name"]["id"]
    stranger = client.patch(f"/memories/{name_id}", json={"text": "x", "user_id": bob})
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "unknown_memory"
    assert client.delete(f"/memories/{name_id}", params={"user_id": bob}).status_code == 404

    edited = client.patch(
        f"/memories/{name_id}", json={"text": "Their name is Ana Lopes.", "user_id": ana}
    )
    assert edited.status_code == 200 and edited.json()["text"] == "Their name is Ana Lopes."
    assert client.delete(f"/memories/{name_id}", params={"user_id": ana}).status_code == 204
    assert [m["key"] for m in memories_of(client, ana)] == ["lives_in"]
    assert client.delete(f"/memories/{name_id}", params={"user_id": ana}).status_code == 404
    forgotten = client.delete("/memories", params={"user_id": ana})
    assert forgotten.json() == {"deleted": 1} and memories_of(client, ana) == []


def test_memory_routes_need_a_user_and_valid_input(client: httpx.Client) -> None:
    anonymous = client.get("/memories")
    assert anonymous.status_code == 400
    assert anonymous.json()["error"]["code"] == "user_required"
    bad_id = client.get("/memories", params={"user_id": "not a valid id!"})
    assert bad_id.json()["error"]["code"] == "invalid_user_id"
    empty = client.patch("/memories/1", json={"text": "  ", "user_id": new_user()})
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_text"
    not_a_number = client.delete("/memories/abc", params={"user_id": new_user()})
    assert not_a_number.status_code == 422


def test_deleting_a_user_removes_their_sessions_messages_and_memories(
    client: httpx.Client,
) -> None:
    ana, bob = new_user(), new_user()
    session = tell(client, ana, "I have a sister named Marie.")
    tell(client, bob, "I have a brother named Tom.")
    memories_of(client, ana, at_least=1)
    memories_of(client, bob, at_least=1)
    counts = client.delete("/users/me", params={"user_id": ana}).json()
    assert counts == {"sessions": 1, "messages": 2, "memories": 1, "summaries": 0}
    gone = client.get(f"/sessions/{session}/messages", params={"user_id": ana})
    assert gone.status_code == 404
    assert memories_of(client, ana) == []
    assert [m["text"] for m in memories_of(client, bob)] == ["Has a brother named Tom."]


async def test_a_known_person_is_greeted_with_what_eva_remembers_and_it_is_stored(
    server: ServerThread,
) -> None:
    ana = new_user()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as http:
        await http.post(
            "/chat",
            json={"message": "Hi, I'm Ana. I have a job interview tomorrow.", "user_id": ana},
        )
        await asyncio.sleep(0.5)  # the facts are stored just after the reply

        greeted = await VoiceClient.connect(server.base_url, f"user_id={ana}&greet=true")
        created = await greeted.wait_for("session.created")
        done = await greeted.wait_for("response.done")
        text = "".join(e["text"] for e in greeted.events("response.text.delta"))
        assert text == done["text"]
        assert text.startswith("Welcome back, Ana!") and "job interview" in text
        assert any(r.audio for r in greeted.received)  # spoken, not only written
        await greeted.send_json({"type": "text", "text": "Thank you for asking."})
        await greeted.wait_for("response.done", count=2)
        await greeted.close()
        stored = await http.get(
            f"/sessions/{created['session_id']}/messages", params={"user_id": ana}
        )
        roles = [(m["role"], m["content"]) for m in stored.json()["messages"]]
        assert roles[0] == ("assistant", text) and roles[1][0] == "user"

        for query in (f"user_id={ana}", f"user_id={new_user()}&greet=true"):
            quiet = await VoiceClient.connect(server.base_url, query)
            await quiet.wait_for("session.created")
            await asyncio.sleep(1.0)
            assert quiet.events("response.created") == []  # not asked, or nobody known
            await quiet.close()
