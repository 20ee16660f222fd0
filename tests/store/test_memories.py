"""Memories and summaries on both backends (tests/store/conftest.py): slots replace, the
full-text index follows the table, searches are safe whatever the person says, and
forgetting a user leaves nothing."""

from __future__ import annotations

import pytest

from eva.store import ForgottenCounts, MemoryStore, NewMemory, SessionStore, Summary
from eva.store.search import fts_query, tsquery
from tests.store.backends import Backend


@pytest.fixture
def memories(store: SessionStore) -> MemoryStore:
    return store.memories


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
    memories.search("ana", said, 5)  # no database error, whatever was said
    query = fts_query(said)
    assert query is None or query.startswith("text : (")
    assert query is None or all(t.startswith('"') for t in query[8:-1].split(" OR "))
    pg_query = tsquery(said)
    assert pg_query is None or all(t.lstrip("(").startswith("'") for t in pg_query.split(" | "))


def test_search_ignores_case_and_accents_both_ways(memories: MemoryStore) -> None:
    memories.remember("ana", [NewMemory("likes:cafe", "like", "Loves the Café de Flore.")])
    memories.remember("ana", [NewMemory("lives_in", "place", "Lives in Orleans.")])
    assert [m.key for m in memories.search("ana", "a CAFE tonight?", 5)] == ["likes:cafe"]
    assert [m.key for m in memories.search("ana", "Je suis à Orléans", 5)] == ["lives_in"]
    assert [m.key for m in memories.search("ana", "flore", 5)] == ["likes:cafe"]


def test_search_matches_prefixes_of_long_words_and_whole_short_ones(
    memories: MemoryStore,
) -> None:
    memories.remember("ana", [NewMemory("likes:cats", "like", "Loves cats and gardening.")])
    assert [m.key for m in memories.search("ana", "my garden", 5)] == ["likes:cats"]
    assert memories.search("ana", "catalogue", 5) == []  # "cats" is no prefix of it
    assert [m.key for m in memories.search("ana", "cat", 5)] == []  # short words match whole
    assert [m.key for m in memories.search("ana", "cats", 5)] == ["likes:cats"]


def test_search_returns_at_most_limit_memories_that_match(memories: MemoryStore) -> None:
    facts = [NewMemory(f"likes:jazz{i}", "like", f"Loves jazz number {i}.") for i in range(6)]
    memories.remember("ana", facts)
    found = memories.search("ana", "jazz", 4)
    assert len(found) == 4 and all("jazz" in m.text for m in found)


def test_deleting_a_memory_removes_it_from_the_table_and_the_index(
    backend: Backend, memories: MemoryStore
) -> None:
    saved = memories.remember("ana", [NewMemory("likes:jazz", "like", "Loves jazz.", "jazz")])
    assert backend.indexed("jazz") == [saved[0].id]
    assert memories.forget("ana", saved[0].id)
    assert memories.memories("ana") == []
    assert backend.indexed("jazz") == []


def test_editing_a_memory_reindexes_it_and_drops_the_template_words(
    backend: Backend, memories: MemoryStore
) -> None:
    saved = memories.remember("ana", [NewMemory("name", "name", "Their name is Ana.", "Ana")])
    edited = memories.edit("ana", saved[0].id, "Their name is Anna, with two n.")
    assert edited is not None and edited.value is None
    assert backend.indexed("ana") == [] and backend.indexed("anna") == [saved[0].id]
    assert memories.get("ana", saved[0].id) == edited


def test_memories_lists_the_latest_first_and_finds_slots(memories: MemoryStore) -> None:
    memories.remember("ana", [NewMemory("name", "name", "Their name is Ana.", "Ana")])
    memories.remember("ana", [NewMemory("lives_in", "place", "Lives in Lyon.", "Lyon")])
    assert [m.key for m in memories.memories("ana")] == ["lives_in", "name"]
    assert [m.key for m in memories.memories("ana", limit=1)] == ["lives_in"]
    slot = memories.slot("ana", "name")
    assert slot is not None and slot.value == "Ana"
    assert memories.slot("ana", "job") is None and memories.slot("bob", "name") is None
    assert memories.forget_memories("ana") == 2 and memories.memories("ana") == []


def test_summaries_replace_and_bound_the_messages_between(
    store: SessionStore, memories: MemoryStore
) -> None:
    session = store.create_session("ana")
    turns = [store.add_turn(session.id, f"u{i}", f"a{i}") for i in range(3)]
    assert memories.summary(session.id) is None
    memories.save_summary(session.id, Summary("- u0", turns[1][0].id))
    memories.save_summary(session.id, Summary("- u0, u1", turns[2][0].id))
    assert memories.summary(session.id) == Summary("- u0, u1", turns[2][0].id)
    between = memories.messages_between(session.id, turns[1][0].id, turns[2][0].id)
    assert [m.content for m in between] == ["u1", "a1"]
    assert [m.content for m in memories.messages_between(session.id, 0, 2**63 - 1)] == [
        m.content for turn in turns for m in turn
    ]


def test_previous_session_start_is_the_latest_other_session_of_the_user(
    store: SessionStore, memories: MemoryStore
) -> None:
    first = store.create_session("ana")
    store.create_session("bob")
    current = store.create_session("ana")
    assert memories.previous_session_start("ana", current.id) == first.created_at
    assert memories.previous_session_start("ana", first.id) == current.created_at
    assert memories.previous_session_start("carl", current.id) is None


def test_forgetting_a_user_deletes_sessions_messages_memories_and_summaries(
    store: SessionStore, memories: MemoryStore, backend: Backend
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
    assert memories.summary(mine.id) is None and backend.indexed("ana") == []
    assert backend.query("SELECT COUNT(*) FROM messages") == [(2,)]  # bob's
    assert len(store.messages(other.id)) == 2
    assert memories.forget_user("ana") == ForgottenCounts(0, 0, 0, 0)


def test_search_keeps_users_apart_even_when_their_ids_share_tokens(
    memories: MemoryStore,
) -> None:
    memories.remember("ana-1", [NewMemory("likes:jazz", "like", "Loves jazz.", "jazz")])
    memories.remember("ana.1", [NewMemory("likes:jazz", "like", "Loves jazz a lot.", "jazz")])
    assert [m.text for m in memories.search("ana-1", "jazz tonight?", 5)] == ["Loves jazz."]
    assert [m.text for m in memories.search("ana.1", "jazz tonight?", 5)] == ["Loves jazz a lot."]
    assert memories.search("---", "jazz", 5) == []  # an id with no word in it still works
