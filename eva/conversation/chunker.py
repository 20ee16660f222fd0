"""Cut a streaming LLM reply into clauses that can be spoken while the reply is still coming.

Speech synthesis can start as soon as the first clause is known, so `ClauseChunker` releases
text at the earliest sensible boundary: sentence punctuation (. ! ? …) or clause punctuation
(, ; : — –) followed by whitespace, or a line break (markdown lists and headings have no
punctuation).  Requiring whitespace after the mark is what keeps "3.5", "1,000", "10:30"
and URLs whole; abbreviations, initials and list numbers are recognised by the word before
the period.  The first clause of a reply may be short to get audio out quickly; later ones
are merged up to `min_chars` because tiny fragments sound choppy.

The chunker only cuts: it returns the raw text, stripped, for `text_shaping.speakable`.
Every character is examined a bounded number of times, so a reply costs O(its length).
"""

from __future__ import annotations

from dataclasses import dataclass

_SENTENCE = frozenset(".!?…")
_CLAUSE = frozenset(",;:—–")
_PUNCT = _SENTENCE | _CLAUSE
# Closing quotes, brackets and markdown emphasis that belong to the clause they follow.
_CLOSERS = frozenset("\"'”’»)]}*_`~")
# The period after these never ends a sentence: a name, an example or a number follows.
# ("no" is left out: "No. I can't." ends a sentence far more often than "No. 5" follows.)
_NEVER_ENDS = frozenset(
    {
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "vs",
        "e.g",
        "i.e",
        "cf",
        "mme",
        "mlle",
        "mm",
        "approx",
        "env",
        "ex",
        "fig",
    }
)
# A long first clause with no punctuation is cut before one of these when possible: a
# phrase starts there, so the break sounds like a breath rather than a stumble.
_PHRASE_STARTS = frozenset(
    {
        "and",
        "but",
        "or",
        "so",
        "because",
        "that",
        "which",
        "who",
        "when",
        "while",
        "with",
        "to",
        "for",
        "of",
        "in",
        "on",
        "at",
        "as",
        "if",
        "than",
        "et",
        "mais",
        "ou",
        "donc",
        "car",
        "parce",
        "qui",
        "que",
        "quand",
        "avec",
        "pour",
        "de",
        "dans",
        "sur",
    }
)
# A cut never leaves these at the end of a piece when another space will do: an article
# said alone ("climbed the | stairs") sounds like a stumble.
_LEANS_ON_NEXT = frozenset(
    {
        "the", "a", "an", "my", "your", "his", "her", "its", "our", "their", "this",
        "these", "those", "le", "la", "les", "un", "une", "des", "du", "au", "aux", "mon",
        "ma", "mes", "ton", "ta", "tes", "son", "sa", "ses", "ce", "cet", "cette", "ces",
    }
)  # fmt: skip
# These may end a sentence; they do when the next word starts with a capital.
_MAY_END = frozenset({"etc", "st", "ste", "jr", "sr", "inc", "ltd", "co", "ave", "av", "blvd"})


@dataclass(frozen=True)
class Clause:
    """A piece of a reply that can be spoken on its own."""

    text: str  # the raw clause text (not yet shaped), stripped
    ends_sentence: bool  # True when it ends with . ! ? or … (the caller counts sentences)


def _is_initials(word: str) -> bool:
    # "J", "J.K", "U.S": single capitals between periods name people or places.
    return all(len(part) == 1 and part.isupper() for part in word.split("."))


def _ends_sentence(text: str) -> bool:
    return text.rstrip("".join(_CLOSERS))[-1:] in _SENTENCE


class ClauseChunker:
    """Feed LLM token deltas with `push`; speak each returned clause; call `flush` at the end.

    After `flush` the chunker is ready for the next reply.
    """

    def __init__(
        self,
        first_min_chars: int = 12,
        min_chars: int = 30,
        max_chars: int = 160,
        first_max_chars: int | None = None,
    ) -> None:
        first_max = max_chars if first_max_chars is None else first_max_chars
        if min(first_min_chars, min_chars) < 0 or max_chars < max(first_min_chars, min_chars, 1):
            raise ValueError("need 0 <= first_min_chars, min_chars <= max_chars and max_chars > 0")
        if not first_min_chars <= first_max <= max_chars:
            raise ValueError("need first_min_chars <= first_max_chars <= max_chars")
        self._first_min, self._min, self._max = first_min_chars, min_chars, max_chars
        self._first_max = first_max
        self._reset()

    def _reset(self) -> None:
        self._buf = ""
        self._start = 0  # where the pending clause starts; leading whitespace is skipped
        self._scan = 0  # text before this index has been examined for boundaries
        self._released = False  # a clause of this reply has gone out
        self._at_line_start = True  # the pending clause opens a line ("1. " is a list marker)
        self._no_space_until = 0  # a forced cut found no whitespace before this index

    def push(self, delta: str) -> list[Clause]:
        """Add a token delta; return the clauses it completed (often none)."""
        out: list[Clause] = []
        if delta:
            self._buf += delta
            self._scan_boundaries(out)
            self._compact()
        return out

    def flush(self) -> list[Clause]:
        """End of the reply: return what is left, if it is not blank."""
        out: list[Clause] = []
        end = len(self._buf)
        while end - self._start > self._limit() and self._force_cut(end, out):
            pass
        rest = self._buf[self._start :].strip()
        if rest:
            out.append(Clause(rest, _ends_sentence(rest)))
        self._reset()
        return out

    def cut_early(self, min_chars: int) -> list[Clause]:
        """The listener is about to run out of speech: release the words pending now, cut
        as an overlong clause is (before a phrase-opening word in the second half if there
        is one, else at the last whitespace), when ``min_chars`` of them come before the
        last word, which stays (it may be unfinished). Returns the clause, or nothing."""
        out: list[Clause] = []
        pending = self._buf[self._start : self._scan]
        last_space = max((i for i, char in enumerate(pending) if char.isspace()), default=0)
        if last_space >= min_chars:
            self._force_cut(self._scan, out, most=last_space)
            self._compact()
        return out

    # -- scanning ----------------------------------------------------------------------------
    def _scan_boundaries(self, out: list[Clause]) -> None:
        buf, n, i = self._buf, len(self._buf), self._scan
        while True:
            if i - self._start > self._limit() and self._force_cut(i, out):
                continue
            if i >= n:
                break
            ch = buf[i]
            if i == self._start and ch.isspace():
                self._at_line_start = self._at_line_start or ch == "\n"
                self._start = i = i + 1
            elif ch == "\n":
                sentence = _ends_sentence(buf[max(self._start, i - 8) : i].rstrip())
                if not self._offer(i, sentence, out):
                    i += 1  # once released, the newline is leading whitespace of the next clause
            elif ch in _PUNCT:
                verdict = self._boundary_at(i)
                if verdict is None:
                    break  # the next delta decides; look at this mark again then
                end, is_boundary, sentence = verdict
                if is_boundary:
                    self._offer(end, sentence, out)
                i = end
            else:
                i += 1
        self._scan = i

    def _boundary_at(self, i: int) -> tuple[int, bool, bool] | None:
        """For the punctuation run at i: (where it ends, whether it is a boundary, whether it
        ends a sentence), or None when the text so far cannot tell."""
        buf, n = self._buf, len(self._buf)
        j = i
        while j < n and buf[j] in _PUNCT:
            j += 1
        k = j
        while k < n and buf[k] in _CLOSERS:
            k += 1
        if k == n:
            return None  # "3." may become "3.5"
        if not buf[k].isspace():
            return k, False, False  # inside a number, a time, a URL or a word
        m = k
        while m < n and buf[m].isspace():
            m += 1
        if buf[i:j] == ".":
            blocked = self._period_is_abbreviation(i, m)
            if blocked is None:
                return None
            if blocked:
                return k, False, False
        if m == n and "\n" not in buf[k:m]:
            return None  # French closes quotes after a space ("« Oui. »"): see what comes
        if m < n and buf[m] == "»":
            k = m + 1
            while k < n and buf[k] in _CLOSERS:
                k += 1
        return k, True, buf[j - 1] in _SENTENCE

    def _period_is_abbreviation(self, i: int, next_word: int) -> bool | None:
        buf, w = self._buf, i
        while w > self._start and (buf[w - 1].isalpha() or buf[w - 1] == "."):
            w -= 1
        word = buf[w:i]
        if not word:  # "1. " opening a line is a list number, not a sentence end
            d = i
            while d > self._start and buf[d - 1].isdigit():
                d -= 1
            return 0 < i - d <= 3 and self._opens_line(d)
        low = word.lower()
        if low in _NEVER_ENDS or _is_initials(word) or (low == "st" and not self._after_name(w)):
            return True  # "St." is "Saint" unless a name comes first, as in "Main St."
        if low in _MAY_END or "." in word:  # "etc.", "p.m.": a capital next ends the sentence
            if next_word >= len(buf):
                return None
            return not buf[next_word].isupper()
        return False

    def _after_name(self, pos: int) -> bool:
        buf = self._buf
        while pos > self._start and buf[pos - 1].isspace():
            pos -= 1
        end = pos
        while pos > self._start and buf[pos - 1].isalpha():
            pos -= 1
        # A capitalised word that does not open a sentence, like "Main" in "on Main St.".
        return pos < end and buf[pos].isupper() and pos > self._start

    def _opens_line(self, pos: int) -> bool:
        while pos > self._start and self._buf[pos - 1] in " \t":
            pos -= 1
        return self._at_line_start if pos == self._start else self._buf[pos - 1] == "\n"

    # -- releasing ---------------------------------------------------------------------------
    def _offer(self, end: int, sentence: bool, out: list[Clause]) -> bool:
        """Release buf[start:end] if it is long enough for its kind of boundary."""
        need = self._first_min if sentence or not self._released else self._min
        length = end - self._start
        if length <= 0 or length < need:
            return False  # too short: it merges with what follows
        out.append(Clause(self._buf[self._start : end].strip(), sentence))
        self._start, self._released, self._at_line_start = end, True, False
        return True

    def _limit(self) -> int:
        return self._max if self._released else self._first_max

    def _force_cut(self, limit: int, out: list[Clause], most: int | None = None) -> bool:
        """The pending text outgrew its maximum (``most``, by default the clause's limit):
        cut at the last whitespace that fits (a word is never split), before a
        phrase-opening word if there is one.  Returns False when there is no whitespace
        before `limit` yet."""
        buf, start = self._buf, self._start
        most = self._limit() if most is None else most
        cut = -1
        if self._no_space_until <= start + most:
            spaces = [p for p in range(min(start + most, limit - 1), start, -1) if buf[p].isspace()]
            # A phrase start in the first half would leave a stub; the last space is better.
            floor = start + most // 2
            cut = next((p for p in spaces if p > floor and self._opens_phrase(p + 1)), -1)
            if cut < 0 and spaces:
                cut = next((p for p in spaces if p > floor and not self._leans(p)), spaces[0])
        if cut < 0:  # a single word longer than the maximum: cut right after it
            p = max(start + most + 1, self._no_space_until)
            while p < limit and not buf[p].isspace():
                p += 1
            if p >= limit:
                self._no_space_until = limit
                return False
            cut = p
        out.append(Clause(buf[start:cut].strip(), False))
        self._released, self._at_line_start = True, False
        while cut < limit and buf[cut].isspace():
            self._at_line_start = self._at_line_start or buf[cut] == "\n"
            cut += 1
        self._start = cut
        return True

    def _leans(self, space: int) -> bool:
        """Whether the word before ``space`` leans on the next one (an article)."""
        begin = space
        while begin > self._start and self._buf[begin - 1].isalpha():
            begin -= 1
        return self._buf[begin:space].lower() in _LEANS_ON_NEXT

    def _opens_phrase(self, pos: int) -> bool:
        end = pos
        while end < len(self._buf) and self._buf[end].isalpha():
            end += 1
        return self._buf[pos:end].lower() in _PHRASE_STARTS

    def _compact(self) -> None:
        # Drop released text so the buffer stays about one clause long.
        cut = self._start
        if cut:
            self._buf = self._buf[cut:]
            self._start, self._scan = 0, self._scan - cut
            self._no_space_until = max(0, self._no_space_until - cut)
