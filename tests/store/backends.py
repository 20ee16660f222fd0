"""The database of one store test, on either backend (the fixtures: conftest.py)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import psycopg

from eva.config import Settings
from eva.store import SessionStore, open_store

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Backend:
    """One test's database, and what a test may do with it besides the store's API."""

    name: str
    settings: Settings

    def open(self) -> SessionStore:
        """Another store on this test's database (a restart, or a second worker)."""
        return open_store(self.settings)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` read on a connection of the test's own, beside any store."""
        if self.name == "sqlite":
            with sqlite3.connect(self.settings.db_path) as conn:
                return conn.execute(sql).fetchall()
        with psycopg.connect(self.settings.database_url) as pg:
            return pg.execute(sql).fetchall()

    def indexed(self, word: str) -> list[int]:
        """The memories whose full-text index holds ``word``."""
        if self.name == "sqlite":
            sql = f"SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'text : \"{word}\"'"
        else:
            sql = f"SELECT id FROM memories WHERE search @@ '{word}'::tsquery"
        return sorted(row[0] for row in self.query(sql))
