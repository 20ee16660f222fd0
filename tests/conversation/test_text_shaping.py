"""speakable(): markdown, emoji, numbers, times and abbreviations become words a TTS can read."""

from __future__ import annotations

import time

import pytest

from eva.conversation.text_shaping import speakable

MARKDOWN_SYMBOLS = set("*#`_|[]<>~")


# -- markdown ---------------------------------------------------------------------------------
def test_bold_and_italic_markers_are_removed_and_words_kept() -> None:
    assert (
        speakable("This is **very** important, *really* __bold__ and _subtle_.")
        == "This is very important, really bold and subtle."
    )


def test_underscores_inside_identifiers_become_spaces_not_emphasis() -> None:
    assert speakable("Call it snake_case_name please.") == "Call it snake case name please."


def test_inline_code_backticks_are_removed() -> None:
    assert speakable("Run `pip install eva` now.") == "Run pip install eva now."


def test_code_fence_lines_are_dropped_and_code_words_kept() -> None:
    text = "Try this:\n```python\nprint hello\n```\nDone."
    assert speakable(text) == "Try this: print hello. Done."


def test_headings_lose_their_hashes_and_end_with_a_pause() -> None:
    assert speakable("# Welcome\nHello there.") == "Welcome. Hello there."
    assert speakable("### Step two") == "Step two"


def test_blockquote_markers_are_removed() -> None:
    assert speakable("> To be or not to be.") == "To be or not to be."


def test_list_markers_are_removed_and_items_read_as_a_list() -> None:
    text = "Buy:\n- apples\n* pears\n+ plums\n1. bread\n2) milk"
    assert speakable(text) == "Buy: apples, pears, plums, bread, milk"


def test_link_becomes_its_label_and_image_its_alt_text() -> None:
    assert speakable("Read [the guide](https://eva.dev/guide) today.") == "Read the guide today."
    assert speakable("Look: ![a sleepy cat](cat.png)") == "Look: a sleepy cat"


def test_bare_url_is_reduced_to_its_spoken_site_name() -> None:
    assert speakable("Visit https://www.example.com/path?q=1 now.") == "Visit example dot com now."
    assert speakable("See https://eva.dev.") == "See eva dot dev."
    assert speakable("Voir https://exemple.fr/page.", "fr") == "Voir exemple point fr."


def test_email_address_is_spelled_with_at_and_dot() -> None:
    assert (
        speakable("Write to jane.doe@example.com.") == "Write to jane dot doe at example dot com."
    )


def test_table_pipes_and_separator_rows_are_removed() -> None:
    text = "| Name | Age |\n|------|-----|\n| Ann | 30 |"
    assert speakable(text) == "Name, Age. Ann, thirty"


def test_horizontal_rule_is_removed() -> None:
    assert speakable("First part.\n\n---\n\nSecond part.") == "First part. Second part."


def test_strikethrough_and_html_tags_are_removed() -> None:
    assert speakable("~~old~~ new<br>line") == "old new line"


@pytest.mark.parametrize(
    "text",
    [
        "a ~ b | c < d > e [f] #g `h` *i _j",
        "**unclosed bold and `code",
        "| a | b |\n| --- | --- |\n| *x* | _y_ |",
        "<div>html</div> [[wiki]] ~~~",
        "Café ~ **déjà** | vu #1",
    ],
)
def test_no_markdown_symbol_is_ever_left_over(text: str) -> None:
    for language in ("en", "fr"):
        assert not MARKDOWN_SYMBOLS & set(speakable(text, language))


# -- emoji --------------------------------------------------------------------------------------
def test_emoji_and_pictographs_are_removed() -> None:
    assert speakable("Great job! 🎉👍🏽 Let's go 🚀.") == "Great job! Let's go."
    assert speakable("Family 👨‍👩‍👧 in France 🇫🇷 with love ❤️ and stars ★☀") == (
        "Family in France with love and stars"
    )


def test_accented_letters_survive_emoji_removal() -> None:
    assert speakable("déjà vu, ça va, élève 😊", "fr") == "déjà vu, ça va, élève"
    assert speakable("Noël, naïve, Œuvre, cafe\u0301", "fr") == "Noël, naïve, Œuvre, cafe\u0301"


# -- numbers ------------------------------------------------------------------------------------
def test_integers_become_words() -> None:
    assert speakable("I have 42 cats.") == "I have forty-two cats."
    assert speakable("J'ai 42 chats.", "fr") == "J'ai quarante-deux chats."


def test_decimals_are_read_with_point_or_virgule() -> None:
    assert speakable("3.5") == "three point five"
    assert speakable("pi is 3.14") == "pi is three point one four"
    assert speakable("3,5", "fr") == "trois virgule cinq"
    assert speakable("3,14 et 3,05", "fr") == "trois virgule quatorze et trois virgule zéro cinq"


def test_thousands_separators_are_not_read_as_pauses() -> None:
    assert speakable("1,000") == "one thousand"
    assert speakable("1,234,567 stars") == (
        "one million two hundred and thirty-four thousand five hundred and sixty-seven stars"
    )
    assert speakable("1 000 personnes", "fr") == "mille personnes"


def test_ordinals_become_ordinal_words() -> None:
    assert speakable("1st, 2nd, 3rd, 4th, 21st") == "first, second, third, fourth, twenty-first"
    assert speakable("1er, 1re, 2e, 3ème", "fr") == "premier, première, deuxième, troisième"


def test_percentages_are_spoken() -> None:
    assert speakable("50%") == "fifty percent"
    assert speakable("12.5 % more") == "twelve point five percent more"
    assert speakable("50 %", "fr") == "cinquante pour cent"
    assert speakable("50%", "fr") == "cinquante pour cent"


def test_currency_amounts_are_spoken_with_singular_and_plural_units() -> None:
    assert speakable("$5") == "five dollars"
    assert speakable("$1") == "one dollar"
    assert speakable("€20 or 20 €") == "twenty euros or twenty euros"
    assert speakable("$5.50") == "five dollars and fifty cents"
    assert speakable("$0.99") == "ninety-nine cents"
    assert speakable("£1") == "one pound"
    assert speakable("$1,200") == "one thousand two hundred dollars"
    assert speakable("$5 million") == "five million dollars"


def test_french_currency_amounts() -> None:
    assert speakable("20 €", "fr") == "vingt euros"
    assert speakable("€20", "fr") == "vingt euros"
    assert speakable("1 €", "fr") == "un euro"
    assert speakable("2 millions €", "fr") == "deux millions d'euros"


def test_four_digit_numbers_standing_alone_are_read_as_years_in_english() -> None:
    assert speakable("in 1999") == "in nineteen ninety-nine"
    assert speakable("2024") == "twenty twenty-four"
    assert speakable("the 1990s") == "the nineteen nineties"
    assert speakable("2005") == "two thousand and five"


def test_numbers_that_are_not_years_stay_cardinal() -> None:
    assert speakable("1,999") == "one thousand nine hundred and ninety-nine"
    assert speakable("2150") == "two thousand one hundred and fifty"
    assert speakable("en 1999", "fr") == "en mille neuf cent quatre-vingt-dix-neuf"


def test_negative_numbers_but_not_hyphens_get_minus() -> None:
    assert speakable("-5") == "minus five"
    assert speakable("It was -3.5 degrees") == "It was minus three point five degrees"
    assert speakable("-5", "fr") == "moins cinq"
    assert speakable("COVID-19") == "COVID-nineteen"


def test_number_ranges_read_with_to() -> None:
    assert speakable("5-10 minutes") == "five to ten minutes"
    assert speakable("10-15 km", "fr") == "dix à quinze kilomètres"


def test_digits_glued_to_letters_are_read_separately() -> None:
    assert speakable("an mp3 at 10x speed") == "an mp three at ten x speed"


# -- times --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("3:30", "three thirty"),
        ("3:05", "three oh five"),
        ("3:00", "three o'clock"),
        ("10:15 pm", "ten fifteen p m"),
        ("10:15 PM", "ten fifteen p m"),
        ("10:15pm", "ten fifteen p m"),
        ("7 am", "seven a m"),
        ("14:30", "fourteen thirty"),
        ("14:00", "fourteen hundred"),
        ("Meet at 10 p.m. Then sleep.", "Meet at ten p m. Then sleep."),
        ("It ends at 10 p.m.", "It ends at ten p m."),
    ],
)
def test_english_clock_times(text: str, spoken: str) -> None:
    assert speakable(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("14h30", "quatorze heures trente"),
        ("14:30", "quatorze heures trente"),
        ("9h", "neuf heures"),
        ("1h05", "une heure cinq"),
        ("21h", "vingt et une heures"),
        ("Rendez-vous à 9 h 15.", "Rendez-vous à neuf heures quinze."),
    ],
)
def test_french_clock_times(text: str, spoken: str) -> None:
    assert speakable(text, "fr") == spoken


def test_words_like_amazing_are_not_mistaken_for_am() -> None:
    assert speakable("7 amazing days") == "seven amazing days"


# -- abbreviations and units -------------------------------------------------------------------
def test_english_titles_are_expanded() -> None:
    assert (
        speakable("Dr. Smith, Mr. Jones, Mrs. Brown and Ms. Green.")
        == "Doctor Smith, Mister Jones, Missus Brown and Miz Green."
    )


def test_st_is_saint_before_a_name_and_street_after_one() -> None:
    assert speakable("I visited St. Louis.") == "I visited Saint Louis."
    assert speakable("In St. Louis it rains.") == "In Saint Louis it rains."
    assert speakable("I live on Main St. It is quiet.") == "I live on Main Street. It is quiet."
    assert speakable("Go along Baker St. near St. Paul") == "Go along Baker Street near Saint Paul"


def test_latin_abbreviations_are_expanded() -> None:
    assert speakable("fruit, e.g. apples") == "fruit, for example apples"
    assert speakable("the capital, i.e. Paris") == "the capital, that is Paris"
    assert speakable("cats vs. dogs") == "cats versus dogs"
    assert speakable("apples, pears, etc.") == "apples, pears, et cetera."
    assert speakable("apples, etc. and more") == "apples, et cetera and more"


def test_symbols_and_units_after_numbers_are_spoken() -> None:
    assert speakable("approx. 5 km & 3 kg") == "approximately five kilometers and three kilograms"
    assert speakable("R&D") == "R and D"
    assert speakable("1 km, 10 min, 2 h, 1 hr, 3 hr") == (
        "one kilometer, ten minutes, two hours, one hour, three hours"
    )
    assert speakable("It is 20°C, ~5 km away.") == (
        "It is twenty degrees Celsius, approximately five kilometers away."
    )


def test_french_abbreviations_and_units() -> None:
    assert (
        speakable("M. Dupont, Mme Durand et Dr Martin", "fr")
        == "Monsieur Dupont, Madame Durand et Docteur Martin"
    )
    assert speakable("sel & poivre, etc.", "fr") == "sel et poivre, et cetera."
    assert speakable("5 km et 2 kg", "fr") == "cinq kilomètres et deux kilogrammes"
    assert speakable("1 km puis 1,5 km", "fr") == "un kilomètre puis un virgule cinq kilomètre"


# -- whitespace, punctuation and languages -------------------------------------------------------
def test_whitespace_is_collapsed_and_sentence_punctuation_kept() -> None:
    assert (
        speakable("Hello,   world!\n\nHow   are you? Fine; thanks: really.")
        == "Hello, world! How are you? Fine; thanks: really."
    )


def test_no_space_is_left_before_punctuation_after_removals() -> None:
    assert speakable("Ready 🚀 ? Go **now** !") == "Ready? Go now!"


def test_french_keeps_its_space_before_high_punctuation() -> None:
    assert speakable("Bonjour, ça va ? Très bien !", "fr") == "Bonjour, ça va ? Très bien !"


@pytest.mark.parametrize("code", ["en", "en-US", "en_GB", "EN"])
def test_english_language_codes_normalise_to_english(code: str) -> None:
    assert speakable("I have 2 cats", code) == "I have two cats"


@pytest.mark.parametrize("code", ["fr", "fr-FR", "fr_CA"])
def test_french_language_codes_normalise_to_french(code: str) -> None:
    assert speakable("J'ai 2 chats", code) == "J'ai deux chats"


def test_language_without_num2words_support_keeps_digits() -> None:
    assert speakable("I have **42** cats 🐱", "xx") == "I have 42 cats"


def test_language_without_a_table_still_gets_num2words_numbers() -> None:
    assert speakable("Ich habe 42 Äpfel", "de-DE") == "Ich habe zweiundvierzig Äpfel"


def test_blank_text_stays_blank() -> None:
    assert speakable("") == ""
    assert speakable("  \n 🎉 ") == ""


def test_a_clause_is_shaped_well_under_a_millisecond() -> None:
    clause = "Sure! Dr. Smith said it's **about** $5.50, or 20% off, at 3:30 pm on the 21st 🎉."
    speakable(clause)
    runs = 300
    started = time.perf_counter()
    for _ in range(runs):
        speakable(clause)
    assert (time.perf_counter() - started) / runs < 0.001
