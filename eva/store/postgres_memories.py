"""What Eva remembers about each person, and the summaries of long sessions, in PostgreSQL.

The tables are created by migration step 2 in ``eva.store.postgres``; this module reads and
writes them through the ``PostgresStore``'s pool. Slots work as in SQLite (one row per
``(user_id, key)``, ``INSERT ... ON CONFLICT``). The full-text index is the ``search``
column, the words of ``text`` as eva.store.search reads them, written in the same statement
as the text, so the index follows the table as FTS5's triggers make it follow in SQLite.
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
from eva.store.search import tsquery, tsvector

if TYPE_CHECKING:
    from eva.store.postgres import Cursor, PostgresStore

_SELECT = f"SELECT {MEMORY_COLUMNS} FROM memories"


class PostgresMemoryStore(MemoryStore):
    """Memories and summaries in the ``PostgresStore``'s database; safe to share between
    threads."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    # --- memories

    def remember(
        self, user_id: str, facts: Iterable[NewMemory], source_message_id: int | None = None
    ) -> list[MemoryRecord]:
        now = time.time()
        saved: list[MemoryRecord] = []
        with self.store.transaction() as cur:
            for fact in facts:
                cur.execute(
                    "INSERT INTO memories (user_id, key, kind, text, value, created_at,"
                    " updated_at, source_message_id, search)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::tsvector)"
                    " ON CONFLICT (user_id, key) DO UPDATE SET kind = excluded.kind,"
                    " text = excluded.text, value = excluded.value,"
                    " updated_at = excluded.updated_at,"
                    " source_message_id = excluded.source_message_id,"
                    " search = excluded.search"
                    f" RETURNING {MEMORY_COLUMNS}",
                    (user_id, fact.key, fact.kind, fact.text, fact.value, now, now,
                     source_message_id, tsvector(fact.text)),
                )  # fmt: skip
                saved.append(_memory(cur.fetchone()))
        return saved

    def memories(self, user_id: str, limit: int | None = None) -> list[MemoryRecord]:
        with self.store.connection() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE user_id = %s ORDER BY updated_at DESC, id DESC LIMIT %s",
                (user_id, limit),  # LIMIT NULL: all of them
            ).fetchall()
        return [_memory(row) for row in rows]

    def get(self, user_id: str, memory_id: int) -> MemoryRecord | None:
        with self.store.connection() as conn:
            row = conn.execute(
                f"{_SELECT} WHERE id = %s AND user_id = %s", (memory_id, user_id)
            ).fetchone()
        return None if row is None else _memory(row)

    def slot(self, user_id: str, key: str) -> MemoryRecord | None:
        with self.store.connection() as conn:
            row = conn.execute(
                f"{_SELECT} WHERE user_id = %s AND key = %s", (user_id, key)
            ).fetchone()
        return None if row is None else _memory(row)

    def search(self, user_id: str, text: str, limit: int) -> list[MemoryRecord]:
        query = tsquery(text)
        if query is None:
            return []
        with self.store.connection() as conn:
            # ts_rank's normalisation 1 divides by the log of a memory's length: like bm25,
            # more matching words rank higher, and a short memory above a long one.
            rows = conn.execute(
                f"{_SELECT}, CAST(%s AS tsquery) AS q WHERE user_id = %s AND search @@ q"
                " ORDER BY ts_rank(search, q, 1) DESC, id LIMIT %s",
                (query, user_id, limit),
            ).fetchall()
        return [_memory(row) for row in rows]

    def edit(self, user_id: str, memory_id: int, text: str) -> MemoryRecord | None:
        with self.store.connection() as conn:
            row = conn.execute(
                "UPDATE memories SET text = %s, value = NULL, updated_at = %s,"
                " search = %s::tsvector"
                f" WHERE id = %s AND user_id = %s RETURNING {MEMORY_COLUMNS}",
                (text, time.time(), tsvector(text), memory_id, user_id),
            ).fetchone()
        return None if row is None else _memory(row)

    def forget(self, user_id: str, memory_id: int) -> bool:
        with self.store.connection() as conn:
            cur = conn.execute(
                "DELETE FROM memories WHERE id = %s AND user_id = %s", (memory_id, user_id)
            )
            return cur.rowcount > 0

    def forget_memories(self, user_id: str) -> int:
        with self.store.connection() as conn:
            return conn.execute("DELETE FROM memories WHERE user_id = %s", (user_id,)).rowcount

    def forget_user(self, user_id: str) -> ForgottenCounts:
        with self.store.transaction() as cur:
            # Locking the sessions first holds off any turn being stored in them (a turn
            # updates its session's row first), so the counts are what gets deleted.
            cur.execute("SELECT id FROM sessions WHERE user_id = %s FOR UPDATE", (user_id,))
            sessions = [row[0] for row in cur.fetchall()]
            messages = _count_in(cur, "messages", sessions)
            summaries = _count_in(cur, "summaries", sessions)
            memories = cur.execute("DELETE FROM memories WHERE user_id = %s", (user_id,)).rowcount
            # Messages and summaries go with their session (ON DELETE CASCADE).
            cur.execute("DELETE FROM sessions WHERE id = ANY(%s::text[])", (sessions,))
        return ForgottenCounts(len(sessions), messages, memories, summaries)

    def previous_session_start(self, user_id: str, current_session_id: str) -> float | None:
        with self.store.connection() as conn:
            row = conn.execute(
                "SELECT MAX(created_at) FROM sessions WHERE user_id = %s AND id != %s",
                (user_id, current_session_id),
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # --- summaries

    def summary(self, session_id: str) -> Summary | None:
        with self.store.connection() as conn:
            row = conn.execute(
                "SELECT text, upto_message_id FROM summaries WHERE session_id = %s",
                (session_id,),
            ).fetchone()
        return None if row is None else Summary(row[0], row[1])

    def save_summary(self, session_id: str, summary: Summary) -> None:
        with self.store.connection() as conn:
            conn.execute(
                "INSERT INTO summaries (session_id, text, upto_message_id, updated_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (session_id) DO UPDATE SET"
                " text = excluded.text, upto_message_id = excluded.upto_message_id,"
                " updated_at = excluded.updated_at",
                (session_id, summary.text, summary.upto_message_id, time.time()),
            )

    def messages_between(
        self, session_id: str, first_id: int, before_id: int
    ) -> Sequence[MessageRecord]:
        with self.store.connection() as conn:
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages"
                " WHERE session_id = %s AND id >= %s AND id < %s ORDER BY id",
                (session_id, first_id, before_id),
            ).fetchall()
        return [MessageRecord.from_row(row) for row in rows]


def _count_in(cur: Cursor, table: str, sessions: list[str]) -> int:
    """How many rows of ``table`` belong to ``sessions``."""
    row = cur.execute(
        f"SELECT COUNT(*) FROM {table} WHERE session_id = ANY(%s::text[])", (sessions,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _memory(row: tuple[Any, ...] | None) -> MemoryRecord:
    assert row is not None  # RETURNING of a successful INSERT ... ON CONFLICT DO UPDATE
    return MemoryRecord(*row)
