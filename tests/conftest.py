"""Shared fixtures: the real models, loaded once per test session, and a real server on a
loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from eva.config import Settings
from eva.engines.runtime import Engines
from tests.support import ServerThread, make_settings

# Most tests use the fast brain (SmolLM2-135M) served the default way, by a supervised
# llama-server; the tests that prove the default brain ask for it by name. Set these
# variables to run the whole suite on another brain.
os.environ.setdefault("EVA_LLM_MODEL", "smollm2")
os.environ.setdefault("EVA_LLM_BACKENDS", "llamaserver")


@pytest.fixture(scope="session")
def eva_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("eva-data"))


@pytest.fixture(scope="session")
def engines(eva_settings: Settings) -> Iterator[Engines]:
    from eva.conversation.persona import load_persona

    loaded = Engines.load(
        eva_settings, progress=lambda message: None, prefix=load_persona(eva_settings).prefix
    )
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def server(eva_settings: Settings, engines: Engines) -> Iterator[ServerThread]:
    running = ServerThread(eva_settings, engines).start()
    yield running
    running.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60.0) as http:
        yield http
