"""What Eva remembers about each person: the records and the interface the conversation
code imports (the SQLite implementation: eva.store.sqlite_memories; PostgreSQL's:
eva.store.postgres_memories). A session store hands out its own as ``store.memories``."""

from eva.store.base import MemoryStore
from eva.store.records import ForgottenCounts, MemoryRecord, NewMemory, Summary

__all__ = [
    "ForgottenCounts",
    "MemoryRecord",
    "MemoryStore",
    "NewMemory",
    "Summary",
]
