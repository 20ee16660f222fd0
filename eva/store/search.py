"""Which words of a sentence search a person's memories, for both databases.

One list of terms (``search_terms``) becomes an FTS5 query for SQLite (``fts_query``) or a
tsquery for PostgreSQL (``tsquery``), so the same sentence finds the same memories in both.
SQLite's index splits and folds words with FTS5's ``unicode61 remove_diacritics 2``; for
PostgreSQL, ``words`` does the same in Python and the index is given the words themselves
(``tsvector``), never PostgreSQL's parser: no ``unaccent`` extension, no dependence on the
server's locale, and the same words as FTS5 for Latin scripts (tests/store/test_search.py
compares them with FTS5's own vocabulary).
"""

from __future__ import annotations

import re
import unicodedata

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
# PostgreSQL keeps word positions up to this (larger ones are stored as this).
_MAX_POSITION = 16383
# The combining accents that FTS5's remove_diacritics drops from a word.
_COMBINING = range(0x300, 0x370)
# FTS5's case folding where it differs from str.lower().
_FOLD = {"ſ": "s", "µ": "μ", "ς": "σ"}


def search_terms(text: str) -> list[tuple[str, bool]]:
    """The content words of ``text``, each with whether it matches as a prefix.

    Words lose a plural or verb ending and match as prefixes, so "sisters" finds "sister"
    and "cooking" finds "cook"; words under four letters match whole.
    """
    terms: list[str] = []
    for word in re.findall(r"\w+", text.lower()):
        if word in _STOPWORDS or len(word) < 3 or word.isdigit() or word in terms:
            continue
        terms.append(word)
        if len(terms) == MAX_QUERY_TERMS:
            break
    return [(_stem(t), True) if len(t) >= 4 else (t, False) for t in terms]


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def fts_query(text: str, user_id: str | None = None) -> str | None:
    """A safe FTS5 query for the content words of ``text``, any of them matching.

    Every term is a quoted string of word characters, so nothing the person says can be
    read as FTS5 syntax (AND, NEAR, column filters, quotes).
    """
    terms = search_terms(text)
    if not terms:
        return None
    words = " OR ".join(f'"{t}"*' if prefix else f'"{t}"' for t, prefix in terms)
    # The owner's id as a phrase of its tokens narrows the search to (about) their rows;
    # the SQL still checks the exact id, since "ana-1" and "ana.1" share tokens.
    owner = " ".join(re.findall(r"[a-z0-9]+", (user_id or "").lower()))
    return f'user_id : "{owner}" AND text : ({words})' if owner else f"text : ({words})"


def words(text: str) -> list[str]:
    """The words of ``text`` as FTS5's unicode61 tokenizer (remove_diacritics 2) sees
    them: runs of letters, digits and private-use characters, lower-cased, Latin letters
    without their accents."""
    found: list[str] = []
    current: list[str] = []
    for ch in text:
        if ord(ch) in _COMBINING:
            continue  # an accent written apart (decomposed text): part of the word, dropped
        category = unicodedata.category(ch)
        if category[0] in "LN" or category == "Co":
            current.append(_fold(ch))
        elif current:
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    return found


def _fold(ch: str) -> str:
    if ord(ch) < 0x250 or 0x1E00 <= ord(ch) < 0x1F00:  # Latin letters: "é" is "e"
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if ord(c) not in _COMBINING)
        if len(base) == 1 and base.isascii():
            ch = base
    return _FOLD.get(ch, ch.lower())


def _lexeme(word: str) -> str:
    # words() yields letters and digits only; quoting keeps even a stray quote a literal.
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector(text: str) -> str:
    """PostgreSQL tsvector input for ``text``: its words with their positions, so that a
    term of several words (``foo_bar``) matches as a phrase, as in FTS5."""
    return " ".join(
        f"{_lexeme(w)}:{min(i, _MAX_POSITION)}" for i, w in enumerate(words(text), start=1)
    )


def tsquery(text: str) -> str | None:
    """PostgreSQL tsquery input matching what ``fts_query`` matches: any of the terms, a
    term of several words as a phrase, a prefix term's last word as a prefix."""
    alternatives: list[str] = []
    for term, prefix in search_terms(text):
        parts = [_lexeme(w) for w in words(term)]
        if not parts:
            continue
        if prefix:
            parts[-1] += ":*"
        alternatives.append(parts[0] if len(parts) == 1 else "(" + " <-> ".join(parts) + ")")
    return " | ".join(alternatives) or None
