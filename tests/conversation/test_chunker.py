"""ClauseChunker: streaming token deltas in, speakable clauses out, as early as sensible."""

from __future__ import annotations

import random
import re
import time

import pytest

from eva.conversation.chunker import Clause, ClauseChunker


def tokens(text: str) -> list[str]:
    """Split like an LLM tokenizer streams words: each delta carries its leading whitespace."""
    return re.findall(r"\s*\S+|\s+$", text)


def characters(text: str) -> list[str]:
    return list(text)


def random_pieces(text: str, seed: int) -> list[str]:
    rng, pieces, i = random.Random(seed), [], 0
    while i < len(text):
        size = rng.randint(1, 7)
        pieces.append(text[i : i + size])
        i += size
    return pieces


def chunk(deltas: list[str], **limits: int) -> list[Clause]:
    chunker = ClauseChunker(**limits)
    clauses = [clause for delta in deltas for clause in chunker.push(delta)]
    return clauses + chunker.flush()


def texts(text: str, split: str = "tokens", **limits: int) -> list[str]:
    deltas = tokens(text) if split == "tokens" else characters(text)
    return [clause.text for clause in chunk(deltas, **limits)]


SPLITS = ["tokens", "characters"]


# -- boundaries and lengths ----------------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS)
def test_first_clause_is_released_at_first_boundary_once_long_enough(split: str) -> None:
    assert texts("Well, I think we should go now, before it rains.", split) == [
        "Well, I think we should go now,",
        "before it rains.",
    ]


def test_first_clause_is_returned_as_soon_as_the_next_token_shows_whitespace() -> None:
    chunker = ClauseChunker()
    assert chunker.push("Hi there, my friend,") == []
    assert chunker.push(" how") == [Clause("Hi there, my friend,", ends_sentence=False)]
    assert chunker.push(" are you?") == []
    assert chunker.flush() == [Clause("how are you?", ends_sentence=True)]


@pytest.mark.parametrize("split", SPLITS)
def test_later_clause_punctuation_waits_for_min_chars(split: str) -> None:
    text = "Hello there my friend, yes, I know, it is late, and we should all sleep now."
    assert texts(text, split) == [
        "Hello there my friend,",
        "yes, I know, it is late, and we should all sleep now.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_later_clause_is_released_at_clause_punctuation_once_min_chars_long(split: str) -> None:
    text = "Okay, here we go. We walked along the river for hours, and then we rested."
    assert texts(text, split) == [
        "Okay, here we go.",
        "We walked along the river for hours,",
        "and then we rested.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_sentence_end_releases_at_first_min_chars_and_shorter_ones_merge(split: str) -> None:
    text = "This is the first clause, okay. Short one here. Tiny. And the rest follows."
    assert texts(text, split) == [
        "This is the first clause,",
        "okay. Short one here.",
        "Tiny. And the rest follows.",
    ]


def test_ends_sentence_marks_sentence_punctuation_only() -> None:
    clauses = chunk(tokens("First of all, we went home; it was late. Were you there?! Yes…"))
    assert [(c.text, c.ends_sentence) for c in clauses] == [
        ("First of all,", False),
        ("we went home; it was late.", True),
        ("Were you there?!", True),
        ("Yes…", True),
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_ellipsis_and_punctuation_runs_are_single_boundaries(split: str) -> None:
    assert texts("Well... I am not sure about that?! Let me think.", split) == [
        "Well... I am not sure about that?!",
        "Let me think.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_dashes_semicolons_and_colons_are_clause_boundaries(split: str) -> None:
    text = "There is one rule — always be kind; the reason is simple and clear: people remember."
    assert texts(text, split) == [
        "There is one rule —",
        "always be kind; the reason is simple and clear:",
        "people remember.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_closing_quotes_and_brackets_stay_with_their_clause(split: str) -> None:
    text = 'He said "I will come back tomorrow." Then he left (quietly, of course.) The end.'
    assert texts(text, split) == [
        'He said "I will come back tomorrow."',
        "Then he left (quietly, of course.)",
        "The end.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_line_breaks_end_clauses_that_have_no_punctuation(split: str) -> None:
    text = "Here is what you need:\n- two cups of flour and some sugar\n- three eggs\n\nEnjoy!"
    assert texts(text, split) == [
        "Here is what you need:",
        "- two cups of flour and some sugar",
        "- three eggs\n\nEnjoy!",
    ]


# -- things that are not boundaries ----------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS)
def test_decimal_point_is_not_a_clause_boundary(split: str) -> None:
    text = "The value is 3.5 today and 2.75 tomorrow, which is fine."
    assert texts(text, split) == ["The value is 3.5 today and 2.75 tomorrow,", "which is fine."]


@pytest.mark.parametrize("split", SPLITS)
def test_thousands_comma_is_not_a_clause_boundary(split: str) -> None:
    text = "We counted 1,000 birds and 25,000 fish. All healthy."
    assert texts(text, split) == ["We counted 1,000 birds and 25,000 fish.", "All healthy."]


@pytest.mark.parametrize("split", SPLITS)
def test_clock_time_colon_is_not_a_boundary(split: str) -> None:
    text = "Let's meet at 10:30 tomorrow morning: bring coffee."
    assert texts(text, split) == ["Let's meet at 10:30 tomorrow morning:", "bring coffee."]


@pytest.mark.parametrize("split", SPLITS)
def test_titles_before_names_are_not_sentence_ends(split: str) -> None:
    text = "I spoke with Dr. Smith and Mrs. Jones and Mr. Brown and Ms. Lee. They all agreed."
    assert texts(text, split) == [
        "I spoke with Dr. Smith and Mrs. Jones and Mr. Brown and Ms. Lee.",
        "They all agreed.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_latin_abbreviations_do_not_split_the_sentence(split: str) -> None:
    text = "Fruit, e.g. apples vs. pears, i.e. the usual ones, is good for you. Eat more."
    assert texts(text, split) == [
        "Fruit, e.g. apples vs. pears,",
        "i.e. the usual ones, is good for you.",
        "Eat more.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_etc_mid_sentence_keeps_going_but_before_a_capital_ends_it(split: str) -> None:
    text = (
        "We bought apples, pears, etc. and then we went home. We had plums, figs, etc. Then we ate."
    )
    assert texts(text, split) == [
        "We bought apples,",
        "pears, etc. and then we went home.",
        "We had plums, figs, etc.",
        "Then we ate.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_saint_before_a_name_is_not_a_sentence_end(split: str) -> None:
    text = "We flew to St. Louis yesterday. It was hot."
    assert texts(text, split) == ["We flew to St. Louis yesterday.", "It was hot."]


@pytest.mark.parametrize("split", SPLITS)
def test_street_after_a_name_can_end_a_sentence(split: str) -> None:
    text = "We both live on Main St. It is quiet there."
    assert texts(text, split) == ["We both live on Main St.", "It is quiet there."]


@pytest.mark.parametrize("split", SPLITS)
def test_am_pm_with_periods_ends_a_sentence_only_before_a_capital(split: str) -> None:
    text = "The shop opens at 9 a.m. on weekdays. It closes at 6 p.m. Come early."
    assert texts(text, split) == [
        "The shop opens at 9 a.m. on weekdays.",
        "It closes at 6 p.m.",
        "Come early.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_initials_are_not_boundaries(split: str) -> None:
    text = "The author J. K. Rowling wrote many books. Everyone knows them."
    assert texts(text, split) == [
        "The author J. K. Rowling wrote many books.",
        "Everyone knows them.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_urls_and_emails_are_not_split(split: str) -> None:
    text = "Visit https://example.com/a.b?x=1,2 or mail jane.doe@mail.example.com today. Thanks!"
    assert texts(text, split) == [
        "Visit https://example.com/a.b?x=1,2 or mail jane.doe@mail.example.com today.",
        "Thanks!",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_numbered_list_marker_is_not_a_sentence_end(split: str) -> None:
    text = "Steps:\n1. Preheat the oven to two hundred degrees.\n2. Mix the flour with the sugar."
    assert texts(text, split) == [
        "Steps:\n1. Preheat the oven to two hundred degrees.",
        "2. Mix the flour with the sugar.",
    ]


# -- French ----------------------------------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS)
def test_french_question_mark_after_a_space_ends_a_sentence(split: str) -> None:
    clauses = chunk(
        tokens("Bonjour, ça va ? Très bien !")
        if split == "tokens"
        else characters("Bonjour, ça va ? Très bien !")
    )
    assert clauses == [Clause("Bonjour, ça va ?", True), Clause("Très bien !", True)]


@pytest.mark.parametrize("split", SPLITS)
def test_french_sentences_merge_and_split_like_english_ones(split: str) -> None:
    text = "Bonjour, ça va ? Très bien ! Et toi, tu vas bien ? Oui : je suis en pleine forme."
    assert texts(text, split) == [
        "Bonjour, ça va ?",
        "Très bien ! Et toi, tu vas bien ?",
        "Oui : je suis en pleine forme.",
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_french_closing_guillemet_stays_with_its_clause(split: str) -> None:
    text = "Il a répondu « oui. » Puis il est parti."
    assert texts(text, split) == ["Il a répondu « oui. »", "Puis il est parti."]


@pytest.mark.parametrize("split", SPLITS)
def test_french_titles_and_decimal_commas_are_not_boundaries(split: str) -> None:
    text = "M. Dupont et Mme Durand ont payé 3,50 € à 14h30. C'est noté."
    assert texts(text, split) == ["M. Dupont et Mme Durand ont payé 3,50 € à 14h30.", "C'est noté."]


# -- delta shapes ----------------------------------------------------------------------------
def test_whitespace_only_deltas_are_harmless() -> None:
    deltas = [
        "Hello",
        " ",
        "there",
        ",",
        " ",
        "\t",
        "my dear",
        " friend",
        ".",
        " ",
        " ",
        "How",
        " are you?",
        " ",
        "\n",
    ]
    assert [c.text for c in chunk(deltas)] == ["Hello there,", "my dear friend.", "How are you?"]


def test_words_split_across_deltas_are_rejoined() -> None:
    deltas = ["Unbeliev", "able", " indeed", ", isn", "'t it", "? Ye", "s, it", " is."]
    assert [c.text for c in chunk(deltas)] == ["Unbelievable indeed,", "isn't it? Yes, it is."]


def test_delta_with_several_boundaries_returns_all_its_clauses_at_once() -> None:
    chunker = ClauseChunker()
    first = chunker.push("It is sunny today. It will rain tomorrow. It may snow on Sunday. And")
    assert [c.text for c in first] == [
        "It is sunny today.",
        "It will rain tomorrow.",
        "It may snow on Sunday.",
    ]
    assert chunker.push(" then?") == []
    assert chunker.flush() == [Clause("And then?", True)]


def test_flush_releases_the_remainder_and_resets_for_the_next_reply() -> None:
    chunker = ClauseChunker()
    assert chunker.push("Hi there, friend") == []
    assert chunker.flush() == [Clause("Hi there, friend", False)]
    assert chunker.flush() == []
    # The next reply is a first reply again: its first clause may be short.
    assert chunker.push("Good morning, Sam") == [Clause("Good morning,", False)]


def test_flush_of_blank_remainder_returns_nothing() -> None:
    chunker = ClauseChunker()
    assert chunker.push("   \n\t ") == []
    assert chunker.flush() == []
    assert chunker.push("") == []


# -- maximum length --------------------------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS)
def test_long_text_without_boundaries_is_cut_at_the_last_space_before_max_chars(split: str) -> None:
    text = " ".join(["alpha", "beta", "gamma", "delta"] * 20)
    clauses = texts(text, split, max_chars=50)
    assert all(len(c) <= 50 for c in clauses)
    assert clauses[0] == "alpha beta gamma delta alpha beta gamma delta"  # "alpha" made it 51
    assert " ".join(clauses) == text


@pytest.mark.parametrize("split", SPLITS)
def test_a_word_longer_than_max_chars_is_never_split(split: str) -> None:
    word = "a" * 80
    assert texts(f"{word} b c", split, max_chars=40) == [word, "b c"]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        ClauseChunker(first_min_chars=50, min_chars=30, max_chars=40)
    with pytest.raises(ValueError):
        ClauseChunker(first_min_chars=-1)


# -- nothing lost, nothing duplicated ----------------------------------------------------------
PARAGRAPHS = [
    "Sure! I'd be happy to help you with that. The price is $3.50, which is about 500 yen at "
    "10:30 today. Dr. Smith said, e.g. apples, are great... Really?! Yes. Here's the thing: "
    "when you walk 2.5 km every day — rain or shine — your heart, lungs and mood improve; "
    "studies (see https://example.org/health?id=42) agree. J. R. R. Tolkien walked a lot, "
    "too. In short, keep moving, drink water, sleep well, and don't worry about 1,000 steps "
    "more or less.",
    "Bonjour ! Je m'appelle Eva, et je suis ravie de vous aider aujourd'hui. Il est 14h30 : "
    "c'est l'heure du goûter, non ? M. Dupont a acheté 3,5 kg de pommes à 2,40 € le kilo… "
    "« C'est cher ! » a-t-il dit. Mais enfin, la vie est belle, et les pommes sont délicieuses "
    "en cette saison, surtout en tarte, en compote ou simplement croquées.",
    "## Plan for the week\n\n1. Monday: go for a run in the park\n2. Tuesday: read a book "
    "about the history of Rome, the city and its empire\n3. Wednesday: call Mom\n\n**Tip:** "
    "start small, and build up slowly — consistency matters more than intensity, every "
    "single time without exception whatsoever, honestly and truly and forever more amen.",
]


@pytest.mark.parametrize("text", PARAGRAPHS)
@pytest.mark.parametrize("split", ["tokens", "characters", "random1", "random2"])
def test_joined_clauses_give_back_every_word_in_order(text: str, split: str) -> None:
    deltas = {
        "tokens": tokens(text),
        "characters": characters(text),
        "random1": random_pieces(text, 1),
        "random2": random_pieces(text, 2),
    }[split]
    clauses = chunk(deltas)
    assert " ".join(c.text for c in clauses).split() == text.split()
    assert all(c.text and c.text == c.text.strip() for c in clauses)
    assert all(len(c.text) <= 160 for c in clauses)


@pytest.mark.parametrize("text", PARAGRAPHS)
def test_clauses_do_not_depend_on_how_the_text_was_split_into_deltas(text: str) -> None:
    expected = chunk(tokens(text))
    assert len(expected) > 3
    assert chunk(characters(text)) == expected
    assert chunk(random_pieces(text, 7)) == expected
    assert chunk([text]) == expected


def test_long_replies_are_chunked_in_linear_time() -> None:
    text = "Well, the thing is, Dr. Smith measured 3.5 kg at 10:30, e.g. twice. Then it rained! "
    chunker = ClauseChunker()
    started = time.perf_counter()
    released = [c for ch in text * 1500 for c in chunker.push(ch)] + chunker.flush()
    elapsed = time.perf_counter() - started
    assert " ".join(c.text for c in released).split() == (text * 1500).split()
    assert elapsed < 3.0  # ~130k characters one by one; a quadratic rescan would take minutes


# --- a long first clause with no punctuation


def test_long_first_clause_is_cut_before_a_phrase_opening_word() -> None:
    text = "I think that the best way to spend a sunny afternoon is walking slowly in the park."
    assert texts(text, first_min_chars=3, first_max_chars=72) == [
        "I think that the best way to spend a sunny afternoon is walking slowly",
        "in the park.",
    ]


def test_first_clause_cut_never_leaves_a_stub_at_an_early_phrase_word() -> None:
    text = "The story of the baking experiment is a classic example of creative thinking."
    first = texts(text, first_min_chars=3, first_max_chars=72)[0]
    assert first == "The story of the baking experiment is a classic example"


def test_first_max_applies_only_to_the_first_clause() -> None:
    sentence = "and then we walked along the quiet river for a very long while together"
    clauses = texts(f"Yes. {sentence} {sentence}.", first_min_chars=3, first_max_chars=20)
    assert clauses[0] == "Yes."
    assert len(clauses[1]) > 20  # later clauses keep the ordinary maximum


def test_a_short_first_interjection_goes_out_alone() -> None:
    assert texts("Oh, that is lovely to hear.", first_min_chars=3) == [
        "Oh,",
        "that is lovely to hear.",
    ]


def test_first_max_below_first_min_is_refused() -> None:
    with pytest.raises(ValueError):
        ClauseChunker(first_min_chars=20, first_max_chars=10)


def test_cut_early_releases_the_pending_words_before_a_phrase_opening_word() -> None:
    chunker = ClauseChunker(first_min_chars=3)
    assert chunker.push("Oh, ") == []
    assert [c.text for c in chunker.push("the")] == ["Oh,"]
    for delta in tokens(" keeper climbed the stairs and watched the sh"):
        assert chunker.push(delta) == []
    assert chunker.cut_early(min_chars=16) == [Clause("the keeper climbed the stairs", False)]
    # what was held back goes on as the next clause, the unfinished word included
    for delta in tokens("ips pass."):
        chunker.push(delta)
    assert [c.text for c in chunker.flush()] == ["and watched the ships pass."]


def test_cut_early_keeps_the_last_word_which_may_be_unfinished() -> None:
    chunker = ClauseChunker(first_min_chars=3, first_max_chars=24)
    chunker.push("Oh, ")
    chunker.push("the lighthouse keeper clim")
    assert chunker.cut_early(min_chars=16) == [Clause("the lighthouse keeper", False)]
    chunker.push("bed.")
    assert [c.text for c in chunker.flush()] == ["climbed."]


def test_cut_early_waits_for_enough_words() -> None:
    chunker = ClauseChunker(first_min_chars=3)
    chunker.push("Oh, ")
    chunker.push("the keeper")
    assert chunker.cut_early(min_chars=16) == []  # a stub would sound choppy
    chunker.push(" climbed")
    assert chunker.cut_early(min_chars=16) == []  # "climbed" may go on: "climbed up"
    chunker.push(" the stairs")
    # never "climbed the | stairs": an article goes with its noun
    assert chunker.cut_early(min_chars=16) == [Clause("the keeper climbed", False)]


def test_cut_early_never_splits_a_word() -> None:
    chunker = ClauseChunker(first_min_chars=3)
    chunker.push("Oh, ")
    chunker.push("extraordinarily")
    assert chunker.cut_early(min_chars=5) == []
    assert [c.text for c in chunker.flush()] == ["extraordinarily"]
