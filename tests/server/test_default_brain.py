"""The default brain, as ``./start.sh`` serves it: Qwen2.5-Coder-1.5B joined from its
packages, verified, and served by a supervised llama-server. The rest of the suite uses the
fast brain (tests/conftest.py); these tests prove the default understands."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eva.conversation.persona import load_persona
from eva.engines.llm_models import DEFAULT_MODEL
from eva.engines.runtime import Engines
from tests.support import ServerThread, make_settings


@pytest.fixture(scope="module")
def default_brain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    settings = make_settings(
        Path(tmp_path_factory.mktemp("default-brain")),
        llm_model=DEFAULT_MODEL,
        llm_backends=["llamaserver"],
        llm_slots=2,
    )
    engines = Engines.load(
        settings, progress=lambda message: None, prefix=load_persona(settings).prefix
    )
    server = ServerThread(settings, engines).start()
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        yield client
    server.stop()
    engines.close()


def test_the_default_brain_is_the_packaged_1_5b_served_by_llama_server(
    default_brain: httpx.Client,
) -> None:
    assert DEFAULT_MODEL == "qwen2.5-coder-1.5b"
    assert default_brain.get("/health").json()["backends"]["llm"] == "llamaserver"


def test_the_default_brain_knows_a_simple_fact(default_brain: httpx.Client) -> None:
    reply = default_brain.post("/chat", json={"message": "How many legs does a spider have?"})
    assert reply.status_code == 200, reply.text
    assert re.search(r"\b(eight|8)\b", reply.json()["response"].lower()), reply.json()


def test_the_default_brain_uses_what_it_was_told_earlier_in_the_conversation(
    default_brain: httpx.Client,
) -> None:
    first = default_brain.post(
        "/chat", json={"message": "My sister Camille lives in Lyon and she is a nurse."}
    ).json()
    again = default_brain.post(
        "/chat",
        json={"message": "What does my sister do for a living?", "session_id": first["session_id"]},
    )
    assert again.status_code == 200, again.text
    assert "nurse" in again.json()["response"].lower(), again.json()
