"""What Eva remembers about each person, and the summaries of long sessions.

The tables are created by migration step 2 in ``eva.store.sqlite``; this module reads and
writes them through the ``Store``'s lock and transactions. A memory is one *slot* of a
user (``key``: ``name``, ``lives_in``, ``likes:jazz``, ``relation:sister``): remembering a
slot again replaces what was there, which is how a changed fact replaces the old one. The
FTS5 index follows the table through triggers, so deleting a memory removes it from both.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eva.store.sqlite import MessageRecord, Store, _message_from_row

_COLUMNS = "id, user_id, key, kind, text, value, created_at, updated_at, source_message_id"
# Words of a query that carry no meaning for search; matching them would rank everything.
_STOPWORDS = frozenset(
    str.split(
        """a an the and or but if of to in on at for with from by about as is are was were be been
    am do does did have has had i me my mine you your yours we our it its this that these those
    he she him her his they them their what when where who why how which can could would should
    will just so not no yes oh ok okay really very too also there here then than now well like
    je tu il elle nous vous ils elles le la les un une des de du et ou mais est suis es sont
    que qui quoi pas ne mon ma mes ton ta tes son sa ses ce cette ces au aux en"""
    )
)
# The most words of the person's sentence a search uses: enough for any spoken sentence's
# content words, few enough that the query stays a few hundred bytes.
MAX_QUERY_TERMS = 16


@dataclass(frozen=True)
class MemoryRecord:
    id: int
    user_id: str
    key: str  # the slot: a newer fact with the same key replaces this one
    kind: str  # name, place, job, like, relation, plan, event, feeling, ...
    text: str  # the fact as Eva is told it, e.g. "Has a sister named Marie."
    value: str | None  # the person's own words for it, for templates; None once edited
    created_at: float
    updated_at: float
    source_message_id: int | None


@dataclass(frozen=True)
class NewMemory:
    key: str
    kind: str
    text: str
    value: str | None = None


@dataclass(frozen=True)
class Summary:
    text: str
    upto_message_id: int  # every message with a smaller id is condensed into ``text``


@dataclass(frozen=True)
class ForgottenCounts:
    sessions: int
    messages: int
    memories: int
    summaries: int


def fts_query(text: str, user_id: str | None = None) -> str | None:
    """A safe FTS5 query for the content words of ``text``, any of them matching.

    Every term is a quoted string of word characters, so nothing the person says can be
    read as FTS5 syntax (AND, NEAR, column filters, quotes). Words lose a plural or verb
    ending and match as prefixes, so "sisters" finds "sister" and "cooking" finds "cook".
    """
    terms: list[str] = []
    for word in re.findall(r"\w+", text.lower()):
        if word in _STOPWORDS or len(word) < 3 or word.isdigit() or word in terms:
            continue
        terms.append(word)
        if len(terms) == MAX_QUERY_TERMS:
            break
    if not terms:
        return None
    words = " OR ".join(f'"{_stem(t)}"*' if len(t) >= 4 else f'"{t}"' for t in terms)
    # The owner's id as a phrase of its tokens narrows the search to (about) their rows;
    # the SQL still checks the exact id, since "ana-1" and "ana.1" share tokens.
    owner = " ".join(re.findall(r"[a-z0-9]+", (user_id or "").lower()))
    return f'user_id : "{owner}" AND text : ({words})' if owner else f"text : ({words})"


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


class MemoryStore:
    """Memories and summaries in the ``Store``'s SQLite file; safe to share between threads."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- memories

    def remember(
        self, user_id: str, facts: Iterable[NewMemory], source_message_id: int | None = None
    ) -> list[MemoryRecord]:
        """Store ``facts``, each replacing whatever the user's same slot held."""
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
                    f" RETURNING {_COLUMNS}",
                    (user_id, fact.key, fact.kind, fact.text, fact.value, now, now,
                     source_message_id),
                )  # fmt: skip
                saved.append(_memory(cur.fetchone()))
        return saved

    def memories(self, user_id: str, limit: int | None = None) -> list[MemoryRecord]:
        """The user's memories, most recently changed first."""
        with self.store.read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM memories WHERE user_id = ?"
                " ORDER BY updated_at DESC, id DESC LIMIT ?",
                (user_id, -1 if limit is None else limit),
            ).fetchall()
        return [_memory(row) for row in rows]

    def get(self, user_id: str, memory_id: int) -> MemoryRecord | None:
        with self.store.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM memories WHERE id = ? AND user_id = ?",
                (memory_id, user_id),
            ).fetchone()
        return None if row is None else _memory(row)

    def slot(self, user_id: str, key: str) -> MemoryRecord | None:
        with self.store.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM memories WHERE user_id = ? AND key = ?", (user_id, key)
            ).fetchone()
        return None if row is None else _memory(row)

    def search(self, user_id: str, text: str, limit: int) -> list[MemoryRecord]:
        """The user's memories that share words with ``text``, best (bm25) first."""
        query = fts_query(text, user_id)
        if query is None:
            return []
        with self.store.read() as conn:
            rows = conn.execute(
                f"SELECT {', '.join('m.' + c for c in _COLUMNS.split(', '))}"
                " FROM memories_fts JOIN memories AS m ON m.id = memories_fts.rowid"
                " WHERE memories_fts MATCH ? AND m.user_id = ?"
                " ORDER BY bm25(memories_fts, 1.0, 0.0) LIMIT ?",
                (query, user_id, limit),
            ).fetchall()
        return [_memory(row) for row in rows]

    def edit(self, user_id: str, memory_id: int, text: str) -> MemoryRecord | None:
        """Replace a memory's text; None when the user has no such memory. The person's
        words (``value``) no longer describe it, so templates stop using them."""
        with self.store.write() as cur:
            row = cur.execute(
                "UPDATE memories SET text = ?, value = NULL, updated_at = ?"
                f" WHERE id = ? AND user_id = ? RETURNING {_COLUMNS}",
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
        """Every trace of the user: memories, sessions, their messages and summaries."""
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
        """When the user's latest session before ``current_session_id`` began."""
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
        """The session's messages with first_id <= id < before_id, oldest first."""
        with self.store.read() as conn:
            rows = conn.execute(
                "SELECT id, session_id, role, content, created_at, timings, interrupted"
                " FROM messages WHERE session_id = ? AND id >= ? AND id < ? ORDER BY id",
                (session_id, first_id, before_id),
            ).fetchall()
        return [_message_from_row(row) for row in rows]


def _memory(row: tuple[Any, ...]) -> MemoryRecord:
    return MemoryRecord(*row)
