"""What only the PostgreSQL store does: migrations that several workers start at once,
a schema version of its own, workers sharing one database, and URLs that hold passwords."""

from __future__ import annotations

import threading

import psycopg
import pytest

from eva.config import Settings
from eva.store import NewMemory, SessionStore, open_store
from eva.store.postgres import POSTGRES_MIGRATIONS, PostgresStore
from eva.store.sqlite import MIGRATIONS
from tests.pg_server import PostgresServer
from tests.support import free_port


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.create_database()


def _version(url: str) -> list[tuple[int]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version FROM schema_version").fetchall()


def test_both_backends_have_the_same_schema_versions() -> None:
    assert len(POSTGRES_MIGRATIONS) == len(MIGRATIONS)


def test_workers_starting_at_once_on_an_empty_database_migrate_it_once(url: str) -> None:
    workers = 4
    start = threading.Barrier(workers)
    opened: list[SessionStore] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            opened.append(PostgresStore(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []  # a second CREATE TABLE would have failed: no step ran twice
        assert _version(url) == [(len(POSTGRES_MIGRATIONS),)]
        session = opened[0].create_session("ana")
        assert all(store.get_session(session.id) == session for store in opened)
    finally:
        for store in opened:
            store.close()
    PostgresStore(url).close()  # reopening an up-to-date database applies nothing
    assert _version(url) == [(len(POSTGRES_MIGRATIONS),)]


def test_database_from_newer_eva_is_refused(url: str) -> None:
    PostgresStore(url).close()
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (len(POSTGRES_MIGRATIONS) + 1,))
    with pytest.raises(RuntimeError, match="newer"):
        PostgresStore(url)


def test_a_version_one_database_migrates_and_keeps_its_conversations(url: str) -> None:
    with psycopg.connect(url) as conn:
        for statement in POSTGRES_MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute("INSERT INTO sessions VALUES ('s1', 'ana', 1.0, 1.0)")
        conn.execute("INSERT INTO messages (session_id, role, content, created_at) VALUES"
                     " ('s1', 'user', 'hello', 1.0)")  # fmt: skip
    with PostgresStore(url) as store:
        assert [m.content for m in store.messages("s1")] == ["hello"]
        store.memories.remember("ana", [NewMemory("name", "name", "Their name is Ana.")])
    assert _version(url) == [(len(POSTGRES_MIGRATIONS),)]


def test_what_one_worker_writes_the_other_reads(url: str) -> None:
    settings = Settings(database_url=url)
    with open_store(settings) as one, open_store(settings) as other:
        session = one.create_session("ana")
        question, reply = one.add_turn(session.id, "My sister is Marie.", "Lovely name!")
        one.memories.remember(
            "ana", [NewMemory("relation:sister", "relation", "Has a sister named Marie.")],
            question.id,
        )  # fmt: skip
        assert other.get_session(session.id) == one.get_session(session.id)
        assert other.messages(session.id) == [question, reply]
        assert [m.key for m in other.memories.search("ana", "my sisters", 5)] == ["relation:sister"]
        # The session moves to the other worker and goes on there, in order.
        later = other.add_turn(session.id, "Do you remember her?", "Marie, yes.")
        assert [m.id for m in one.messages(session.id)] == [
            question.id, reply.id, later[0].id, later[1].id
        ]  # fmt: skip
        assert other.memories.forget_user("ana").messages == 4
        assert one.get_session(session.id) is None


def test_errors_never_show_the_password(postgres: PostgresServer) -> None:
    secret = "s3cret-Pass"
    closed_port = free_port()  # nothing listens there
    settings = Settings(database_url=f"postgresql://eva:{secret}@127.0.0.1:{closed_port}/eva")
    with pytest.raises(RuntimeError) as refused:
        open_store(settings)
    assert secret not in str(refused.value) and f"eva@127.0.0.1:{closed_port}/eva" in str(
        refused.value
    )
    for wrong in (f"mysql://eva:{secret}@db/eva", f"postgresql://eva:{secret}@[::1/eva"):
        with pytest.raises(ValueError) as bad:
            open_store(Settings(database_url=wrong))
        assert secret not in str(bad.value)
