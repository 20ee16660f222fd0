"""Turn LLM reply text into text a TTS engine can speak.

LLMs write for screens: markdown, emoji, digits, symbols and abbreviations.  TTS engines
either read those literally ("asterisk asterisk") or mispronounce them, so every clause of a
reply goes through `speakable` just before synthesis.  Sentence punctuation is kept because
it drives the engine's prosody.

Everything language-specific lives in a `LanguageTable`; adding a language means adding a
table to `_TABLES`.  Languages without a table still get markdown and emoji removal, and
their plain numbers spelled by num2words when it knows the language.  All regexes are built
at import because this runs on every clause of a streaming reply.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from num2words import CONVERTER_CLASSES, num2words  # type: ignore[import-untyped, unused-ignore]

Match = re.Match[str]


@dataclass(frozen=True)
class LanguageTable:
    """Words and written forms of one language; empty fields switch the matching rule off."""

    minus: str = ""
    decimal_word: str = ""  # "" lets num2words say decimals its own way
    number: str = r"\d+(?:\.\d+)?"  # regex for one written number
    group_seps: str = ""  # thousands separators inside `number`
    decimal_seps: str = "."
    fraction_as_number: bool = False  # "3,14" -> "trois virgule quatorze", not "un quatre"
    singular_below_two: bool = False  # French: "1,5 kilomètre", "0 euro"
    feminine: tuple[str, str] | None = None  # hours and minutes take the feminine "une"
    percent: str = ""
    and_word: str = ""
    range_word: str = ""
    approx: str = ""
    # symbol or code -> (singular, plural, minor singular, minor plural)
    currencies: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)
    # written scale after an amount -> (spoken, word joining it to the currency)
    scales: dict[str, tuple[str, str]] = field(default_factory=dict)
    units: dict[str, tuple[str, str]] = field(default_factory=dict)  # -> (singular, plural)
    ordinal_suffixes: str = ""  # regex alternation
    ordinal_overrides: dict[str, str] = field(default_factory=dict)  # "1re" -> "première"
    years: bool = False  # "1999" -> "nineteen ninety-nine"
    clock_style: Literal["", "pairs", "hours"] = ""  # "three thirty" / "trois heures trente"
    clock: dict[str, str] = field(default_factory=dict)
    abbreviations: tuple[tuple[str, str, bool], ...] = ()  # (regex, words, may end sentence)
    street_saint: tuple[str, str] | None = None  # "St." before / after a name
    symbols: dict[str, str] = field(default_factory=dict)
    dot: str = "dot"
    at: str = "at"
    space_before_high_punct: bool = False  # French typography: "ça va ?"


def _plurals(singulars: dict[str, str]) -> dict[str, tuple[str, str]]:
    # English and French units pluralise their first word: "degree(s) Celsius".
    return {k: (v, v.replace(" ", "s ", 1) if " " in v else v + "s") for k, v in singulars.items()}


_EN_MONEY = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
}
_FR_MONEY = {
    "€": ("euro", "euros", "centime", "centimes"),
    "¥": ("yen", "yens", "sen", "sen"),
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("livre", "livres", "penny", "pence"),
}
_CODES = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}

_TABLES: dict[str, LanguageTable] = {
    "en": LanguageTable(
        minus="minus",
        decimal_word="point",
        group_seps=",",
        number=r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?",
        percent="percent",
        and_word="and",
        range_word="to",
        approx="approximately",
        currencies=_EN_MONEY | {c: _EN_MONEY[s] for c, s in _CODES.items()},
        scales={w: (w, "") for w in ("thousand", "million", "billion", "trillion")}
        | {"k": ("thousand", ""), "bn": ("billion", "")},
        units=_plurals(
            {
                "km/h": "kilometer per hour",
                "mph": "mile per hour",
                "km": "kilometer",
                "kg": "kilogram",
                "cm": "centimeter",
                "mm": "millimeter",
                "mg": "milligram",
                "ml": "milliliter",
                "min": "minute",
                "mins": "minute",
                "h": "hour",
                "hr": "hour",
                "hrs": "hour",
                "°C": "degree Celsius",
                "°F": "degree Fahrenheit",
                "°": "degree",
            }
        ),
        ordinal_suffixes=r"(?i:st|nd|rd|th)",
        years=True,
        clock_style="pairs",
        clock={"oclock": "o'clock", "oh": "oh", "hundred": "hundred", "a": "a m", "p": "p m"},
        abbreviations=(
            (r"\bDr\b\.?", "Doctor", False),
            (r"\bMrs\b\.?", "Missus", False),
            (r"\bMr\b\.?", "Mister", False),
            (r"\bMs\b\.?", "Miz", False),
            (r"\bProf\b\.?", "Professor", False),
            (r"\bJr\b\.?", "Junior", True),
            (r"\bSr\b\.?", "Senior", True),
            (r"\b[Ee]\.[Gg]\b\.?", "for example", False),
            (r"\b[Ii]\.[Ee]\b\.?", "that is", False),
            (r"\b[Ee]tc\b\.?", "et cetera", True),
            (r"\b[Vv]s\b\.?", "versus", False),
            (r"\b[Aa]pprox\b\.?", "approximately", False),
        ),
        street_saint=("Saint", "Street"),
        symbols={"&": "and"},
    ),
    "fr": LanguageTable(
        minus="moins",
        decimal_word="virgule",
        group_seps=" \u00a0\u202f",
        decimal_seps=",.",
        number=r"(?:\d{1,3}(?:[ \u00a0\u202f]\d{3})+|\d+)(?:[,.]\d+)?",
        fraction_as_number=True,
        singular_below_two=True,
        feminine=("un", "une"),
        percent="pour cent",
        and_word="et",
        range_word="à",
        approx="environ",
        currencies=_FR_MONEY | {c: _FR_MONEY[s] for c, s in _CODES.items()},
        scales={"k": ("mille", ""), "mille": ("mille", "")}
        | {w: (w, "de") for w in ("million", "millions", "milliard", "milliards")},
        units=_plurals(
            {
                "km/h": "kilomètre par heure",
                "km": "kilomètre",
                "kg": "kilogramme",
                "cm": "centimètre",
                "mm": "millimètre",
                "mg": "milligramme",
                "ml": "millilitre",
                "min": "minute",
                "°C": "degré Celsius",
                "°": "degré",
            }
        ),
        ordinal_suffixes=r"ers?|res?|ères?|èmes?|emes?|es?|ndes?|nds?",
        ordinal_overrides={
            "1re": "première",
            "1ère": "première",
            "2nd": "second",
            "2nde": "seconde",
        },
        clock_style="hours",
        clock={"hour": "heure", "hours": "heures"},
        abbreviations=(
            (r"\bM\.(?=\s*[A-ZÀ-Ý])", "Monsieur", False),
            (r"\bMM\.(?=\s*[A-ZÀ-Ý])", "Messieurs", False),
            (r"\bMmes\b\.?", "Mesdames", False),
            (r"\bMme\b\.?", "Madame", False),
            (r"\bMlle\b\.?", "Mademoiselle", False),
            (r"\bDr\b\.?", "Docteur", False),
            (r"\bPr\b\.?", "Professeur", False),
            (r"\bSte\b\.?", "Sainte", False),
            (r"\bSt\b\.?", "Saint", False),
            (r"\b[Pp]\.\s?ex\.", "par exemple", False),
            (r"\b[Cc]\.-à-d\.", "c'est-à-dire", False),
            (r"\b[Ee]tc\b\.?", "et cetera", True),
            (r"\b[Vv]s\b\.?", "versus", False),
        ),
        symbols={"&": "et"},
        dot="point",
        at="arobase",
        space_before_high_punct=True,
    ),
}

_NEG = r"(?P<neg>(?<![\w-])[-\u2212](?=\d))?"  # a minus sign, not a hyphen inside a word
_AMPM = r"(?P<ap>[AaPp])\.?[Mm]\b(?P<dot>\.)?"
# A period after an abbreviation also ends the sentence when nothing or a capital follows.
_DOT_ENDS = re.compile(r"[\"'”’»)\]]*(?:\s*\Z|\s+(?=[A-ZÀ-Þ]))")
_PREV_NAME = re.compile(r"[^\s.!?:]\s+[A-Z][\w'’-]*\s*\Z")
_NEXT_NAME = re.compile(r"\s*[A-Z]")

# Pictographs: everything from U+2000 up is checked, plain Latin text never reaches the callback.
_SYMBOLISH = re.compile("[\u2000-\U0010ffff]")
_DROP_CATEGORIES = frozenset({"So", "Sk", "Cf", "Co", "Cn", "Me"})
_PICTO_BLOCKS = ((0x1F000, 0x1FAFF), (0x2190, 0x21FF), (0xFE00, 0xFE0F), (0xE0000, 0xE007F))

_FENCE = re.compile(r"^(?:```|~~~)[\w+#.-]*$")
_HRULE = re.compile(r"^(?:[-*_]\s*){3,}$")
_TABLE_RULE = re.compile(r"^\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?$")
_HEADING = re.compile(r"^#{1,6}(?:\s+|$)")
_QUOTE = re.compile(r"^(?:>\s?)+")
_LIST = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])\s+")
_LINE_END_PUNCT = frozenset(".!?…,;:")
_INLINE_MARKDOWN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"`+([^`]*)`+"), r"\1"),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\s?(?:\([^)]*\)|\[[^\]]*\])"), r"\1"),
)
_EMPHASIS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"</?[a-zA-Z][^<>\n]{0,60}>"), " "),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])"), r"\2"),
    (re.compile(r"~~(.+?)~~"), r"\1"),
)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]*[^\s<>()\[\].,!?;:'\"]")
_EMAIL = re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")
_DIGIT = re.compile(r"\d")

_LEFTOVER = re.compile(r"[*`#|~<>\[\]_\\{}]")
_EMPTY_PARENS = re.compile(r"\(\s*\)")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE = re.compile(r"\s+([,.…])")
_SPACE_BEFORE_HIGH = re.compile(r"\s+([!?;:])")
_STACKED_PUNCT = re.compile(r"[,;:]\s*(?=[,;:.!?])")
_LEADING_PUNCT = re.compile(r"^[\s,;:]+")


def _alternation(words: Iterable[str]) -> str:
    # Longest first so "km/h" wins over "km" and "mins" over "min".
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


@lru_cache(maxsize=8192)
def _cardinal(n: int, lang: str | None) -> str:
    # num2words writes "one thousand, five hundred": the comma would make the TTS pause.
    return str(n) if lang is None else str(num2words(n, lang=lang)).replace(",", "")


class _Rules:
    """A `LanguageTable` compiled into regexes and the callbacks that use them."""

    def __init__(self, t: LanguageTable, lang: str | None) -> None:
        self.t, self.lang = t, lang
        num, head = f"(?P<num>{t.number})", r"(?<![\d.])" + _NEG
        self.abbrev = (
            re.compile("|".join(f"({p})" for p, _, _ in t.abbreviations))
            if t.abbreviations
            else None
        )
        self.symbols = re.compile(_alternation(t.symbols)) if t.symbols else None
        self.street = re.compile(r"\bSt\b\.?") if t.street_saint else None
        self.passes: list[tuple[re.Pattern[str], Callable[[Match], str]]] = []
        if lang is None:
            return  # without num2words the digits stay as they are
        add = self.passes.append
        if t.approx:
            add((re.compile(r"[~≈]\s?(?=[-\u2212]?[\d$€£¥])"), lambda m: t.approx + " "))
        if t.clock_style == "pairs":
            add(
                (
                    re.compile(
                        rf"(?<![\d:.,])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?![\d:])"
                        rf"(?:\s?{_AMPM})?"
                    ),
                    self._clock_pairs,
                )
            )
            add(
                (
                    re.compile(rf"(?<![\d:.,])(?P<h>1[0-2]|0?[1-9])(?P<m>)\s?{_AMPM}"),
                    self._clock_pairs,
                )
            )
        elif t.clock_style == "hours":
            add(
                (
                    re.compile(
                        r"(?<![\d:.,])(?P<h>[01]?\d|2[0-3])\s?(?:[hH]\s?(?P<m>[0-5]\d)?"
                        r"|:(?P<m2>[0-5]\d))(?![\w:])"
                    ),
                    self._clock_hours,
                )
            )
        if t.range_word:
            add(
                (
                    re.compile(
                        r"(?<![\d.,-])(?P<a>\d+(?:[.,]\d+)?)(?:-|\s?–\s?)(?P<b>\d+(?:[.,]\d+)?)"
                        r"(?![\d-])"
                    ),
                    lambda m: f"{m['a']} {t.range_word} {m['b']}",
                )
            )
        if t.currencies:
            syms = _alternation(t.currencies)
            prefix = _alternation(k for k in t.currencies if not k.isalpha())
            scale = f"(?:\\s?(?P<scale>{_alternation(t.scales)})(?!\\w))?" if t.scales else ""
            neg = r"(?P<neg>(?<![\w-])[-\u2212])?"
            add((re.compile(rf"{neg}(?P<sym>{prefix})\s?{num}{scale}"), self._money))
            add((re.compile(rf"{head}{num}{scale}\s?(?P<sym>{syms})(?!\w)"), self._money))
        if t.percent:
            add((re.compile(rf"{head}{num}\s?%"), lambda m: f"{self._number(m)} {t.percent}"))
        if t.units:
            add((re.compile(rf"{head}{num}\s?(?P<unit>{_alternation(t.units)})(?!\w)"), self._unit))
        if t.ordinal_suffixes:
            add(
                (
                    re.compile(rf"(?<![\d.])(?P<num>\d+)(?P<suf>{t.ordinal_suffixes})(?!\w)"),
                    self._ordinal,
                )
            )
        if t.years:
            add(
                (
                    re.compile(r"(?<![\d.,])(?P<num>1[1-9]\d\d|20\d\d)(?P<s>s)?(?![\d\w]|[.,]\d)"),
                    self._year,
                )
            )
        add((re.compile(rf"{head}{num}"), self._plain))

    # -- numbers ---------------------------------------------------------------------------
    def _split(self, written: str) -> tuple[int, str]:
        for sep in self.t.group_seps:
            written = written.replace(sep, "")
        for sep in self.t.decimal_seps:
            written = written.replace(sep, ".")
        whole, _, fraction = written.partition(".")
        return int(whole), fraction

    def _words(self, written: str, negative: bool = False) -> str:
        whole, fraction = self._split(written)
        if not self.t.decimal_word:  # a language without a table: num2words decides it all
            value = Decimal(f"{whole}.{fraction}") if fraction else Decimal(whole)
            return str(num2words(-value if negative else value, lang=self.lang))
        words = _cardinal(whole, self.lang)
        if fraction and self.t.fraction_as_number and fraction.strip("0"):
            zeros = len(fraction) - len(fraction.lstrip("0"))
            tail = [_cardinal(0, self.lang)] * zeros + [_cardinal(int(fraction), self.lang)]
            words += f" {self.t.decimal_word} " + " ".join(tail)
        elif fraction:
            digits = " ".join(_cardinal(int(d), self.lang) for d in fraction)
            words += f" {self.t.decimal_word} {digits}"
        return f"{self.t.minus} {words}" if negative else words

    def _number(self, m: Match) -> str:
        return self._words(m["num"], bool(m["neg"]))

    def _plural(self, written: str, forms: tuple[str, str]) -> str:
        whole, fraction = self._split(written)
        value = abs(Decimal(f"{whole}.{fraction or 0}"))
        return forms[0] if (value < 2 if self.t.singular_below_two else value == 1) else forms[1]

    def _feminine(self, n: int) -> str:
        words = _cardinal(n, self.lang)
        fem = self.t.feminine
        return words[: -len(fem[0])] + fem[1] if fem and words.endswith(fem[0]) else words

    def _plain(self, m: Match) -> str:
        s, words = m.string, self._number(m)
        # Keep digits glued to letters ("mp3", "10x") as separate words.
        before = " " if m.start() and s[m.start() - 1].isalpha() else ""
        after = " " if s[m.end() : m.end() + 1].isalpha() else ""
        return before + words + after

    def _unit(self, m: Match) -> str:
        return f"{self._number(m)} {self._plural(m['num'], self.t.units[m['unit']])}"

    def _money(self, m: Match) -> str:
        names, written = self.t.currencies[m["sym"]], m["num"]
        if m["scale"]:
            scale, joiner = self.t.scales[m["scale"]]
            unit = names[1]
            if joiner:
                unit = (joiner[:-1] + "'" if unit[0] in "aeiouyéèh" else joiner + " ") + unit
            return f"{self._number(m)} {scale} {unit}"
        whole, fraction = self._split(written)
        if len(fraction) > 2:
            return f"{self._number(m)} {names[1]}"
        cents = int(fraction.ljust(2, "0")) if fraction else 0
        parts = (
            []
            if whole == 0 and cents
            else [f"{self._words(str(whole))} {self._plural(str(whole), names[:2])}"]
        )
        if cents:
            minor = (names[2], names[3])
            parts.append(f"{self._words(str(cents))} {self._plural(str(cents), minor)}")
        spoken = f" {self.t.and_word} ".join(parts)
        return f"{self.t.minus} {spoken}" if m["neg"] else spoken

    def _ordinal(self, m: Match) -> str:
        n, suffix = int(m["num"]), m["suf"].lower()
        key = f"{n}{suffix.removesuffix('s')}"
        word = self.t.ordinal_overrides.get(key) or str(num2words(n, to="ordinal", lang=self.lang))
        return word + "s" if suffix.endswith("s") and not word.endswith("s") else word

    def _year(self, m: Match) -> str:
        words = str(num2words(int(m["num"]), to="year", lang=self.lang)).replace(",", "")
        if m["s"]:  # "1990s" -> "nineteen nineties"
            words = words[:-1] + "ies" if words.endswith("y") else words + "s"
        return words

    def _clock_pairs(self, m: Match) -> str:
        hour, minute, ap, clock = int(m["h"]), int(m["m"] or 0), m["ap"], self.t.clock
        words = _cardinal(hour, self.lang)
        if minute >= 10:
            words += " " + _cardinal(minute, self.lang)
        elif minute:
            words += f" {clock['oh']} {_cardinal(minute, self.lang)}"
        elif not ap:
            words += " " + (clock["oclock"] if hour <= 12 else clock["hundred"])
        if ap:
            words += " " + clock[ap.lower()]
            if m["dot"] and _DOT_ENDS.match(m.string, m.end()):
                words += "."
        return words

    def _clock_hours(self, m: Match) -> str:
        hour, minute = int(m["h"]), int(m["m"] or m["m2"] or 0)
        noun = self.t.clock["hour" if hour < 2 else "hours"]
        words = f"{self._feminine(hour)} {noun}"
        return f"{words} {self._feminine(minute)}" if minute else words

    # -- words -----------------------------------------------------------------------------
    def _abbreviation(self, m: Match) -> str:
        _, words, may_end = self.t.abbreviations[(m.lastindex or 1) - 1]
        if may_end and m.group().endswith(".") and _DOT_ENDS.match(m.string, m.end()):
            words += "."
        return words

    def _saint_or_street(self, m: Match) -> str:
        saint, street = self.t.street_saint or ("", "")
        # "Main St." names a street; "St. Louis" a saint; a sentence's first word is no name.
        if _PREV_NAME.search(m.string, 0, m.start()) or not _NEXT_NAME.match(m.string, m.end()):
            ends = m.group().endswith(".") and _DOT_ENDS.match(m.string, m.end())
            return street + "." if ends else street
        return saint

    def shape_words(self, text: str) -> str:
        if self.street:
            text = self.street.sub(self._saint_or_street, text)
        if self.abbrev:
            text = self.abbrev.sub(self._abbreviation, text)
        if self.symbols:
            text = self.symbols.sub(lambda m: f" {self.t.symbols[m.group()]} ", text)
        if self.passes and _DIGIT.search(text):
            for pattern, callback in self.passes:
                text = pattern.sub(callback, text)
        return text


def _drop_pictograph(m: Match) -> str:
    ch = m.group()
    code = ord(ch)
    if any(lo <= code <= hi for lo, hi in _PICTO_BLOCKS):
        return ""
    return "" if unicodedata.category(ch) in _DROP_CATEGORIES else ch


def _markdown_lines(text: str) -> str:
    """Drop block markdown; give lines that lack punctuation a pause so they don't run on."""
    parts: list[str] = []
    brk = heading = False
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or _FENCE.match(line) or _HRULE.match(line) or _TABLE_RULE.match(line):
            brk = True  # a blank line, fence or rule separates blocks
            continue
        is_heading = _HEADING.match(line) is not None
        line = _LIST.sub("", _QUOTE.sub("", _HEADING.sub("", line)))
        if "|" in line:  # a table row: its cells read as a list
            line = ", ".join(c.strip() for c in line.strip("|").split("|") if c.strip())
        if parts and parts[-1][-1] not in _LINE_END_PUNCT:
            parts[-1] += "." if brk or heading else ","
        if line:
            parts.append(line)
        brk, heading = False, is_heading
    return " ".join(parts)


def _strip_markdown(text: str, t: LanguageTable) -> str:
    text = _markdown_lines(text)
    for pattern, repl in _INLINE_MARKDOWN:
        text = pattern.sub(repl, text)
    text = _URL.sub(lambda m: _spoken_host(m.group(), t), text)
    text = _EMAIL.sub(lambda m: f"{_dotted(m[1], t)} {t.at} {_dotted(m[2], t)}", text)
    for pattern, repl in _EMPHASIS:
        text = pattern.sub(repl, text)
    return text


def _dotted(name: str, t: LanguageTable) -> str:
    return name.replace(".", f" {t.dot} ")


def _spoken_host(url: str, t: LanguageTable) -> str:
    # Nobody reads a URL aloud; the site's name is what a person would say.
    host = re.sub(r"^(?:https?://)?(?:www\.)?", "", url).split("/")[0].split(":")[0]
    return _dotted(host, t)


def _cleanup(text: str, t: LanguageTable) -> str:
    text = _EMPTY_PARENS.sub("", _LEFTOVER.sub(" ", text))
    text = _SPACE_BEFORE.sub(r"\1", _SPACES.sub(" ", text))
    if not t.space_before_high_punct:
        text = _SPACE_BEFORE_HIGH.sub(r"\1", text)
    return _LEADING_PUNCT.sub("", _STACKED_PUNCT.sub("", text)).strip()


def _primary_subtag(language: str) -> str:
    return language.replace("_", "-").split("-")[0].strip().lower() or "en"


@lru_cache(maxsize=64)
def _rules(language: str) -> _Rules:
    code = _primary_subtag(language)
    table = _TABLES.get(code, LanguageTable())
    return _Rules(table, code if code in CONVERTER_CLASSES else None)


def speakable(text: str, language: str = "en") -> str:
    """Return `text` as a TTS engine should read it in `language` ("en", "fr-FR", ...)."""
    rules = _rules(language)
    text = _SYMBOLISH.sub(_drop_pictograph, text)
    text = _strip_markdown(text, rules.t)
    return _cleanup(rules.shape_words(text), rules.t)


for _code in _TABLES:  # compile the shipped languages now, not on the first spoken clause
    _rules(_code)
