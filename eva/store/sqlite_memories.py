"""What Eva remembers about each person, and the summaries of long sessions, in SQLite.

The tables are created by migration step 2 in ``eva.store.sqlite``; this module reads and
writes them through the ``SqliteStore``'s lock and transactions. A memory is one *slot* of
a user (``key``: ``name``, ``lives_in``, ``likes:jazz``, ``relation:sister``): remembering a
slot again replaces what was there, which is how a changed fact replaces the old one. The
FTS5 index follows the table through triggers, so deleting a memory removes it from both.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from eva.store.base import MemoryStore
from eva.store.records import (
    MEMORY_COLUMNS,
    MESSAGE_COLUMNS,
    ForgottenCounts,
    MemoryRecord,
    MessageRecord,
    NewMemory,
    Summary,
)
from eva.store.search import fts_query

if TYPE_CHECKING:
    from eva.store.sqlite import SqliteStore


class SqliteMemoryStore(MemoryStore):
    """Memories and summaries in the ``SqliteStore``'s file; safe to share between threads."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    # --- memories

    def remember(
        self, user_id: str, facts: Iterable[NewMemory], source_message_id: int | None = None
    ) -> list[MemoryRecord]:
        now = time.time()
        saved: list[MemoryRecord] = []
        with self.store.write() as cur:
            for fact in facts:
                cur.execute(
                    "INSERT INTO memories (user_id, key, kind, text, value, created_at,"
                    " updated_at, source_message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (user_id, key) DO UPDATE SET kind = excluded.kind,"
                    " text = excluded.text, value = excluded.value,"
                    " updated_at = excluded.updated_at,"
                    " source_message_id = excluded.source_message_id"
                    f" RETURNING {MEMORY_COLUMNS}",
                    (user_id, fact.key, fact.kind, fact.text, fact.value, now, now,
                     source_message_id),
                )  # fmt: skip
                saved.append(_memory(cur.fetchone()))
        return saved

    def memories(self, user_id: str, limit: int | None = None) -> list[MemoryRecord]:
        with self.store.read() as conn:
            rows = conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories WHERE user_id = ?"
                " ORDER BY updated_at DESC, id DESC LIMIT ?",
                (user_id, -1 if limit is None else limit),
            ).fetchall()
        return [_memory(row) for row in rows]

    def get(self, user_id: str, memory_id: int) -> MemoryRecord | None:
        with self.store.read() as conn:
            row = conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = ? AND user_id = ?",
                (memory_id, user_id),
            ).fetchone()
        return None if row is None else _memory(row)

    def slot(self, user_id: str, key: str) -> MemoryRecord | None:
        with self.store.read() as conn:
            row = conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories WHERE user_id = ? AND key = ?",
                (user_id, key),
            ).fetchone()
        return None if row is None else _memory(row)

    def search(self, user_id: str, text: str, limit: int) -> list[MemoryRecord]:
        query = fts_query(text, user_id)  # best first: bm25
        if query is None:
            return []
        with self.store.read() as conn:
            rows = conn.execute(
                f"SELECT {', '.join('m.' + c for c in MEMORY_COLUMNS.split(', '))}"
                " FROM memories_fts JOIN memories AS m ON m.id = memories_fts.rowid"
                " WHERE memories_fts MATCH ? AND m.user_id = ?"
                " ORDER BY bm25(memories_fts, 1.0, 0.0) LIMIT ?",
                (query, user_id, limit),
            ).fetchall()
        return [_memory(row) for row in rows]

    def edit(self, user_id: str, memory_id: int, text: str) -> MemoryRecord | None:
        with self.store.write() as cur:
            row = cur.execute(
                "UPDATE memories SET text = ?, value = NULL, updated_at = ?"
                f" WHERE id = ? AND user_id = ? RETURNING {MEMORY_COLUMNS}",
                (text, time.time(), memory_id, user_id),
            ).fetchone()
        return None if row is None else _memory(row)

    def forget(self, user_id: str, memory_id: int) -> bool:
        with self.store.write() as cur:
            cur.execute("DELETE FROM memories WHERE id = ? AND user_id = ?", (memory_id, user_id))
            return cur.rowcount > 0

    def forget_memories(self, user_id: str) -> int:
        with self.store.write() as cur:
            cur.execute("DELETE FROM memories WHERE user_id = ?", (user_id,))
            return cur.rowcount

    def forget_user(self, user_id: str) -> ForgottenCounts:
        with self.store.write() as cur:
            counts = [
                cur.execute(sql, (user_id,)).fetchone()[0]
                for sql in (
                    "SELECT COUNT(*) FROM sessions WHERE user_id = ?",
                    "SELECT COUNT(*) FROM messages WHERE session_id IN"
                    " (SELECT id FROM sessions WHERE user_id = ?)",
                    "SELECT COUNT(*) FROM memories WHERE user_id = ?",
                    "SELECT COUNT(*) FROM summaries WHERE session_id IN"
                    " (SELECT id FROM sessions WHERE user_id = ?)",
                )
            ]
            cur.execute("DELETE FROM memories WHERE user_id = ?", (user_id,))
            # Messages and summaries go with their session (ON DELETE CASCADE).
            cur.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        return ForgottenCounts(*counts)

    def previous_session_start(self, user_id: str, current_session_id: str) -> float | None:
        with self.store.read() as conn:
            row = conn.execute(
                "SELECT MAX(created_at) FROM sessions WHERE user_id = ? AND id != ?",
                (user_id, current_session_id),
            ).fetchone()
        return None if row[0] is None else float(row[0])

    # --- summaries

    def summary(self, session_id: str) -> Summary | None:
        with self.store.read() as conn:
            row = conn.execute(
                "SELECT text, upto_message_id FROM summaries WHERE session_id = ?", (session_id,)
            ).fetchone()
        return None if row is None else Summary(row[0], row[1])

    def save_summary(self, session_id: str, summary: Summary) -> None:
        with self.store.write() as cur:
            cur.execute(
                "INSERT INTO summaries (session_id, text, upto_message_id, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET"
                " text = excluded.text, upto_message_id = excluded.upto_message_id,"
                " updated_at = excluded.updated_at",
                (session_id, summary.text, summary.upto_message_id, time.time()),
            )

    def messages_between(
        self, session_id: str, first_id: int, before_id: int
    ) -> Sequence[MessageRecord]:
        with self.store.read() as conn:
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS}"
                " FROM messages WHERE session_id = ? AND id >= ? AND id < ? ORDER BY id",
                (session_id, first_id, before_id),
            ).fetchall()
        return [MessageRecord.from_row(row) for row in rows]


def _memory(row: tuple[Any, ...]) -> MemoryRecord:
    return MemoryRecord(*row)
