"""What the stores hand out, whichever database holds it: plain frozen records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The columns every backend selects, in the records' field order.
MESSAGE_COLUMNS = "id, session_id, role, content, created_at, timings, interrupted"
MEMORY_COLUMNS = "id, user_id, key, kind, text, value, created_at, updated_at, source_message_id"


class UnknownSessionError(KeyError):
    """No session with this id exists."""


@dataclass(frozen=True)
class SessionRecord:
    id: str
    user_id: str | None
    created_at: float  # unix seconds
    updated_at: float


@dataclass(frozen=True)
class MessageRecord:
    id: int
    session_id: str
    role: str  # "user" | "assistant"
    content: str
    created_at: float
    timings: dict[str, float] | None  # stage -> milliseconds
    interrupted: bool

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> MessageRecord:
        """A row of ``MESSAGE_COLUMNS``; timings come as JSON text (SQLite) or parsed
        (PostgreSQL's jsonb)."""
        msg_id, session_id, role, content, created_at, timings, interrupted = row
        if isinstance(timings, str):
            timings = json.loads(timings)
        if timings is not None:
            timings = {k: float(v) for k, v in timings.items()}
        return cls(msg_id, session_id, role, content, created_at, timings, bool(interrupted))


@dataclass(frozen=True)
class MemoryRecord:
    id: int
    user_id: str
    key: str  # the slot: a newer fact with the same key replaces this one
    kind: str  # name, place, job, like, relation, plan, event, feeling, ...
    text: str  # the fact as Eva is told it, e.g. "Has a sister named Marie."
    value: str | None  # the person's own words for it, for templates; None once edited
    created_at: float
    updated_at: float
    source_message_id: int | None


@dataclass(frozen=True)
class NewMemory:
    key: str
    kind: str
    text: str
    value: str | None = None


@dataclass(frozen=True)
class Summary:
    text: str
    upto_message_id: int  # every message with a smaller id is condensed into ``text``


@dataclass(frozen=True)
class ForgottenCounts:
    sessions: int
    messages: int
    memories: int
    summaries: int


def normalised_timings(timings: dict[str, float] | None) -> dict[str, float] | None:
    """Timings as stored: every value a float (callers pass ints too)."""
    return None if timings is None else {k: float(v) for k, v in timings.items()}
