"""Conversation persistence in one SQLite file: the embedded default store.

The database runs in WAL mode with ``synchronous=NORMAL``: a killed or crashed process never
loses a committed transaction (only a power cut can drop the last few, which is acceptable for
chat history), and readers never block the writer.

The schema is versioned with ``PRAGMA user_version``. ``MIGRATIONS`` is an append-only list;
step *n* (1-based) brings the file from version *n - 1* to *n* inside one transaction, so a
crash during a migration leaves the file at the previous version. Never edit a released step:
add a new one.

One connection is shared by every thread (the server calls in through ``asyncio.to_thread``)
and guarded by a lock, which also serialises transactions; each public call is one short
transaction. ``eva.store.postgres`` is the same store in PostgreSQL (``POSTGRES_MIGRATIONS``
there mirrors this list step for step).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from eva.store.base import MemoryStore, SessionStore, check_last
from eva.store.records import (
    MESSAGE_COLUMNS,
    MessageRecord,
    SessionRecord,
    UnknownSessionError,
    normalised_timings,
)
from eva.store.sqlite_memories import SqliteMemoryStore

if TYPE_CHECKING:
    from eva.config import Settings

# Importable from here as before issue 14 (the server's modules still do).
__all__ = ["MIGRATIONS", "MessageRecord", "SessionRecord", "SqliteStore", "Store",
           "UnknownSessionError"]  # fmt: skip

# How long a writer waits for another process's lock (e.g. a CLI inspecting the file) before
# giving up with "database is locked"; our own threads never wait on it thanks to the lock.
BUSY_TIMEOUT_MS = 5_000

MIGRATIONS: Sequence[Sequence[str]] = (
    # 1: sessions and their messages
    (
        """
        CREATE TABLE sessions (
            id          TEXT PRIMARY KEY,
            user_id     TEXT,
            created_at  REAL NOT NULL,
            updated_at  REAL NOT NULL
        )
        """,
        # AUTOINCREMENT so ids never get reused, even after deletes: ids stay monotonic.
        """
        CREATE TABLE messages (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id   TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            role         TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content      TEXT NOT NULL,
            created_at   REAL NOT NULL,
            timings      TEXT,
            interrupted  INTEGER NOT NULL DEFAULT 0 CHECK (interrupted IN (0, 1))
        )
        """,
        "CREATE INDEX messages_by_session ON messages (session_id, id)",
    ),
    # 2: long-term memories of a user, their full-text index, and conversation summaries
    # (eva/store/sqlite_memories.py reads and writes them)
    (
        # One row per slot: (user_id, key) is unique, so a changed fact replaces the old one.
        """
        CREATE TABLE memories (
            id                 INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id            TEXT NOT NULL,
            key                TEXT NOT NULL,
            kind               TEXT NOT NULL,
            text               TEXT NOT NULL,
            value              TEXT,
            created_at         REAL NOT NULL,
            updated_at         REAL NOT NULL,
            source_message_id  INTEGER REFERENCES messages(id) ON DELETE SET NULL,
            UNIQUE (user_id, key)
        )
        """,
        "CREATE INDEX memories_by_user ON memories (user_id, updated_at)",
        # External content: the index holds only tokens; the triggers keep it in step. The
        # owner is indexed too, so that a search reads one user's rows, not everyone's.
        """
        CREATE VIRTUAL TABLE memories_fts USING fts5(
            text, user_id, content='memories', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        )
        """,
        """
        CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
            INSERT INTO memories_fts (rowid, text, user_id)
            VALUES (new.id, new.text, new.user_id);
        END
        """,
        """
        CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, text, user_id)
            VALUES ('delete', old.id, old.text, old.user_id);
        END
        """,
        """
        CREATE TRIGGER memories_au AFTER UPDATE OF text, user_id ON memories BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, text, user_id)
            VALUES ('delete', old.id, old.text, old.user_id);
            INSERT INTO memories_fts (rowid, text, user_id)
            VALUES (new.id, new.text, new.user_id);
        END
        """,
        # The older part of a session, condensed; the messages themselves stay.
        """
        CREATE TABLE summaries (
            session_id       TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
            text             TEXT NOT NULL,
            upto_message_id  INTEGER NOT NULL,
            updated_at       REAL NOT NULL
        )
        """,
    ),
    # 3: a user's sessions found without reading everyone's (the greeting asks for the
    # previous one at every session start; forgetting a user deletes them all)
    ("CREATE INDEX sessions_by_user ON sessions (user_id, created_at)",),
)


class SqliteStore(SessionStore):
    """Sessions and messages in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: the sqlite3 module must not open transactions behind our back;
        # every transaction below is explicit.
        self._conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self._conn.close()
            raise
        self._memories = SqliteMemoryStore(self)

    @property
    def memories(self) -> MemoryStore:
        return self._memories

    def _configure(self) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot enable WAL on {self.path} (got {mode!r})")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")

    def _migrate(self) -> None:
        with self._lock:
            found = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if found > len(MIGRATIONS):
            # Written by a newer Eva: running old code on it could corrupt the new tables.
            raise RuntimeError(
                f"{self.path} has schema version {found}, newer than this Eva's "
                f"{len(MIGRATIONS)}; upgrade Eva or point it at another data directory"
            )
        for version, statements in enumerate(MIGRATIONS, start=1):
            with self._transaction() as cur:
                # Re-read inside the write transaction: another process may have migrated
                # the file while we waited for the lock.
                if cur.execute("PRAGMA user_version").fetchone()[0] >= version:
                    continue
                for statement in statements:
                    cur.execute(statement)
                # user_version lives in the file header and is part of this transaction.
                cur.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction under the lock; committed on success, rolled back on error."""
        with self._lock:
            cur = self._conn.cursor()
            # IMMEDIATE takes the write lock up front, so a read-then-write cannot fail
            # half-way with SQLITE_BUSY when another process writes too.
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                # Also covers a failed COMMIT (disk full), which leaves the transaction open.
                if self._conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def write(self) -> AbstractContextManager[sqlite3.Cursor]:
        """A write transaction for the sibling modules (eva.store.sqlite_memories): same lock."""
        return self._transaction()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One read snapshot under the lock, for the sibling modules."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def create_session(self, user_id: str | None = None) -> SessionRecord:
        now = time.time()
        record = SessionRecord(id=uuid.uuid4().hex, user_id=user_id, created_at=now, updated_at=now)
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO sessions (id, user_id, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (record.id, record.user_id, record.created_at, record.updated_at),
            )
        return record

    def get_session(self, session_id: str) -> SessionRecord | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, user_id, created_at, updated_at FROM sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
        return None if row is None else SessionRecord(*row)

    def add_turn(
        self,
        session_id: str,
        user_text: str,
        assistant_text: str,
        timings: dict[str, float] | None = None,
        interrupted: bool = False,
    ) -> tuple[MessageRecord, MessageRecord]:
        stored_timings = normalised_timings(timings)
        timings_json = None if stored_timings is None else json.dumps(stored_timings)
        now = time.time()
        with self._transaction() as cur:
            cur.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
            if cur.rowcount == 0:
                raise UnknownSessionError(session_id)
            insert = (
                "INSERT INTO messages (session_id, role, content, created_at, timings, interrupted)"
                " VALUES (?, ?, ?, ?, ?, ?)"
            )
            cur.execute(insert, (session_id, "user", user_text, now, None, 0))
            user_id = cur.lastrowid
            cur.execute(
                insert,
                (session_id, "assistant", assistant_text, now, timings_json, int(interrupted)),
            )
            reply_id = cur.lastrowid
        assert user_id is not None and reply_id is not None  # set by every successful INSERT
        return (
            MessageRecord(user_id, session_id, "user", user_text, now, None, False),
            MessageRecord(
                reply_id, session_id, "assistant", assistant_text, now, stored_timings, interrupted
            ),
        )

    def add_assistant_message(self, session_id: str, text: str) -> MessageRecord:
        now = time.time()
        with self._transaction() as cur:
            cur.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
            if cur.rowcount == 0:
                raise UnknownSessionError(session_id)
            cur.execute(
                "INSERT INTO messages (session_id, role, content, created_at, interrupted)"
                " VALUES (?, 'assistant', ?, ?, 0)",
                (session_id, text, now),
            )
            message_id = cur.lastrowid
        assert message_id is not None
        return MessageRecord(message_id, session_id, "assistant", text, now, None, False)

    def cut_reply(self, session_id: str, message_id: int, heard: str) -> bool:
        with self._transaction() as cur:
            cur.execute(
                "UPDATE messages SET content = ?, interrupted = 1"
                " WHERE id = ? AND session_id = ? AND role = 'assistant'",
                (heard, message_id, session_id),
            )
            return cur.rowcount == 1

    def messages(self, session_id: str, last: int | None = None) -> list[MessageRecord]:
        check_last(last)
        with self._lock:
            # A read transaction so the existence check and the rows come from one snapshot.
            self._conn.execute("BEGIN")
            try:
                exists = self._conn.execute(
                    "SELECT 1 FROM sessions WHERE id = ?", (session_id,)
                ).fetchone()
                # Newest first with LIMIT, reversed below: -1 means "no limit" in SQLite.
                rows = self._conn.execute(
                    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ?"
                    " ORDER BY id DESC LIMIT ?",
                    (session_id, -1 if last is None else last),
                ).fetchall()
            finally:
                self._conn.execute("COMMIT")
        if exists is None:
            raise UnknownSessionError(session_id)
        return [MessageRecord.from_row(row) for row in reversed(rows)]

    def count_sessions(self) -> int:
        with self._lock:
            count: int = self._conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
        return count

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# The name of this class before PostgreSQL joined it (tests and callers of the file path).
Store = SqliteStore


def create(settings: Settings) -> SqliteStore:
    """The backend for eva.store.open_store: the file in the data directory."""
    return SqliteStore(settings.db_path)
