"""Every store test runs on both backends: SQLite in a temporary directory, and a fresh
database of a real PostgreSQL server started for the test session (tests/pg_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eva.config import Settings
from eva.store import SessionStore
from tests.pg_server import postgres  # noqa: F401  (the fixture)
from tests.store.backends import BACKENDS, Backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", Settings(data_dir=tmp_path, database_url=""))
    url = request.getfixturevalue("postgres").create_database()
    return Backend("postgresql", Settings(data_dir=tmp_path, database_url=url))


@pytest.fixture
def store(backend: Backend) -> Iterator[SessionStore]:
    with backend.open() as opened:
        yield opened
