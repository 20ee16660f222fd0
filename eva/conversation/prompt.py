"""The messages given to the LLM for one turn: persona first (the system prompt, then the
persona's example exchanges: a stable prefix the LLM's prompt cache reuses), then the most
recent history, then what the person just said."""

from __future__ import annotations

from collections.abc import Sequence

from eva.engines.base import ChatMessage
from eva.store.sqlite import MessageRecord


def build_messages(
    system_prompt: str,
    history: Sequence[MessageRecord],
    user_text: str,
    examples: Sequence[ChatMessage] = (),
) -> list[ChatMessage]:
    messages = [ChatMessage("system", system_prompt), *examples]
    for record in history:
        if record.role in ("user", "assistant") and record.content.strip():
            messages.append(ChatMessage(record.role, record.content))  # type: ignore[arg-type]
    messages.append(ChatMessage("user", user_text))
    return messages
