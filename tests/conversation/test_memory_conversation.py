"""Memory through the conversation service with the real models: what one session learns
is in the next session's prompt (and greeting) for the same person only; a changed fact
replaces the old; a forgotten one is gone from later prompts; a long conversation stays
within the model's context and loses nothing from storage; the model's extra facts."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from eva.config import Settings
from eva.conversation.facts import extract_facts
from eva.conversation.facts.common import sentences
from eva.conversation.facts.model import ask_model, worth_asking
from eva.conversation.prompt import estimate_tokens, prompt_tokens
from eva.conversation.service import Conversation
from eva.engines.base import COMPANION_SAMPLING, ChatMessage, LLMEngine, Sampling
from eva.engines.runtime import Engines
from eva.stats import LatencyStats
from eva.store.memories import NewMemory
from eva.store.sqlite import Store
from tests.conversation.test_facts import load_sentences, score
from tests.support import make_settings

# The model must not make the facts worse than the patterns alone (it only reads what
# they found nothing in, and its answers must be the person's own words).
MIN_COMBINED_PRECISION = 0.90


class Recording:
    """The real LLM, with a record of every prompt it was given and of its token bound."""

    def __init__(self, llm: LLMEngine) -> None:
        self.llm = llm
        self.name = llm.name
        self.reuses_prompt_prefix = llm.reuses_prompt_prefix
        self.concurrent_streams = llm.concurrent_streams
        self.prompts: list[list[ChatMessage]] = []
        self.max_tokens: list[int] = []

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Iterator[str]:
        self.prompts.append(list(messages))
        self.max_tokens.append(max_tokens)
        return self.llm.stream(messages, max_tokens=max_tokens, cancel=cancel, session=session)

    @property
    def system(self) -> str:
        """Every system message of the last prompt: the persona and summary, the memories."""
        return "\n".join(m.content for m in self.prompts[-1] if m.role == "system")


@pytest.fixture
def recording(engines: Engines) -> Recording:
    return Recording(engines.llm)


@pytest.fixture
def service(tmp_path: Path, engines: Engines, recording: Recording) -> Iterator[Conversation]:
    settings = make_settings(tmp_path, memory_model_extraction=False, max_reply_tokens=24)
    store = Store(settings.db_path)
    yield Conversation(settings, replace(engines, llm=recording), store, LatencyStats())
    store.close()


async def say(service: Conversation, session_id: str, text: str) -> str:
    reply = ""
    async for event in service.reply(session_id, text, audio=False):
        reply = getattr(event, "text", reply)
    await service.memory.settled()
    return reply


async def test_a_fact_told_in_one_session_is_recalled_in_the_next_session_of_that_user_only(
    service: Conversation, recording: Recording
) -> None:
    first = await service.open_session(None, "ana")
    await say(service, first.id, "Hi! My name is Ana and I'm going to visit my sister next week.")

    again = await service.open_session(None, "ana")
    greeting = await service.greeting(again.id, "ana")
    assert greeting is not None and greeting.startswith("Welcome back, Ana!")
    assert "you're going to visit your sister next week" in greeting
    stored = service.store.messages(again.id)
    assert [(m.role, m.content) for m in stored] == [("assistant", greeting)]
    await say(service, again.id, "Do you remember what my name is?")
    assert "Their name is Ana." in recording.system
    assert "visit their sister next week" in recording.system
    first_history = 1 + len(service.persona.examples)  # after the persona's examples
    assert recording.prompts[-1][first_history] == ChatMessage("assistant", greeting)

    third = await service.open_session(None, "ana")
    assert await service.greeting(third.id, "ana") == "Welcome back, Ana! How have you been?"

    stranger = await service.open_session(None, "bob")
    assert await service.greeting(stranger.id, "bob") is None
    await say(service, stranger.id, "Do you remember what my name is?")
    assert "Ana" not in recording.system and "sister" not in recording.system

    anonymous = await service.open_session(None, None)
    await say(service, anonymous.id, "My name is Zed.")
    with service.store.read() as conn:
        zed = conn.execute("SELECT COUNT(*) FROM memories WHERE text LIKE '%Zed%'").fetchone()
    assert zed[0] == 0


async def test_a_changed_fact_replaces_the_old_one_in_storage_and_in_the_prompt(
    service: Conversation, recording: Recording
) -> None:
    session = await service.open_session(None, "ana")
    await say(service, session.id, "My name is Ana. I live in Lyon.")
    await say(service, session.id, "Actually, call me Anna. And I moved to Paris last month.")
    texts = sorted(m.text for m in service.memory.book.memories.memories("ana"))
    assert texts == ["Lives in Paris (moved there).", "Their name is Anna."]
    later = await service.open_session(None, "ana")
    await say(service, later.id, "What city do I live in?")
    assert "Their name is Anna." in recording.system and "Paris" in recording.system
    assert "Lyon" not in recording.system and "name is Ana." not in recording.system


async def test_a_forgotten_memory_is_gone_from_storage_and_from_later_prompts(
    service: Conversation, recording: Recording
) -> None:
    session = await service.open_session(None, "ana")
    await say(service, session.id, "I love jazz.")
    (jazz,) = service.memory.book.memories.memories("ana")
    await say(service, session.id, "Can you suggest some jazz to listen to?")
    assert "Loves jazz." in recording.system
    assert service.store.memories.forget("ana", jazz.id)
    await say(service, session.id, "Can you suggest some jazz to listen to?")
    assert "Loves jazz." not in recording.system
    assert service.memory.book.memories.search("ana", "jazz", 5) == []


class LongReplies:
    """A stand-in LLM that always writes the longest reply the bounds allow, with no
    sentence end to stop it early: harder on the context budget than the real model."""

    name = "long-replies"
    reuses_prompt_prefix = False
    concurrent_streams = 1

    def __init__(self) -> None:
        self.prompts: list[list[ChatMessage]] = []
        self.max_tokens: list[int] = []

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Iterator[str]:
        self.prompts.append(list(messages))
        self.max_tokens.append(max_tokens)
        for index in range(max_tokens):
            yield f"word{index} "


def _text_service(settings: Settings, engines: Engines, llm: LLMEngine) -> Conversation:
    """A conversation service over ``llm`` and a fresh store (``service.store``)."""
    return Conversation(
        settings, replace(engines, llm=llm), Store(settings.db_path), LatencyStats()
    )


async def _say(service: Conversation, session_id: str, text: str) -> None:
    """One typed turn, text only, with what it taught stored."""
    async for _ in service.reply(session_id, text, audio=False):
        pass
    await service.memory.settled()


async def test_a_hundred_turn_conversation_stays_in_the_context_and_keeps_every_message(
    tmp_path: Path, engines: Engines
) -> None:
    settings = make_settings(tmp_path, memory_model_extraction=False)
    llm = LongReplies()
    service = _text_service(settings, engines, llm)
    store = service.store
    session = await service.open_session(None, "ana")
    said = []
    for turn in range(100):
        text = (
            f"Turn {turn}: I love hobby number {turn}. "
            + "Let me tell you more about my day, it was long and full of little things. " * 3
        )
        said.append(text.strip())
        await _say(service, session.id, text.strip())

    budget = service.prompt_budget
    assert budget == settings.llm_context - settings.max_reply_tokens - 64
    assert len(llm.prompts) == 100
    assert max(prompt_tokens(p) for p in llm.prompts) <= budget
    assert _real_tokens(settings, max(llm.prompts, key=prompt_tokens)) <= budget
    stored = store.messages(session.id)
    assert len(stored) == 200
    assert [m.content for m in stored if m.role == "user"] == said
    summary = service.memory.book.memories.summary(session.id)
    assert summary is not None and "Turn 80:" in summary.text  # older turns, condensed
    last = llm.prompts[-1]
    dialogue = [m for m in last if m.role != "system"]
    assert dialogue[-2].role == "assistant" and dialogue[-3].content == said[-2]  # whole
    assert "Turn 80:" in last[0].content
    assert len(service.memory.book.memories.memories("ana")) == 100
    store.close()


def _real_tokens(settings: Settings, messages: list[ChatMessage]) -> int:
    """The prompt's length by SmolLM2's own tokenizer, with the estimate's per-message
    allowance for the chat template's markers."""
    from eva.engines.llm_llamacpp import Llama
    from eva.engines.llm_models import resolve_model_path

    model = resolve_model_path(settings.llm_model, settings.cache_dir)
    vocab = Llama(str(model), vocab_only=True, verbose=False)
    per_message = estimate_tokens("")
    return sum(len(vocab.tokenize(m.content.encode())) + per_message for m in messages)


def test_the_model_adds_facts_the_patterns_miss_without_losing_precision(
    engines: Engines,
) -> None:
    for language in ("en", "fr"):
        expected = load_sentences(language)
        patterns = [(text, extract_facts(text, language)) for text, _ in expected]
        combined = []
        started = time.monotonic()
        asked = 0
        for text, found in patterns:
            extra: list[NewMemory] = []
            if not found:
                for sentence in sentences(text):
                    if worth_asking(sentence, language):
                        asked += 1
                        extra += ask_model(engines.llm, sentence, language, threading.Event())
            combined.append((text, found + extra))
        p_precision, p_recall, _ = score(patterns, expected)
        precision, recall, mistakes = score(combined, expected)
        seconds = time.monotonic() - started
        print(
            f"\n{language}: patterns P {p_precision:.2f} R {p_recall:.2f}; "
            f"patterns+model P {precision:.2f} R {recall:.2f} "
            f"({asked} sentences to the model, {seconds:.1f} s)\n" + "\n".join(mistakes)
        )
        assert precision >= MIN_COMBINED_PRECISION, mistakes
        assert recall >= p_recall - 1e-9


async def test_the_model_reads_leftover_sentences_only_once_no_turn_is_in_flight(
    tmp_path: Path, engines: Engines
) -> None:
    from eva.conversation.memory import MemoryBook
    from eva.conversation.memory_worker import QUIET_BEFORE_S, ModelExtraction

    store = Store(tmp_path / "eva.db")
    recording = Recording(engines.llm)
    worker = ModelExtraction(recording, engines.pools, MemoryBook(store, "en", 16))
    worker.turn_started()  # a reply is being written
    worker.submit("ana", 1, "Photography is my passion. It's raining.", found_keys=[])
    assert worker.pending == 1  # only the first-person statement is worth the model's time
    await asyncio.sleep(QUIET_BEFORE_S + 0.5)
    assert recording.prompts == [] and worker.pending == 1
    worker.turn_ended()
    deadline = time.monotonic() + QUIET_BEFORE_S + 60
    while worker.pending or (worker._task is not None and not worker._task.done()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert len(recording.prompts) == 1
    assert recording.prompts[0][-1] == ChatMessage("user", "Photography is my passion.")
    await worker.aclose()
    store.close()


class ShortReplies(LongReplies):
    name = "short-replies"

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Iterator[str]:
        self.prompts.append(list(messages))
        self.max_tokens.append(max_tokens)
        yield f"That sounds lovely, tell me more about number {len(self.prompts)}."


async def test_the_prompt_grows_from_the_same_prefix_between_folds_of_the_history(
    tmp_path: Path, engines: Engines
) -> None:
    # llama.cpp re-evaluates everything after the first token that differs from the last
    # prompt: a history sliding by one turn every turn cost ~3 s before each reply.
    settings = make_settings(tmp_path, memory_model_extraction=False, history_turns=4)
    llm = ShortReplies()
    service = _text_service(settings, engines, llm)
    store = service.store
    session = await service.open_session(None, "ana")
    turns = 40
    for turn in range(turns):
        # Words that recall different memories each turn: the memory note changes, the
        # prefix before it must not.
        text = f"I love sport number {turn}. Do you like sport {turn % 5}?"
        await _say(service, session.id, text)

    def cached_part(prompt: list[ChatMessage]) -> list[ChatMessage]:
        """The prompt without what only this turn has: the memory note, the message."""
        return prompt[:-2] if prompt[-2].role == "system" and len(prompt) > 2 else prompt[:-1]

    breaks = sum(
        1
        for before, after in itertools.pairwise(llm.prompts)
        if after[: len(cached_part(before))] != cached_part(before)
    )
    # 8 messages of history at most, folded back to 4: one new prefix every 2 turns at
    # most (every turn would be 39).
    assert breaks <= turns // 2
    assert any(m.role == "system" and "sport" in m.content for m in llm.prompts[-1][1:])
    assert len(store.messages(session.id)) == 2 * turns
    store.close()


class PrimedShortReplies(ShortReplies):
    """A model that, like llama.cpp, reuses the evaluated start of its last prompt."""

    reuses_prompt_prefix = True

    def __init__(self) -> None:
        super().__init__()
        self.primed: list[list[ChatMessage]] = []

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Iterator[str]:
        if max_tokens == 1:
            self.primed.append(list(messages))
            return iter(["."])
        return super().stream(messages, max_tokens=max_tokens, cancel=cancel, session=session)


async def test_after_a_fold_the_next_prompt_is_evaluated_before_the_person_speaks(
    tmp_path: Path, engines: Engines
) -> None:
    settings = make_settings(tmp_path, memory_model_extraction=False, history_turns=2)
    llm = PrimedShortReplies()
    service = _text_service(settings, engines, llm)
    store = service.store
    session = await service.open_session(None, None)
    for turn in range(3):  # 6 messages > 4: the third turn folds the first two
        await _say(service, session.id, f"Tell me about cats, part {turn}.")
    assert len(llm.primed) == 1
    primed = llm.primed[0]
    assert primed[-1] == ChatMessage("user", "")  # the prompt so far, without a message
    await _say(service, session.id, "And dogs?")
    nxt = llm.prompts[-1]
    assert nxt[: len(primed) - 1] == primed[:-1]  # all of it reused by the next reply
    assert "part 0" in primed[0].content  # the folded turn is in the summary now
    store.close()
