"""The two interfaces the rest of Eva uses, whichever database is behind them.

``SessionStore``: sessions and their messages. ``MemoryStore``: what Eva remembers about
each person, and the summaries of long sessions; a session store hands out the memory store
of the same database as ``store.memories``. Both are safe to share between threads (the
server calls them through ``asyncio.to_thread``), and every call is one short transaction.

Backends: ``eva.store.sqlite`` (embedded, one file) and ``eva.store.postgres`` (shared by
several Eva processes); ``eva.store.open_store`` picks one from the settings. The same
tests (tests/store) run against both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Self

from eva.store.records import (
    ForgottenCounts,
    MemoryRecord,
    MessageRecord,
    NewMemory,
    SessionRecord,
    Summary,
)


class MemoryStore(ABC):
    """Memories of each user (one per slot, ``(user_id, key)``) and session summaries."""

    @abstractmethod
    def remember(
        self, user_id: str, facts: Iterable[NewMemory], source_message_id: int | None = None
    ) -> list[MemoryRecord]:
        """Store ``facts``, each replacing whatever the user's same slot held."""

    @abstractmethod
    def memories(self, user_id: str, limit: int | None = None) -> list[MemoryRecord]:
        """The user's memories, most recently changed first."""

    @abstractmethod
    def get(self, user_id: str, memory_id: int) -> MemoryRecord | None: ...

    @abstractmethod
    def slot(self, user_id: str, key: str) -> MemoryRecord | None: ...

    @abstractmethod
    def search(self, user_id: str, text: str, limit: int) -> list[MemoryRecord]:
        """The user's memories that share words with ``text`` (eva.store.search), best
        first."""

    @abstractmethod
    def edit(self, user_id: str, memory_id: int, text: str) -> MemoryRecord | None:
        """Replace a memory's text; None when the user has no such memory. The person's
        words (``value``) no longer describe it, so templates stop using them."""

    @abstractmethod
    def forget(self, user_id: str, memory_id: int) -> bool: ...

    @abstractmethod
    def forget_memories(self, user_id: str) -> int: ...

    @abstractmethod
    def forget_user(self, user_id: str) -> ForgottenCounts:
        """Every trace of the user: memories, sessions, their messages and summaries."""

    @abstractmethod
    def previous_session_start(self, user_id: str, current_session_id: str) -> float | None:
        """When the user's latest session before ``current_session_id`` began."""

    @abstractmethod
    def summary(self, session_id: str) -> Summary | None: ...

    @abstractmethod
    def save_summary(self, session_id: str, summary: Summary) -> None: ...

    @abstractmethod
    def messages_between(
        self, session_id: str, first_id: int, before_id: int
    ) -> Sequence[MessageRecord]:
        """The session's messages with first_id <= id < before_id, oldest first."""


class SessionStore(ABC):
    """Sessions and their messages. Message ids only grow: within a session they follow
    the order of the messages, and a turn's reply has its question's id + 1."""

    @property
    @abstractmethod
    def memories(self) -> MemoryStore:
        """The memories and summaries kept in the same database."""

    @abstractmethod
    def create_session(self, user_id: str | None = None) -> SessionRecord: ...

    @abstractmethod
    def get_session(self, session_id: str) -> SessionRecord | None: ...

    @abstractmethod
    def add_turn(
        self,
        session_id: str,
        user_text: str,
        assistant_text: str,
        timings: dict[str, float] | None = None,
        interrupted: bool = False,
    ) -> tuple[MessageRecord, MessageRecord]:
        """Store a user message and its reply atomically.

        ``timings`` and ``interrupted`` describe how the reply was produced, so they are kept
        on the assistant message; the user message gets ``None`` and ``False``. Raises
        ``UnknownSessionError`` (and stores nothing) for an unknown session.
        """

    @abstractmethod
    def add_assistant_message(self, session_id: str, text: str) -> MessageRecord:
        """A message Eva says unprompted (the greeting of a returning person)."""

    @abstractmethod
    def cut_reply(self, session_id: str, message_id: int, heard: str) -> bool:
        """Keep of a stored reply only what was heard (a client said where its playback
        stopped); whether that reply of that session was found."""

    @abstractmethod
    def messages(self, session_id: str, last: int | None = None) -> list[MessageRecord]:
        """The session's messages, oldest first; ``last`` keeps only the most recent N.
        Raises ``UnknownSessionError`` for an unknown session."""

    @abstractmethod
    def count_sessions(self) -> int: ...

    @abstractmethod
    def close(self) -> None:
        """Release the connections; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_last(last: int | None) -> None:
    if last is not None and last < 0:
        raise ValueError(f"last must be >= 0, got {last}")
