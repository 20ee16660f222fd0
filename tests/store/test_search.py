"""PostgreSQL's index gets the words FTS5 would see, so both backends find the same
memories for the same sentence."""

from __future__ import annotations

import sqlite3

import pytest

from eva.store.search import fts_query, tsquery, tsvector, words

SENTENCES = [
    "My sister Marie lives in Lyon.",
    "J'habite à Orléans, près de la Loire; j'adore l'été et les crêpes.",
    "Ça va? Où est le café «Chez Noël»? Deux œufs, s'il vous plaît.",
    "ÉCOLE, Île, naïve, Ñandú, Ålborg, Łódź, Straße, ŒUVRE — and façade.",
    "Call me at 06-12-34 or ana.1@example.com; my id is ana_1 (ANA-1).",
    "Decomposed: e\u0301te\u0301, cafe\u0301.",
    "Tabs\tand\nnew lines, 3.14 and 1,000, x² and ½.",
]


def _fts5_words(text: str) -> list[str]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61 remove_diacritics 2')")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    conn.execute("INSERT INTO t (rowid, x) VALUES (1, ?)", (text,))
    found = [row[0] for row in conn.execute("SELECT term FROM v ORDER BY offset")]
    conn.close()
    return found


@pytest.mark.parametrize("sentence", SENTENCES)
def test_words_are_the_words_fts5_indexes(sentence: str) -> None:
    assert words(sentence) == _fts5_words(sentence)


def test_both_queries_hold_the_same_terms() -> None:
    said = "My sisters love cooking in Orléans, and the cat too"
    assert fts_query(said) == 'text : ("sister"* OR "love"* OR "cook"* OR "orléan"* OR "cat")'
    assert tsquery(said) == "'sister':* | 'love':* | 'cook':* | 'orlean':* | 'cat'"
    assert tsquery("foo_bar baz") == "('foo' <-> 'bar':*) | 'baz'"  # one word in FTS5 too
    assert tsquery("the and of") is None and fts_query("the and of") is None


def test_the_tsvector_holds_each_word_at_its_position() -> None:
    assert tsvector("L'été, l'été!") == "'l':1 'ete':2 'l':3 'ete':4"
    assert tsvector("") == ""
