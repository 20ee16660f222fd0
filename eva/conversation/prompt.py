"""The messages given to the LLM for one turn: persona first (the system prompt, then the
persona's example exchanges: a stable prefix the LLM's prompt cache reuses), then what Eva
remembers (after the persona, so the prefix stays stable), then the most recent history,
then what the person just said.

Everything must fit the model's context with room for the reply: the oldest history goes
first when it does not (it is summarized, and stored, elsewhere).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from eva.engines.base import ChatMessage
from eva.store.sqlite import MessageRecord

# A conservative token estimate without a tokenizer at hand: SmolLM2's tokenizer averages
# about four characters per token in English and a little under in French; three
# over-counts, so a prompt estimated to fit does fit. Digits are one token each.
CHARS_PER_TOKEN = 3.0
# What the chat template adds around each message (role markers, newlines).
TOKENS_PER_MESSAGE = 6
# Room kept besides the reply for the template's own prefix and rounding.
CONTEXT_MARGIN_TOKENS = 64


def estimate_tokens(text: str) -> int:
    digits = sum(char.isdigit() for char in text)
    return math.ceil((len(text) - digits) / CHARS_PER_TOKEN) + digits + TOKENS_PER_MESSAGE


def prompt_token_budget(context_tokens: int, reply_tokens: int) -> int:
    """The most tokens a prompt may have so that the reply still fits the context."""
    return context_tokens - reply_tokens - CONTEXT_MARGIN_TOKENS


def build_messages(
    system_prompt: str,
    history: Sequence[MessageRecord],
    user_text: str,
    examples: Sequence[ChatMessage] = (),
    *,
    context: str = "",
    token_budget: int | None = None,
) -> list[ChatMessage]:
    """``examples`` (the persona's example exchanges) follow the system message;
    ``context`` (memories, summary) joins the system message; with ``token_budget``, the
    oldest history is left out until the estimate fits, then the context is cut."""
    system = f"{system_prompt}\n\n{context}" if context else system_prompt
    turns = [
        ChatMessage(record.role, record.content)  # type: ignore[arg-type]
        for record in history
        if record.role in ("user", "assistant") and record.content.strip()
    ]
    if token_budget is not None:
        fixed = estimate_tokens(user_text) + sum(map(_tokens, examples))
        while turns and _total(system, turns) + fixed > token_budget:
            turns.pop(0)
        if _total(system, turns) + fixed > token_budget:  # no history left: cut the context
            allowed = int((token_budget - fixed - TOKENS_PER_MESSAGE) * CHARS_PER_TOKEN) - 1
            system = system[: max(len(system_prompt), allowed)]
    return [ChatMessage("system", system), *examples, *turns, ChatMessage("user", user_text)]


def _tokens(message: ChatMessage) -> int:
    return estimate_tokens(message.content)


def _total(system: str, turns: Sequence[ChatMessage]) -> int:
    return estimate_tokens(system) + sum(map(_tokens, turns))


def prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """The estimate a whole prompt is held to."""
    return sum(map(_tokens, messages))
