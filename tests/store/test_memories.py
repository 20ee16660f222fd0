"""Memories and summaries in the SQLite file: slots replace, the FTS5 index follows the
table, searches are safe whatever the person says, and forgetting a user leaves nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from eva.store.memories import MemoryStore, NewMemory, Summary, fts_query
from eva.store.sqlite import MIGRATIONS, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "eva.db")
    yield s
    s.close()


@pytest.fixture
def memories(store: Store) -> MemoryStore:
    return MemoryStore(store)


def _indexed(store: Store, word: str) -> list[int]:
    with store.read() as conn:
        rows = conn.execute(
            "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?", (f'text : "{word}"',)
        ).fetchall()
    return [row[0] for row in rows]


def test_a_fact_in_the_same_slot_replaces_the_old_one(memories: MemoryStore) -> None:
    first = memories.remember("ana", [NewMemory("lives_in", "place", "Lives in Lyon.", "Lyon")])
    second = memories.remember("ana", [NewMemory("lives_in", "place", "Lives in Paris.", "Paris")])
    kept = memories.memories("ana")
    assert [m.text for m in kept] == ["Lives in Paris."]
    assert second[0].id == first[0].id  # the same memory, updated
    assert memories.search("ana", "Lyon", 5) == []
    assert [m.text for m in memories.search("ana", "paris", 5)] == ["Lives in Paris."]


def test_memories_belong_to_their_user(memories: MemoryStore) -> None:
    memories.remember("ana", [NewMemory("name", "name", "Their name is Ana.", "Ana")])
    memories.remember("bob", [NewMemory("name", "name", "Their name is Bob.", "Bob")])
    ana = memories.memories("ana")[0]
    assert [m.text for m in memories.memories("bob")] == ["Their name is Bob."]
    assert memories.get("bob", ana.id) is None
    assert memories.search("bob", "Ana", 5) == []
    assert memories.edit("bob", ana.id, "hacked") is None
    assert not memories.forget("bob", ana.id)
    assert memories.get("ana", ana.id) is not None


def test_search_ranks_matching_memories_and_finds_word_forms(memories: MemoryStore) -> None:
    memories.remember(
        "ana",
        [
            NewMemory("relation:sister", "relation", "Has a sister named Marie.", "Marie"),
            NewMemory("likes:cooking", "like", "Loves cooking Italian food.", "cooking"),
            NewMemory("lives_in", "place", "Lives in Lyon.", "Lyon"),
        ],
    )
    assert [m.key for m in memories.search("ana", "My sisters are coming over", 5)] == [
        "relation:sister"
    ]
    assert [m.key for m in memories.search("ana", "I cooked pasta", 5)] == ["likes:cooking"]
    assert [m.key for m in memories.search("ana", "What a lovely day", 5)] == []


@pytest.mark.parametrize(
    "said",
    ['"', 'name" OR user_id:*', "NEAR(a b)", "AND OR NOT", "*", "sister^2 -marie", "", "日本語"],
)
def test_search_treats_every_sentence_as_words_never_as_query_syntax(
    memories: MemoryStore, said: str
) -> None:
    memories.remember("ana", [NewMemory("name", "name", "Their name is Ana.", "Ana")])
    memories.search("ana", said, 5)  # no sqlite3.OperationalError, whatever was said
    query = fts_query(said)
    assert query is None or query.startswith("text : (")
    assert query is None or all(t.startswith('"') for t in query[8:-1].split(" OR "))


def test_deleting_a_memory_removes_it_from_the_table_and_the_index(
    store: Store, memories: MemoryStore
) -> None:
    saved = memories.remember("ana", [NewMemory("likes:jazz", "like", "Loves jazz.", "jazz")])
    assert _indexed(store, "jazz") == [saved[0].id]
    assert memories.forget("ana", saved[0].id)
    assert memories.memories("ana") == []
    assert _indexed(store, "jazz") == []


def test_editing_a_memory_reindexes_it_and_drops_the_template_words(
    store: Store, memories: MemoryStore
) -> None:
    saved = memories.remember("ana", [NewMemory("name", "name", "Their name is Ana.", "Ana")])
    edited = memories.edit("ana", saved[0].id, "Their name is Anna, with two n.")
    assert edited is not None and edited.value is None
    assert _indexed(store, "ana") == [] and _indexed(store, "anna") == [saved[0].id]


def test_forgetting_a_user_deletes_sessions_messages_memories_and_summaries(
    store: Store, memories: MemoryStore
) -> None:
    mine = store.create_session("ana")
    other = store.create_session("bob")
    user_message, _ = store.add_turn(mine.id, "My name is Ana.", "Nice to meet you, Ana!")
    store.add_turn(other.id, "Hello", "Hi!")
    name = NewMemory("name", "name", "Their name is Ana.", "Ana")
    memories.remember("ana", [name], user_message.id)
    memories.save_summary(mine.id, Summary("- My name is Ana.", user_message.id))
    counts = memories.forget_user("ana")
    assert (counts.sessions, counts.messages, counts.memories, counts.summaries) == (1, 2, 1, 1)
    assert store.get_session(mine.id) is None and memories.memories("ana") == []
    assert memories.summary(mine.id) is None and _indexed(store, "ana") == []
    with store.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 2  # bob's
    assert len(store.messages(other.id)) == 2


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
    with Store(path) as store:
        assert [m.content for m in store.messages("s1")] == ["hello"]
        MemoryStore(store).remember("ana", [NewMemory("name", "name", "Their name is Ana.")])
        with store.read() as read:
            assert read.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_greeting_is_stored_as_an_assistant_message(store: Store) -> None:
    session = store.create_session("ana")
    greeting = store.add_assistant_message(session.id, "Welcome back, Ana!")
    assert [(m.role, m.content) for m in store.messages(session.id)] == [
        ("assistant", "Welcome back, Ana!")
    ]
    assert greeting.id == store.messages(session.id)[0].id


def test_search_keeps_users_apart_even_when_their_ids_share_tokens(
    memories: MemoryStore,
) -> None:
    memories.remember("ana-1", [NewMemory("likes:jazz", "like", "Loves jazz.", "jazz")])
    memories.remember("ana.1", [NewMemory("likes:jazz", "like", "Loves jazz a lot.", "jazz")])
    assert [m.text for m in memories.search("ana-1", "jazz tonight?", 5)] == ["Loves jazz."]
    assert [m.text for m in memories.search("ana.1", "jazz tonight?", 5)] == ["Loves jazz a lot."]
    assert memories.search("---", "jazz", 5) == []  # an id with no word in it still works
