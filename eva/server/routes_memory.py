"""What Eva remembers about a person, over HTTP: list, edit, forget one, forget everything.

Every route acts for the user ``resolve_user`` decides; another user's memory is a 404 like
a missing one. These routes need only the store, so they answer while the models load.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam

from eva.server.deps import checked_text
from eva.server.errors import ApiError
from eva.server.identity import resolve_user
from eva.server.schemas import (
    ForgetAllResponse,
    ForgetMemoriesResponse,
    MemoriesResponse,
    MemoryEdit,
    MemoryItem,
)
from eva.store import SessionStore
from eva.store.memories import MemoryRecord, MemoryStore

router = APIRouter(tags=["memory"])

# An edited memory is one fact, told to the model in every prompt: a sentence or two.
MAX_MEMORY_CHARS = 300


def _user(request: Request, claimed: str | None) -> str:
    user_id = resolve_user(request, claimed)
    if user_id is None:
        raise ApiError(
            400, "user_required", "memories belong to a user: send user_id (or an API key)"
        )
    return user_id


def _memories(request: Request) -> MemoryStore:
    store: SessionStore = request.app.state.store
    return store.memories


def _item(record: MemoryRecord) -> MemoryItem:
    return MemoryItem(
        id=record.id,
        key=record.key,
        kind=record.kind,
        text=record.text,
        created_at=record.created_at,
        updated_at=record.updated_at,
        source_message_id=record.source_message_id,
    )


# SQLite's rowid is a signed 64-bit integer: a larger id is the client's error (422), not an
# OverflowError in the driver.
MemoryId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


def _unknown(memory_id: int) -> ApiError:
    return ApiError(404, "unknown_memory", f"no memory {memory_id}")


@router.get("/memories", response_model=MemoriesResponse, summary="What Eva remembers about you")
async def list_memories(request: Request, user_id: str | None = None) -> MemoriesResponse:
    owner = _user(request, user_id)
    records = await asyncio.to_thread(_memories(request).memories, owner)
    return MemoriesResponse(user_id=owner, memories=[_item(r) for r in records])


@router.patch("/memories/{memory_id}", response_model=MemoryItem, summary="Correct a memory")
async def edit_memory(memory_id: MemoryId, body: MemoryEdit, request: Request) -> MemoryItem:
    owner = _user(request, body.user_id)
    text = checked_text(body.text, MAX_MEMORY_CHARS, field="text")
    record = await asyncio.to_thread(_memories(request).edit, owner, memory_id, text)
    if record is None:
        raise _unknown(memory_id)
    return _item(record)


@router.delete("/memories/{memory_id}", status_code=204, summary="Forget one memory")
async def forget_memory(
    memory_id: MemoryId, request: Request, user_id: str | None = None
) -> Response:
    owner = _user(request, user_id)
    if not await asyncio.to_thread(_memories(request).forget, owner, memory_id):
        raise _unknown(memory_id)
    return Response(status_code=204)


@router.delete(
    "/memories", response_model=ForgetMemoriesResponse, summary="Forget every memory of yours"
)
async def forget_memories(request: Request, user_id: str | None = None) -> ForgetMemoriesResponse:
    owner = _user(request, user_id)
    count = await asyncio.to_thread(_memories(request).forget_memories, owner)
    return ForgetMemoriesResponse(deleted=count)


@router.delete(
    "/users/me",
    response_model=ForgetAllResponse,
    summary="Delete all your data: memories, sessions, messages, summaries",
)
async def forget_user(request: Request, user_id: str | None = None) -> ForgetAllResponse:
    owner = _user(request, user_id)
    counts = await asyncio.to_thread(_memories(request).forget_user, owner)
    return ForgetAllResponse(
        sessions=counts.sessions,
        messages=counts.messages,
        memories=counts.memories,
        summaries=counts.summaries,
    )
