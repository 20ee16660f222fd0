"""Persistence of sessions, messages and memories: SQLite, embedded, by default; PostgreSQL,
shared by several Eva processes, when ``EVA_DATABASE_URL`` names one.

The rest of Eva calls ``open_store(settings)`` and uses the interfaces in eva.store.base
(``SessionStore``, and its ``memories``: a ``MemoryStore``), never a backend. Adding a
backend means one module with a ``create(settings)`` function and one line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from eva.store.base import MemoryStore, SessionStore
from eva.store.records import (
    ForgottenCounts,
    MemoryRecord,
    MessageRecord,
    NewMemory,
    SessionRecord,
    Summary,
    UnknownSessionError,
)

if TYPE_CHECKING:
    from eva.config import Settings

__all__ = [
    "BACKENDS",
    "ForgottenCounts",
    "MemoryRecord",
    "MemoryStore",
    "MessageRecord",
    "NewMemory",
    "SessionRecord",
    "SessionStore",
    "Summary",
    "UnknownSessionError",
    "open_store",
]

# The scheme of EVA_DATABASE_URL -> the backend's module, imported only when chosen.
BACKENDS: dict[str, str] = {
    "": "eva.store.sqlite",  # no URL: one SQLite file in EVA_DATA_DIR
    "postgresql": "eva.store.postgres",
    "postgres": "eva.store.postgres",
}


def open_store(settings: Settings) -> SessionStore:
    """The store the settings name, migrated to this Eva's schema and ready.

    Errors never repeat the URL: it may hold a password.
    """
    url = settings.database_url.strip()
    scheme = url.partition("://")[0].lower() if "://" in url else url
    module_name = BACKENDS.get(scheme)
    if module_name is None:
        known = ", ".join(f"{s}://" for s in BACKENDS if s)
        raise ValueError(
            f"EVA_DATABASE_URL must start with one of {known} (empty: SQLite in EVA_DATA_DIR)"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"EVA_DATABASE_URL names a {scheme} database, which needs the Python package "
            f"{exc.name!r}: run scripts/install.sh"
        ) from exc
    store: SessionStore = module.create(settings)
    return store
