"""What only the SQLite store does: its file, its pragmas, its schema version."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from eva.store import NewMemory
from eva.store.sqlite import MIGRATIONS, SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "eva.db") as opened:
        yield opened


def test_the_files_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "eva.db"
    with SqliteStore(path) as store:
        store.create_session()
    assert path.is_file()


def test_wal_mode_and_pragmas_are_on(store: SqliteStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    # Per-connection settings, checked on the store's own connection.
    assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_user_version_equals_number_of_migrations(tmp_path: Path) -> None:
    path = tmp_path / "eva.db"
    SqliteStore(path).close()
    SqliteStore(path).close()  # reopening an up-to-date file applies nothing twice
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        conn.close()


def test_database_from_newer_eva_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "eva.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        SqliteStore(path)


def test_a_version_one_database_migrates_and_keeps_its_conversations(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO sessions VALUES ('s1', 'ana', 1.0, 1.0)")
    conn.execute("INSERT INTO messages (session_id, role, content, created_at) VALUES"
                 " ('s1', 'user', 'hello', 1.0)")  # fmt: skip
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with SqliteStore(path) as store:
        assert [m.content for m in store.messages("s1")] == ["hello"]
        store.memories.remember("ana", [NewMemory("name", "name", "Their name is Ana.")])
        with store.read() as read:
            assert read.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
