"""Which conversation uses which of a llama.cpp server's slots, and where a conversation's
evaluated prompt waits while another one uses its slot.

A slot keeps the prompt it last evaluated (the KV cache), so a conversation that comes back
to the slot still holding its prompt evaluates only its new message. With more
conversations than slots, one has to take another's slot. llama-server's own host cache
(``--cache-ram``) does not keep the prompt that is pushed out when a request names its slot
(``id_slot``, which Eva's requests do): it saves it only when less than half of that prompt
is shared with the new one, and Eva's prompts share a long persona prefix. A conversation of
a few exchanges then came back to evaluate its whole history again: 80-300 tokens, seconds
on two cores while other replies were written.

So Eva moves prompts itself, with llama-server's slot save and restore (``/slots``): the
prompt a slot holds is saved to a file before another conversation's request is written
there, and the newcomer's own file, if it has one, is loaded first. Milliseconds each: a
conversation's state is about 28 KB per token for the 1.5B.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

log = logging.getLogger("eva.engines")

# A slot the server chooses itself (a one-off request, or every slot writing).
ANY_SLOT = -1
# A conversation whose slot is still writing its previous request, one cancelled a moment
# ago (a speculative reply the person talked over, a reply cut short), waits this long for
# it before taking another slot. A cancelled request frees its slot within a token or two
# (0.1-0.4 s under load); in another slot the conversation's whole prompt is evaluated
# again, which took 12.5 s for 334 tokens in a load run on 2 cores, and held back every
# reply batched beside it (eva loadtest, docs/scaling.md).
OWN_SLOT_WAIT_S = 1.0


@dataclass(frozen=True)
class SlotTaken:
    index: int  # ANY_SLOT: the server chooses
    held_before: str = ""  # the conversation whose prompt the slot held ("": none)


class SlotTable:
    """Which slot each conversation's next request goes to.

    A conversation goes back to the slot that holds its prompt, waiting up to
    ``own_slot_wait_s`` for it if it is still writing the conversation's previous request.
    One without one, or whose slot writes on, takes a slot nobody writes in: one no
    conversation holds, else that of the one heard from least recently. Never a slot that
    is writing: the server would queue the request behind that reply while other slots
    stood idle.
    """

    def __init__(self, slots: int, own_slot_wait_s: float = OWN_SLOT_WAIT_S) -> None:
        self.slots = slots
        self.own_slot_wait_s = own_slot_wait_s
        self._lock = threading.Lock()
        self._given_back = threading.Condition(self._lock)
        self._by_session: dict[str, int] = {}  # insertion order = least recently used first
        self._held: list[str] = [""] * slots  # whose prompt each slot holds
        self._writing: set[int] = set()

    def take(self, session: str) -> SlotTaken:
        """A slot for the session's next request, marked as writing until ``give_back``;
        ``ANY_SLOT`` for a one-off request or when all are writing."""
        if not session:
            return SlotTaken(ANY_SLOT)
        with self._lock:
            own = self._by_session.get(session)
            if own in self._writing:
                self._given_back.wait_for(
                    lambda: self._by_session.get(session) != own or own not in self._writing,
                    self.own_slot_wait_s,
                )
            own = self._by_session.pop(session, None)
            slot = own if own is not None and own not in self._writing else self._idle_slot()
            if slot is None:
                if own is not None:
                    self._by_session[session] = own
                return SlotTaken(ANY_SLOT)
            self._by_session[session] = slot
            self._writing.add(slot)
            held_before, self._held[slot] = self._held[slot], session
            return SlotTaken(slot, held_before)

    def give_back(self, slot: int) -> None:
        with self._lock:
            self._writing.discard(slot)
            self._given_back.notify_all()

    def _idle_slot(self) -> int | None:
        held = set(self._by_session.values())
        for slot in range(self.slots):
            if slot not in held and slot not in self._writing:
                return slot
        for session, slot in self._by_session.items():  # least recently used first
            if slot not in self._writing:
                del self._by_session[session]
                return slot
        return None


class PromptKeeper(Protocol):
    def hand_over(self, slot: int, held_before: str, session: str) -> None:
        """Before ``session``'s request is written into ``slot``: keep the prompt of the
        conversation it held (``held_before``, "" for none), and put back ``session``'s
        own if it was kept. Never raises: a prompt not kept is only evaluated again."""


def _file_name(session: str) -> str:
    # A session id is the client's string; a digest is a safe file name that shows nothing.
    return f"prompt-{hashlib.sha256(session.encode()).hexdigest()[:32]}.bin"


class SavedPrompts:
    """Conversations' prompts saved by llama-server (``--slot-save-path``) while another
    conversation uses their slot, at most ``budget_bytes`` of them, the oldest dropped
    first. ``post(path, body)`` sends llama-server an admin request and returns its JSON
    answer; ``directory`` is its slot-save path, private to Eva."""

    def __init__(
        self, post: Callable[[str, dict[str, Any]], Any], directory: Path, budget_bytes: int
    ) -> None:
        self._post = post
        self._directory = directory
        self._budget_bytes = budget_bytes
        # One hand-over at a time: a save and the restore that follows must not interleave
        # with another's; each takes milliseconds.
        self._lock = threading.Lock()
        self._sizes: OrderedDict[str, int] = OrderedDict()  # oldest saved first

    def hand_over(self, slot: int, held_before: str, session: str) -> None:
        with self._lock:
            if held_before:
                self._save(slot, held_before)
            if session in self._sizes:
                self._restore(slot, session)

    def kept(self) -> int:
        """How many conversations' prompts are saved now."""
        with self._lock:
            return len(self._sizes)

    def _save(self, slot: int, session: str) -> None:
        name = _file_name(session)
        try:
            answer = self._post(f"/slots/{slot}?action=save", {"filename": name})
            size = int(answer.get("n_written", 0)) if isinstance(answer, dict) else 0
        except (httpx.HTTPError, ValueError) as exc:  # restarting, say: evaluated again
            log.debug("could not save slot %d: %s", slot, exc)
            self._forget(session)
            return
        self._sizes.pop(session, None)
        self._sizes[session] = size
        while sum(self._sizes.values()) > self._budget_bytes and len(self._sizes) > 1:
            self._forget(next(iter(self._sizes)))

    def _restore(self, slot: int, session: str) -> None:
        try:
            self._post(f"/slots/{slot}?action=restore", {"filename": _file_name(session)})
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("could not restore slot %d: %s", slot, exc)
        # The slot holds it now (or it is lost): the file is not needed until it is saved again.
        self._forget(session)

    def _forget(self, session: str) -> None:
        self._sizes.pop(session, None)
        (self._directory / _file_name(session)).unlink(missing_ok=True)
