"""The default LLM engine: llama.cpp's own server as a supervised child of Eva, with one
slot per conversation. Served here with the fast brain (SmolLM2); the default brain (the
1.5B) is proved in tests/server/test_default_brain.py."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eva.config import Settings
from eva.engines.base import ChatMessage, EngineError, Sampling
from eva.engines.llm_fallback import FallbackLLM
from eva.engines.llm_llamaserver import SAVED_PROMPTS_MIB, LlamaServerLLM, server_arguments
from eva.engines.llm_openai import OpenAICompatibleLLM
from eva.engines.opening_priority import OpeningPriority

PERSONA = "You are Eva, a warm and friendly companion. Answer in one short sentence."
_RESTART_WITHIN_S = 60.0


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_model": "smollm2", "llm_backends": ["llamaserver"], "llm_slots": 2,
        "llm_threads": 1, "llm_context": 512, "data_dir": tmp_path,
    }  # fmt: skip
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[LlamaServerLLM]:
    llm = LlamaServerLLM(_settings(tmp_path))
    llm.warm_up([ChatMessage("system", PERSONA)])
    yield llm
    llm.close()


def _ask(llm: Any, text: str, session: str = "", max_tokens: int = 12) -> str:
    messages = [ChatMessage("system", PERSONA), ChatMessage("user", text)]
    return "".join(
        llm.stream(messages, max_tokens=max_tokens, cancel=threading.Event(), session=session)
    )


def _kill_model_server(llm: LlamaServerLLM) -> int:
    """kill -9 the model server and wait until Eva has noticed; its pid."""
    pid = llm.server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while llm.server.ready.is_set():
        assert time.monotonic() < deadline, "the death went unnoticed"
        time.sleep(0.01)
    return pid


def _wait_restarted(llm: LlamaServerLLM, old_pid: int) -> None:
    deadline = time.monotonic() + _RESTART_WITHIN_S
    while not (llm.server.ready.is_set() and llm.server.pid not in (None, old_pid)):
        assert time.monotonic() < deadline, f"not restarted:\n{llm.server.log_tail()}"
        time.sleep(0.05)


def test_replies_come_from_a_child_server_on_a_private_unix_socket(
    served: LlamaServerLLM,
) -> None:
    assert _ask(served, "Hello!", session="s1").strip()
    assert stat.S_IMODE(served.server.directory.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(served.server.socket_path.stat().st_mode)
    command = Path(f"/proc/{served.server.pid}/cmdline").read_bytes().split(b"\0")
    assert command[command.index(b"--host") + 1] == str(served.server.socket_path).encode()
    assert served.concurrent_streams == 2 and served.reuses_prompt_prefix


def _prompt_counters(llm: LlamaServerLLM) -> tuple[float, float]:
    """llama-server's own counters: prompt tokens evaluated, and taken from a cache."""
    with httpx.Client(transport=llm.server.transport(), base_url="http://llama-server") as c:
        lines = c.get("/metrics").text.splitlines()
    values = dict(line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))
    return (
        float(values["llamacpp:prompt_tokens_total"]),
        float(values["llamacpp:prompt_tokens_cached_total"]),
    )


def test_a_second_conversation_does_not_evict_the_first_ones_cached_prompt(
    served: LlamaServerLLM,
) -> None:
    told = "My name is Ana and I grow tomatoes in my garden, mostly the small sweet ones."
    _ask(served, told, session="ana")
    _ask(served, "What is the weather like on Mars these days?", session="ben")
    evaluated, cached = _prompt_counters(served)
    _ask(served, f"{told} What do I grow?", session="ana")
    evaluated_after, cached_after = _prompt_counters(served)
    # Ana's slot still held her prompt: only the new words were evaluated.
    assert evaluated_after - evaluated <= 20  # the whole prompt is ~75 tokens
    assert cached_after - cached >= 40


def test_a_conversation_whose_slot_another_took_gets_its_prompt_back(tmp_path: Path) -> None:
    # A persona prefix as long as Eva's (~160 tokens) against a short conversation: the
    # case llama-server's own host cache leaves out (it keeps a pushed-out prompt only when
    # less than half of it is shared with the newcomer's).
    persona = PERSONA + " Speak as a friend would, simply and warmly." * 12
    llm = LlamaServerLLM(_settings(tmp_path))
    try:
        llm.warm_up([ChatMessage("system", persona)])

        def ask(text: str, session: str) -> None:
            messages = [ChatMessage("system", persona), ChatMessage("user", text)]
            "".join(llm.stream(messages, max_tokens=4, cancel=threading.Event(), session=session))

        told = "My name is Ana and I grow tomatoes in my garden, mostly the small sweet ones."
        ask(told, "ana")
        ask("What is the weather like on Mars these days?", "ben")
        ask("Tell me a short story about a cat who plays the piano.", "carl")  # ana's slot
        assert llm.saved_prompts.kept() == 1
        evaluated, _ = _prompt_counters(llm)
        ask(f"{told} What do I grow?", "ana")  # in ben's slot now
        evaluated_after, _ = _prompt_counters(llm)
        # Only "What do I grow?" and the template around it: her ~25 words came back.
        assert evaluated_after - evaluated <= 15
    finally:
        llm.close()


def test_a_reply_asked_again_while_the_cancelled_one_closes_keeps_its_slot_and_prompt(
    served: LlamaServerLLM,
) -> None:
    told = "My name is Ana and I grow tomatoes in my garden, mostly the small sweet ones."
    _ask(served, "What is the weather like on Mars these days?", session="ben")
    cancel = threading.Event()
    first_token = threading.Event()

    def talked_over() -> None:  # a speculative reply the person talked over
        messages = [ChatMessage("system", PERSONA), ChatMessage("user", told)]
        for _ in served.stream(messages, max_tokens=64, cancel=cancel, session="ana"):
            first_token.set()

    writer = threading.Thread(target=talked_over)
    writer.start()
    assert first_token.wait(30)
    evaluated, _ = _prompt_counters(served)
    cancel.set()  # and at once the next request, before the first has closed
    _ask(served, f"{told} What do I grow?", session="ana")
    writer.join(10)
    evaluated_after, _ = _prompt_counters(served)
    # Her slot held her words: only the new ones were evaluated, not the whole prompt
    # again in ben's or a fresh slot (~75 tokens).
    assert evaluated_after - evaluated <= 20


def test_a_server_shared_by_several_evas_keeps_pushed_out_prompts_itself(tmp_path: Path) -> None:
    def host_cache(arguments: list[str]) -> str:
        return arguments[arguments.index("--cache-ram") + 1]

    model = tmp_path / "model.gguf"
    assert host_cache(server_arguments(_settings(tmp_path), model, tmp_path)) == "0"
    shared = server_arguments(_settings(tmp_path), model, tmp_path, prompts_kept_by_eva=False)
    assert host_cache(shared) == str(SAVED_PROMPTS_MIB)  # eva cluster: no one Eva steers it


def test_a_new_conversation_evaluates_only_its_words_after_the_persona_warmed_every_slot(
    tmp_path: Path,
) -> None:
    examples = [
        ChatMessage("user", "I finally finished the puzzle with a thousand pieces!"),
        ChatMessage("assistant", "Oh, well done! That takes real patience."),
    ]
    prefix = [ChatMessage("system", PERSONA), *examples]
    llm = LlamaServerLLM(_settings(tmp_path))
    try:
        llm.warm_up(prefix)
        for n, session in enumerate(("first", "second")):  # a slot each, both warmed
            evaluated, _ = _prompt_counters(llm)
            asked = [*prefix, ChatMessage("user", f"Tell me about owls, please ({n}).")]
            "".join(llm.stream(asked, max_tokens=2, cancel=threading.Event(), session=session))
            evaluated_after, _ = _prompt_counters(llm)
            # The persona and its examples (~70 tokens) were evaluated ahead: only the
            # person's words and the template around them are left.
            assert evaluated_after - evaluated <= 20, session
    finally:
        llm.close()


def _yielding_client(llm: LlamaServerLLM, priority: OpeningPriority) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(
        "http://llama-server/v1", "eva-brain", connect_timeout_s=2.0,
        first_token_timeout_s=60.0, llama_cpp_slots=2, opening_priority=priority,
        transport=llm.server.transport(),
    )  # fmt: skip


def test_a_reply_gives_way_to_another_ones_opening_and_continues_where_it_stopped(
    served: LlamaServerLLM,
) -> None:
    greedy = Sampling(temperature=0.0, seed=7)
    heard = [ChatMessage("system", PERSONA), ChatMessage("user", "Describe the sea at night.")]
    # each character counts as a minute of speech written ahead: the reply may always give
    # way (when it may is proved on a virtual clock, tests/engines/test_opening_priority.py)
    priority = OpeningPriority(opening_tokens=4, max_yield_s=30.0, min_run_s=0.0,
                               speech_chars_per_s=1 / 60)  # fmt: skip
    client = _yielding_client(served, priority)
    alone = "".join(
        client.stream(heard, max_tokens=48, cancel=threading.Event(), session="a",
                      sampling=greedy)
    )  # fmt: skip
    assert priority.yields == 0, "nobody else was opening"
    deltas: list[str] = []
    under_way = threading.Event()

    def hear() -> None:
        for delta in client.stream(heard, max_tokens=48, cancel=threading.Event(),
                                   session="a", sampling=greedy):  # fmt: skip
            deltas.append(delta)
            if len(deltas) == 6:  # past its opening: let the other reply start
                under_way.set()
                deadline = time.monotonic() + 30
                while priority.openings == 0 and time.monotonic() < deadline:
                    time.sleep(0.005)

    listener = threading.Thread(target=hear)
    listener.start()
    assert under_way.wait(60)
    new = "".join(
        client.stream([ChatMessage("system", PERSONA), ChatMessage("user", "Hello!")],
                      max_tokens=8, cancel=threading.Event(), session="b")
    )  # fmt: skip
    listener.join(60)
    assert new.strip()
    assert priority.yields >= 1, "the reply under way never gave way"
    # the continuation neither repeats what was written nor loses a word of it
    assert "".join(deltas) == alone


def test_a_model_server_killed_with_sigkill_is_restarted_and_meanwhile_fails_at_once(
    served: LlamaServerLLM,
) -> None:
    pid = _kill_model_server(served)
    started = time.monotonic()
    with pytest.raises(EngineError):
        _ask(served, "Are you there?", session="s1")
    assert time.monotonic() - started < 2.5  # an error now, not a hang
    _wait_restarted(served, pid)
    assert served.server.restarts == 1
    # The persona was evaluated into the new server's slots again after the restart: a new
    # conversation's first turn takes it from the cache.
    _, cached = _prompt_counters(served)
    assert _ask(served, "Are you back?", session="new").strip()
    assert _prompt_counters(served)[1] - cached >= 15


def test_the_chain_answers_from_a_remote_server_while_the_local_one_restarts(
    served: LlamaServerLLM, llama_server: str
) -> None:
    remote = OpenAICompatibleLLM(
        llama_server, "smollm2", connect_timeout_s=1.0, first_token_timeout_s=30.0
    )
    chain = FallbackLLM([served, remote])
    pid = _kill_model_server(served)
    assert _ask(chain, "Tell me something nice.", session="s1").strip()
    assert chain.failures == {"llamaserver": 1, "openai": 0}
    _wait_restarted(served, pid)
    assert _ask(chain, "And again?", session="s1").strip()
    assert chain.failures == {"llamaserver": 1, "openai": 0}
    remote.close()


def test_the_model_server_and_every_thread_of_it_run_at_a_lower_priority_than_eva(
    served: LlamaServerLLM,
) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    expected = min(19, ours + Settings.model_fields["llm_nice"].default)
    assert expected > ours  # speech and the event loop go first on shared cores
    threads = list(Path(f"/proc/{served.server.pid}/task").iterdir())
    niceness = {int(_stat_fields(thread / "stat")[_NICE_FIELD]) for thread in threads}
    assert len(threads) > 1 and niceness == {expected}


def test_paused_for_speech_the_model_server_computes_nothing_until_resumed(
    served: LlamaServerLLM,
) -> None:
    pid = served.server.pid
    assert pid is not None
    served.pause_for_speech()
    try:
        _wait_state(pid, "T")  # stopped: its cores are free for the synthesis
    finally:
        served.resume_after_speech()
    _wait_state(pid, "S", "R")
    assert _ask(served, "Still there?", session="s1").strip()


_EVA_THAT_DIES = """
import os, signal, sys
from pathlib import Path
from eva.config import Settings
from eva.engines.llm_llamaserver import SAVED_PROMPTS_MIB, LlamaServerLLM, server_arguments
llm = LlamaServerLLM(Settings(llm_model="smollm2", llm_slots=1, llm_threads=1,
                              llm_context=256, data_dir=Path(sys.argv[1])))
print(llm.server.pid, flush=True)
llm.pause_for_speech()  # even a stopped model server must not outlive Eva
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_model_server_dies_with_eva_even_when_eva_is_killed(tmp_path: Path) -> None:
    eva = subprocess.run(
        [sys.executable, "-c", _EVA_THAT_DIES, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert eva.returncode == -signal.SIGKILL, eva.stderr[-2000:]
    child = int(eva.stdout.split()[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        assert time.monotonic() < deadline, "llama-server outlived Eva"
        time.sleep(0.05)


def _wait_state(pid: int, *states: str) -> None:
    """Signals are delivered asynchronously: the state follows within milliseconds."""
    deadline = time.monotonic() + 2
    while _state(pid) not in states:
        assert time.monotonic() < deadline, f"state {_state(pid)}, not one of {states}"
        time.sleep(0.005)


def _state(pid: int) -> str:
    try:
        return _stat_fields(Path(f"/proc/{pid}/stat"))[_STATE_FIELD]
    except OSError:
        return "gone"


# proc(5) stat fields after the command name: state is the 3rd field, nice the 19th.
_STATE_FIELD, _NICE_FIELD = 0, 16


def _stat_fields(stat: Path) -> list[str]:
    """A /proc stat file's fields after the command name (which may hold spaces)."""
    return stat.read_text().rsplit(")", 1)[1].split()


def test_a_model_server_that_cannot_load_its_model_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(EngineError, match=r"exited while loading.*Its last output"):
        LlamaServerLLM(_settings(tmp_path, llm_model=str(broken)))
