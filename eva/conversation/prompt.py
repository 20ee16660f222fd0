"""The messages given to the LLM for one turn, ordered so that the LLM's prompt cache can
reuse as much as possible of the previous turn's prompt (llama.cpp evaluates only what
follows the longest common prefix, at roughly 3 ms a token on two cores):

1. the system message: the persona, then the summary of older turns (it changes only when
   a block of turns is folded into it, see ``MemoryBook.summarize``);
2. the persona's example exchanges;
3. the recent history, which only grows between folds;
4. what Eva remembers that matters for this turn (it changes with every message, so it comes
   last, as a system note just before what the person said);
5. what the person just said.

Everything must fit the model's context with room for the reply: the oldest history goes
first when it does not (it is summarized, and stored, elsewhere).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from eva.engines.base import ChatMessage
from eva.store.records import MessageRecord

# A conservative token estimate without a tokenizer at hand: SmolLM2's tokenizer averages
# about four characters per token in English and a little under in French; three
# over-counts, so a prompt estimated to fit does fit. Digits are one token each. Beyond the
# Latin alphabets (CJK, emoji, ...) a character is counted as its UTF-8 bytes: a byte-level
# BPE never spends more than a token a byte, and 1000 emoji can take 3000 tokens.
CHARS_PER_TOKEN = 3.0
_LAST_LATIN = "\u024f"
# What the chat template adds around each message (role markers, newlines).
TOKENS_PER_MESSAGE = 6
# Over budget, the oldest history goes this many messages at a time: the history then
# starts at the same message for several turns, and the prompt cache keeps working.
_TRIM_STEP = 4
# Room kept besides the reply for the template's own prefix and rounding.
CONTEXT_MARGIN_TOKENS = 64


def estimate_tokens(text: str) -> int:
    digits = sum(char.isdigit() for char in text)
    wide = [char for char in text if char > _LAST_LATIN] if not text.isascii() else []
    wide_bytes = len("".join(wide).encode("utf-8", "surrogatepass"))
    latin = len(text) - digits - len(wide)
    return math.ceil(latin / CHARS_PER_TOKEN) + digits + wide_bytes + TOKENS_PER_MESSAGE


def message_room(system_prompt: str, examples: Sequence[ChatMessage], token_budget: int) -> int:
    """The estimated tokens left for what the person says once the persona is in: every
    other part of the prompt can be cut (build_messages), the persona and the message not."""
    return token_budget - estimate_tokens(system_prompt) - sum(map(_tokens, examples))


def prompt_token_budget(context_tokens: int, reply_tokens: int) -> int:
    """The most tokens a prompt may have so that the reply still fits the context."""
    return context_tokens - reply_tokens - CONTEXT_MARGIN_TOKENS


def prompt_prefix(system: str, examples: Sequence[ChatMessage] = ()) -> tuple[ChatMessage, ...]:
    """How every prompt begins: the system message, then the persona's example exchanges.
    A new conversation's prompt starts exactly so, which is what the model server warms."""
    return (ChatMessage("system", system), *examples)


def build_messages(
    system_prompt: str,
    history: Sequence[MessageRecord],
    user_text: str,
    examples: Sequence[ChatMessage] = (),
    *,
    summary: str = "",
    memories: str = "",
    token_budget: int | None = None,
) -> list[ChatMessage]:
    """``examples`` (the persona's example exchanges) follow the system message, which
    carries ``summary``; ``memories`` go in a system note before ``user_text``. With
    ``token_budget``, the oldest history is left out until the estimate fits, then the
    summary and the memories are cut."""
    system = f"{system_prompt}\n\n{summary}" if summary else system_prompt
    turns = [
        ChatMessage(record.role, record.content)  # type: ignore[arg-type]
        for record in history
        if record.role in ("user", "assistant") and record.content.strip()
    ]
    if token_budget is not None:
        fixed = estimate_tokens(user_text) + sum(map(_tokens, examples))
        fixed += estimate_tokens(memories) if memories else 0
        while turns and _total(system, turns) + fixed > token_budget:
            del turns[:_TRIM_STEP]
        if _total(system, turns) + fixed > token_budget:  # no history left: cut the summary
            system = _cut(system, len(system_prompt), token_budget - fixed)
        if memories and _total(system, turns) + fixed > token_budget:  # then the memories
            room = token_budget - (fixed - estimate_tokens(memories)) - _total(system, turns)
            memories = _cut(memories, 0, room)
    note = [ChatMessage("system", memories)] if memories.strip() else []
    return [*prompt_prefix(system, examples), *turns, *note, ChatMessage("user", user_text)]


def _cut(text: str, keep: int, tokens: int) -> str:
    """``text`` cut to about ``tokens`` tokens, never shorter than its first ``keep`` chars."""
    allowed = int((tokens - TOKENS_PER_MESSAGE) * CHARS_PER_TOKEN) - 1
    return text[: max(keep, allowed)]


def _tokens(message: ChatMessage) -> int:
    return estimate_tokens(message.content)


def _total(system: str, turns: Sequence[ChatMessage]) -> int:
    return estimate_tokens(system) + sum(map(_tokens, turns))


def prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """The estimate a whole prompt is held to."""
    return sum(map(_tokens, messages))
