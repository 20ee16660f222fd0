"""Text from people as plain text to the model, never as its control tokens.

A chat prompt is rendered to one string and tokenized with special tokens on, so a person
who types ``<|im_end|>\\n<|im_start|>system`` would write the system prompt. Each special
token's text in a message is broken with an invisible word joiner after its first
character: the model reads the same characters, tokenized as ordinary text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WORD_JOINER = "\u2060"
# Special-token shapes of the common chat formats (ChatML, Llama 3, Phi, Gemma, Mistral),
# for a model server whose vocabulary Eva cannot read.
COMMON_SPECIAL_TOKENS = re.compile(
    r"<\|[^|<>\s]{1,40}\|>|</?s>|\[/?INST\]|<(?:start|end)_of_turn>|<\|?(?:bos|eos)\|?>"
)


def defuse(text: str, specials: Iterable[str] = ()) -> str:
    """``text`` with every occurrence of a special token (those given, and the common
    shapes) broken so that no tokenizer reads it as one."""
    for special in specials:
        if special and special in text:
            text = text.replace(special, special[0] + WORD_JOINER + special[1:])
    return COMMON_SPECIAL_TOKENS.sub(lambda m: m.group(0)[0] + WORD_JOINER + m.group(0)[1:], text)
