"""Conversation persistence in PostgreSQL: the store that several Eva processes share.

Chosen by ``EVA_DATABASE_URL=postgresql://user:password@host:port/dbname`` (eva.store's
``open_store``); the tables go where the connection's ``search_path`` points (append
``?options=-csearch_path%3Deva`` for a schema of their own). It behaves as the SQLite store
does, and the same tests (tests/store) prove it.

The schema is versioned in the table ``schema_version``. ``POSTGRES_MIGRATIONS`` is an
append-only list that mirrors SQLite's ``MIGRATIONS`` step for step (the same tables in
PostgreSQL's dialect, so a version number means one schema in both). Each step runs in one
transaction that first takes a transaction-scoped advisory lock: workers that start at
once migrate once, the others wait for the lock and then find the step applied. A database
of a newer Eva is refused. Never edit a released step: add a new one, to both lists.

Connections come from a psycopg_pool pool, which threads share (the server calls in
through ``asyncio.to_thread``); each public call borrows one connection for one statement
(autocommit: one statement, one snapshot) or for one explicit transaction.

The URL may hold a password. It is never logged, and every error raised here names the
server as ``user@host:port/dbname`` only, with the password blanked from the driver's
message should it ever appear there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from eva.store.base import MemoryStore, SessionStore, check_last
from eva.store.postgres_memories import PostgresMemoryStore
from eva.store.records import (
    MESSAGE_COLUMNS,
    MessageRecord,
    SessionRecord,
    UnknownSessionError,
    normalised_timings,
)

if TYPE_CHECKING:
    from eva.config import Settings

# How long opening the store waits for the server: a server that is up answers in
# milliseconds, so this only bounds how long `eva serve` hangs on a wrong host.
CONNECT_TIMEOUT_S = 10
# libpq options Eva sets unless the URL sets them. Every store call takes milliseconds, so
# a server that stops answering (a dead machine, a cut network) should fail the call in
# seconds, not after the kernel's two hours: TCP keepalives from 10 s of silence, 3 probes
# 5 s apart, and at most 15 s for data sent but never acknowledged.
CONNECTION_DEFAULTS: dict[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # ms
    "application_name": "eva",  # what pg_stat_activity shows
}
# Connections per Eva process. The server runs store calls in asyncio's default thread
# pool (a few threads per core), and each call holds a connection for a millisecond or so:
# 8 never makes one queue behind another, and lets a dozen workers share a default
# PostgreSQL (max_connections = 100).
POOL_MIN_CONNECTIONS = 1
POOL_MAX_CONNECTIONS = 8
# How long a call waits for a free connection (all busy, or the server gone) before
# failing: far past any healthy wait, short enough that a turn fails instead of hanging.
POOL_WAIT_S = 10.0
# The advisory lock that serialises migrations: any constant, the same in every Eva
# ("Eva" in ASCII). It is taken per database, so databases on one server don't contend.
SCHEMA_LOCK_KEY = 0x457661

POSTGRES_MIGRATIONS: Sequence[Sequence[str]] = (
    # 1: sessions and their messages
    (
        """
        CREATE TABLE sessions (
            id          TEXT PRIMARY KEY,
            user_id     TEXT,
            created_at  DOUBLE PRECISION NOT NULL,
            updated_at  DOUBLE PRECISION NOT NULL
        )
        """,
        # Sequences never hand out an id twice, so ids stay monotonic. This one steps by 2:
        # a turn takes one value for its question and uses the next for its reply, so the
        # two are adjacent even while other workers write (see PostgresStore.add_turn).
        "CREATE SEQUENCE message_ids INCREMENT BY 2",
        """
        CREATE TABLE messages (
            id           BIGINT PRIMARY KEY DEFAULT nextval('message_ids'),
            session_id   TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            role         TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content      TEXT NOT NULL,
            created_at   DOUBLE PRECISION NOT NULL,
            timings      JSONB,
            interrupted  BOOLEAN NOT NULL DEFAULT false
        )
        """,
        "ALTER SEQUENCE message_ids OWNED BY messages.id",
        "CREATE INDEX messages_by_session ON messages (session_id, id)",
    ),
    # 2: long-term memories of a user with their full-text index, and conversation
    # summaries (eva/store/postgres_memories.py reads and writes them)
    (
        # One row per slot: (user_id, key) is unique, so a changed fact replaces the old one.
        # ``search`` holds the words of ``text`` (eva.store.search.tsvector), written with it.
        """
        CREATE TABLE memories (
            id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id            TEXT NOT NULL,
            key                TEXT NOT NULL,
            kind               TEXT NOT NULL,
            text               TEXT NOT NULL,
            value              TEXT,
            created_at         DOUBLE PRECISION NOT NULL,
            updated_at         DOUBLE PRECISION NOT NULL,
            source_message_id  BIGINT REFERENCES messages(id) ON DELETE SET NULL,
            search             TSVECTOR NOT NULL,
            UNIQUE (user_id, key)
        )
        """,
        "CREATE INDEX memories_by_user ON memories (user_id, updated_at)",
        "CREATE INDEX memories_search ON memories USING gin (search)",
        # The older part of a session, condensed; the messages themselves stay.
        """
        CREATE TABLE summaries (
            session_id       TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
            text             TEXT NOT NULL,
            upto_message_id  BIGINT NOT NULL,
            updated_at       DOUBLE PRECISION NOT NULL
        )
        """,
    ),
    # 3: a user's sessions found without reading everyone's
    ("CREATE INDEX sessions_by_user ON sessions (user_id, created_at)",),
)

Connection = psycopg.Connection[TupleRow]
Cursor = psycopg.Cursor[TupleRow]


class PostgresStore(SessionStore):
    """Sessions and messages in a PostgreSQL database; safe to share between threads, and
    between processes on any machine that reaches the server."""

    def __init__(self, url: str) -> None:
        self.where = describe(url)  # what messages may say about the database
        options = conninfo_to_dict(url)  # a valid URL: describe() would have said otherwise
        connect = {k: v for k, v in CONNECTION_DEFAULTS.items() if k not in options}
        connect["autocommit"] = True
        try:
            # One connection of its own first: a wrong URL fails here with the server's
            # reason, where the pool would only time out.
            with psycopg.connect(url, **connect) as conn:
                _migrate(conn, self.where)
        except psycopg.Error as exc:
            raise RuntimeError(f"PostgreSQL at {self.where}: {redact(str(exc), url)}") from None
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            kwargs=connect,
            min_size=POOL_MIN_CONNECTIONS,
            max_size=POOL_MAX_CONNECTIONS,
            timeout=POOL_WAIT_S,
            # A connection the server dropped (restart, failover) is replaced, not handed out.
            check=ConnectionPool.check_connection,
            name="eva-store",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout:
            self._pool.close()
            raise RuntimeError(f"PostgreSQL at {self.where}: no connection within "
                               f"{CONNECT_TIMEOUT_S} s") from None  # fmt: skip
        self._memories = PostgresMemoryStore(self)

    @property
    def memories(self) -> MemoryStore:
        return self._memories

    def connection(self) -> AbstractContextManager[Connection]:
        """A pooled connection in autocommit, for the sibling module (postgres_memories)."""
        return self._pool.connection()

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """One transaction on a pooled connection; committed on success, rolled back on
        error."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def create_session(self, user_id: str | None = None) -> SessionRecord:
        now = time.time()
        record = SessionRecord(id=uuid.uuid4().hex, user_id=user_id, created_at=now, updated_at=now)
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO sessions (id, user_id, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s)",
                (record.id, record.user_id, record.created_at, record.updated_at),
            )
        return record

    def get_session(self, session_id: str) -> SessionRecord | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT id, user_id, created_at, updated_at FROM sessions WHERE id = %s",
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
        now = time.time()
        with self.transaction() as cur:
            user_id = self._touch(cur, session_id, now)
            reply_id = user_id + 1  # the sequence steps by 2: this one is ours too
            cur.execute(
                "INSERT INTO messages (id, session_id, role, content, created_at, timings,"
                " interrupted) VALUES (%s, %s, 'user', %s, %s, NULL, false),"
                " (%s, %s, 'assistant', %s, %s, %s, %s)",
                (user_id, session_id, user_text, now,
                 reply_id, session_id, assistant_text, now,
                 None if stored_timings is None else Jsonb(stored_timings), interrupted),
            )  # fmt: skip
        return (
            MessageRecord(user_id, session_id, "user", user_text, now, None, False),
            MessageRecord(
                reply_id, session_id, "assistant", assistant_text, now, stored_timings, interrupted
            ),
        )

    def add_assistant_message(self, session_id: str, text: str) -> MessageRecord:
        now = time.time()
        with self.transaction() as cur:
            message_id = self._touch(cur, session_id, now)
            cur.execute(
                "INSERT INTO messages (id, session_id, role, content, created_at, interrupted)"
                " VALUES (%s, %s, 'assistant', %s, %s, false)",
                (message_id, session_id, text, now),
            )
        return MessageRecord(message_id, session_id, "assistant", text, now, None, False)

    @staticmethod
    def _touch(cur: Cursor, session_id: str, now: float) -> int:
        """Bump the session's ``updated_at`` and take a pair of message ids.

        The UPDATE locks the session's row until the transaction ends, so the turns of one
        session get their ids in the order they are stored, whichever worker stores them.
        """
        cur.execute(
            "UPDATE sessions SET updated_at = %s WHERE id = %s RETURNING nextval('message_ids')",
            (now, session_id),
        )
        row = cur.fetchone()
        if row is None:
            raise UnknownSessionError(session_id)
        first_id: int = row[0]
        return first_id

    def cut_reply(self, session_id: str, message_id: int, heard: str) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute(
                "UPDATE messages SET content = %s, interrupted = true"
                " WHERE id = %s AND session_id = %s AND role = 'assistant'",
                (heard, message_id, session_id),
            )
            return cur.rowcount == 1

    def messages(self, session_id: str, last: int | None = None) -> list[MessageRecord]:
        check_last(last)
        columns = ", ".join(f"m.{c}" for c in MESSAGE_COLUMNS.split(", "))
        with self._pool.connection() as conn:
            # One statement, so the session and its messages come from one snapshot: no row
            # means no such session, one row of NULLs a session without messages. Newest
            # first with LIMIT (NULL: no limit), reversed below.
            rows = conn.execute(
                f"SELECT {columns} FROM sessions AS s LEFT JOIN LATERAL ("
                "   SELECT * FROM messages WHERE session_id = s.id ORDER BY id DESC LIMIT %s"
                ") AS m ON true WHERE s.id = %s",
                (last, session_id),
            ).fetchall()
        if not rows:
            raise UnknownSessionError(session_id)
        return [MessageRecord.from_row(row) for row in reversed(rows) if row[0] is not None]

    def count_sessions(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()
        assert row is not None
        count: int = row[0]
        return count

    def close(self) -> None:
        self._pool.close()  # a second close does nothing


def _migrate(conn: Connection, where: str) -> None:
    for version, statements in enumerate(POSTGRES_MIGRATIONS, start=1):
        with conn.transaction():
            # Held until this step's transaction ends; another worker waits here, then
            # reads the version this one wrote.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            found = _schema_version(conn)
            if found > len(POSTGRES_MIGRATIONS):
                # Written by a newer Eva: running old code on it could corrupt the new tables.
                raise RuntimeError(
                    f"PostgreSQL at {where} has schema version {found}, newer than this "
                    f"Eva's {len(POSTGRES_MIGRATIONS)}; upgrade Eva or point "
                    "EVA_DATABASE_URL at another database"
                )
            if found >= version:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = %s", (version,))


def _schema_version(conn: Connection) -> int:
    """The database's schema version (0: a new database), under the migration lock."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def describe(url: str) -> str:
    """``user@host:port/dbname`` of a PostgreSQL URL: what messages and logs may show.

    Raises ValueError, without repeating the URL, when it is not one."""
    try:
        options = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ValueError(
            "EVA_DATABASE_URL is not a PostgreSQL URL (postgresql://user:password@host:port/dbname)"
        ) from None
    user = f"{options['user']}@" if options.get("user") else ""
    host = options.get("host") or options.get("hostaddr") or "localhost"
    port = f":{options['port']}" if options.get("port") else ""
    return f"{user}{host}{port}/{options.get('dbname', '')}"


def redact(message: str, url: str) -> str:
    """``message`` without the URL's password, as typed or percent-encoded."""
    try:
        password = str(conninfo_to_dict(url).get("password") or "")
    except psycopg.ProgrammingError:
        return message
    for form in {password, quote(password, safe="")} - {""}:
        message = message.replace(form, "***")
    return message


def create(settings: Settings) -> PostgresStore:
    """The backend for eva.store.open_store."""
    return PostgresStore(settings.database_url.strip())
