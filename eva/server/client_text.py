"""Text a client sends (a typed turn, text to speak, a corrected memory): one check for all.

No model or voice can take a lone surrogate (JSON can escape one) or a control character
(NUL ends a C string inside the phonemizer; escapes and form feeds are nobody's words).
Such text is the client's error, refused before it reaches an engine or the store.
"""

from __future__ import annotations

import re

# C0 controls but tab, newline and carriage return; DEL; the C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be taken, as the end of a sentence; None if it can."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (a lone surrogate)"
    found = _CONTROL.search(text)
    if found:
        return f"contains the control character U+{ord(found.group()):04X}"
    return None
