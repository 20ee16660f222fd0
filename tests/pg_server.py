"""A real PostgreSQL server for the tests: Eva's own launcher (eva/cluster/postgres.py)
over Debian's binaries (the ``postgresql`` package, installed by ``scripts/install.sh
test``), ``initdb`` into a temporary directory, a free loopback port, gone at the end.

Use the ``postgres`` fixture: ``from tests.pg_server import postgres  # noqa: F401`` in a
conftest.py makes it available there.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from eva.cluster.postgres import UNSAFE_FAST_OPTIONS, LocalPostgres, postgres_bindir
from tests.support import free_port


class PostgresServer(LocalPostgres):
    """A throwaway server: no fsync, and a new database for each test that asks."""

    def __init__(self, bindir: Path) -> None:
        # Not under pytest's tmp_path: as root the server runs as another user, who must
        # be able to enter its directory (pytest's is private to root).
        super().__init__(
            Path(tempfile.mkdtemp(prefix="eva-pg-")), free_port(), UNSAFE_FAST_OPTIONS, bindir
        )
        self._databases = 0

    def create_database(self, name: str = "") -> str:
        self._databases += 1
        return super().create_database(name or f"eva_test_{self._databases}")

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL's initdb was not found: run scripts/install.sh test")
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()
