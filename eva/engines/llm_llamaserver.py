"""The default brain: a GGUF model served by llama.cpp's own server, supervised by Eva.

``llama-server`` (built with the portable flags, ``scripts/build_llama.sh``) runs as a
child process (``eva.engines.model_server``) with one slot per concurrent conversation and
continuous batching: four conversations at once share the two cores' work instead of
queueing. Each conversation keeps to its own slot, so its evaluated prompt stays cached
and a turn evaluates only the new message; one whose slot another conversation took gets
its prompt back from a file (``eva.engines.llama_slots``).

Eva talks to it exactly as to any remote OpenAI-compatible server (``llm_openai``: the same
request, streaming and error handling); only the transport (a private unix socket) and the
slot affinity differ. The packaged models are prompted with Eva's own ChatML template
(``templates/chatml.jinja``), never with a template read from the downloaded file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import httpx

from eva.config import Settings
from eva.engines.base import COMPANION_SAMPLING, ChatMessage, EngineError, Sampling
from eva.engines.llama_slots import SavedPrompts
from eva.engines.llm_models import PACKAGED_MODELS, resolve_model_path
from eva.engines.llm_openai import BackendUnavailableError, OpenAICompatibleLLM
from eva.engines.model_server import ModelServer
from eva.engines.opening_priority import OpeningPriority
from eva.native.llama import server_binary

log = logging.getLogger("eva.engines")

CHAT_TEMPLATE = Path(__file__).parent / "templates" / "chatml.jinja"
# Sampling for a chatty companion, as for the in-process model: some variety, while top_p
# and the repeat penalty keep a small model from wandering off or looping on a phrase.
TOP_P = 0.9
REPEAT_PENALTY = 1.1
# Prompts kept for conversations whose slot another one took (per server), the oldest
# dropped first: on disk by Eva (``eva.engines.llama_slots``), or in a shared server's host
# memory. About 28 KB per token for the 1.5B, so 256 MiB holds ~9000 tokens, some thirty
# conversations of a few exchanges.
SAVED_PROMPTS_MIB = 256
# A turn's first token on a busy local server (four prompts at once on two cores) can take
# several seconds; only a server that says nothing for this long is given up on.
FIRST_TOKEN_TIMEOUT_S = 60.0
_CONNECT_TIMEOUT_S = 2.0
_WARM_UP_TOKENS = 1
_WARM_SLOT_FILE = "warm-slot.bin"


def server_arguments(
    settings: Settings,
    model: Path,
    directory: Path,
    draft: Path | None = None,
    prompts_kept_by_eva: bool = True,
) -> list[str]:
    """llama-server's command line. ``prompts_kept_by_eva``: one Eva steers the slots and
    keeps the prompts they give up (``SavedPrompts``); a server shared by several Eva
    processes (``eva cluster``) picks slots itself and keeps them in its own host cache."""
    arguments = [
        str(server_binary()),
        "--model", str(model),
        "--host", str(directory / "llama.sock"),
        "--threads", str(settings.llm_threads),
        "--threads-batch", str(settings.llm_threads),
        "--parallel", str(settings.llm_slots),
        # every slot gets the whole context Eva's prompts are sized for
        "--ctx-size", str(settings.llm_context * settings.llm_slots),
        "--no-kv-unified",
        "--cont-batching",
        "--cache-ram", "0" if prompts_kept_by_eva else str(SAVED_PROMPTS_MIB),
        "--metrics",
        # where a warmed slot is saved, to be copied into the others (``warm_up``), and
        # where conversations' prompts wait while another uses their slot
        "--slot-save-path", str(directory),
        "--no-webui",
        "--alias", "eva-brain",
    ]  # fmt: skip
    if settings.llm_model in PACKAGED_MODELS:
        arguments += ["--jinja", "--chat-template-file", str(CHAT_TEMPLATE)]
    if settings.llm_speculative:
        arguments += ["--spec-type", settings.llm_speculative]
    if draft is not None:
        arguments += ["--model-draft", str(draft)]
    return arguments


class LlamaServerLLM:
    """A supervised llama-server and an OpenAI-compatible client with slot affinity."""

    name = "llamaserver"
    reuses_prompt_prefix = True

    def __init__(self, settings: Settings) -> None:
        model = resolve_model_path(settings.llm_model, settings.cache_dir)
        draft = (
            resolve_model_path(settings.llm_draft_model, settings.cache_dir)
            if settings.llm_draft_model
            else None
        )
        self.concurrent_streams = settings.llm_slots  # one stream per slot
        self._pause_for_speech = settings.llm_pause_for_speech
        self._warm_prefix: tuple[ChatMessage, ...] | None = None  # for warming after restarts
        self.server = ModelServer(
            lambda directory: server_arguments(settings, model, directory, draft),
            label=f"the model server (llama-server, {model.name})",
            on_restart=self._warm_after_restart,
            nice=settings.llm_nice,
        )
        self.server.start()
        self._admin = httpx.Client(
            base_url="http://llama-server",
            transport=self.server.transport(),
            timeout=httpx.Timeout(FIRST_TOKEN_TIMEOUT_S, connect=_CONNECT_TIMEOUT_S),
        )
        self.saved_prompts = SavedPrompts(
            self._post, self.server.directory, SAVED_PROMPTS_MIB * 1024 * 1024
        )
        self._client = OpenAICompatibleLLM(
            "http://llama-server/v1",
            "eva-brain",
            connect_timeout_s=_CONNECT_TIMEOUT_S,
            first_token_timeout_s=FIRST_TOKEN_TIMEOUT_S,
            concurrent_streams=settings.llm_slots,
            llama_cpp_slots=settings.llm_slots,
            extra_body={"top_p": TOP_P, "repeat_penalty": REPEAT_PENALTY},
            opening_priority=OpeningPriority() if settings.llm_opening_priority else None,
            prompt_keeper=self.saved_prompts,
            transport=self.server.transport(),
        )

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Generator[str, None, None]:
        if not self.server.ready.is_set():
            raise BackendUnavailableError(f"{self.server.label} is restarting")
        yield from self._client.stream(
            messages, max_tokens=max_tokens, cancel=cancel, session=session, sampling=sampling
        )

    def warm_up(self, prefix: Sequence[ChatMessage] = ()) -> None:
        """Evaluate what turns start with (the persona's system prompt and example
        exchanges) in every slot, so that no conversation's first turn evaluates it (~200
        tokens: seconds for the 1.5B here; with the system prompt alone, a slot's first
        turn still evaluated the examples, 80 tokens, 1.2-2 s under load).

        It is evaluated once, in slot 0, and copied into the others with llama-server's
        slot save and restore (milliseconds each).
        """
        self._warm_prefix = tuple(prefix)
        messages = [
            {"role": m.role, "content": m.content} for m in (*prefix, ChatMessage("user", "Hi"))
        ]
        try:
            self._post(
                "/v1/chat/completions",
                {"messages": messages, "max_tokens": _WARM_UP_TOKENS, "id_slot": 0,
                 "cache_prompt": True},
            )  # fmt: skip
            if self.concurrent_streams > 1:
                self._post("/slots/0?action=save", {"filename": _WARM_SLOT_FILE})
                for slot in range(1, self.concurrent_streams):
                    self._post(f"/slots/{slot}?action=restore", {"filename": _WARM_SLOT_FILE})
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.server.label} failed to warm up: {exc}") from exc

    def pause_for_speech(self) -> None:
        if self._pause_for_speech:
            self.server.pause()

    def resume_after_speech(self) -> None:
        self.server.resume()

    def close(self) -> None:
        # The server (and its supervisor) first: a restart that comes meanwhile warms the
        # new server through these clients, which must not be closed under it.
        self.server.close()
        self._client.close()
        self._admin.close()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        """An admin request to llama-server; its JSON answer."""
        response = self._admin.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def _warm_after_restart(self) -> None:
        if self._warm_prefix is None:
            return
        try:
            self.warm_up(self._warm_prefix)
        except EngineError as exc:
            log.warning("%s", exc)


def create(settings: Settings) -> LlamaServerLLM:
    return LlamaServerLLM(settings)
