"""The official OpenAI SDK, pointed at a real Eva on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from eva.engines.runtime import Engines
from tests.server.servers import start_server
from tests.support import ServerThread

ALICE_KEY = "alice-0123456789abcdef"
BOB_KEY = "bob-fedcba9876543210xx"


def sdk(server: ServerThread, key: str = "no-key-needed") -> openai.OpenAI:
    # No retries: a test sees the first answer, and an error is not hidden by a second try.
    return openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key=key, max_retries=0, timeout=120.0
    )


@pytest.fixture
def client(server: ServerThread) -> Iterator[openai.OpenAI]:
    with sdk(server) as opened:
        yield opened


@pytest.fixture(scope="module")
def keyed(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = start_server(
        engines, tmp_path_factory.mktemp("keyed-v1"), api_keys=f"alice:{ALICE_KEY},bob:{BOB_KEY}"
    )
    yield running
    running.stop()
