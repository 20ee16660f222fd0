"""``eva eval``: what Eva says, checked by rules, per brain, side by side (no judge model).

The conversations are in ``eval_cases.toml``: world facts, facts told earlier in the
conversation, facts from an earlier conversation (Eva's memory), a tone that fits the news,
French answered in French, no personal facts invented about the person, and small talk.
Every reply must also be one to three spoken sentences. Each brain runs every case through
the real conversation service (persona, history, memory, reply bounds), in a fresh data
directory, with a fresh user per case.

    eva eval                                  # the default brain and SmolLM2, side by side
    eva eval --brains qwen2.5-coder-1.5b,/models/another.gguf
    eva eval --quick                          # one case of each kind
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import re
import tempfile
import time
import tomllib
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eva.config import Settings

# One to three sentences: what a spoken reply should be (the persona asks for it, and the
# reply bounds enforce at most EVA_MAX_REPLY_SENTENCES).
MIN_SENTENCES, MAX_SENTENCES = 1, 3
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
# Function words that tell French from English in a short reply.
_FRENCH = frozenset(
    "le la les un une des de du et est je tu vous il elle nous ce cette que qui pas pour "  # noqa: SIM905
    "avec sur dans mais très bien ton ta tes mon ma mes ça c'est j'ai tu es suis au aux "
    "oui non merci bonjour comment".split()
)
_ENGLISH = frozenset(
    "the a an and is are you i it that this to of in for with on but very my your what "  # noqa: SIM905
    "how yes no thanks hello i'm it's you're".split()
)


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    turns: list[str]
    earlier: list[str] = field(default_factory=list)
    expect_any: list[str] = field(default_factory=list)
    forbid_any: list[str] = field(default_factory=list)
    language: str | None = None


@dataclass
class CheckResult:
    case: str
    kind: str
    check: str  # content, language or length
    passed: bool
    reply: str
    detail: str = ""


def load_cases(path: Path | None = None) -> list[Case]:
    if path is None:
        text = importlib.resources.files("eva.bench").joinpath("eval_cases.toml").read_text()
    else:
        text = path.read_text()
    return [Case(**entry) for entry in tomllib.loads(text)["case"]]


def mentions(reply: str, phrase: str) -> bool:
    """``phrase`` in ``reply`` as whole words, whatever the case."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", reply, re.IGNORECASE) is not None


def states(reply: str, phrase: str) -> bool:
    """``phrase`` said as a statement: not inside an indirect question ("I don't know what
    your pet's name is" does not say what it is)."""
    pattern = rf"(?<!what )(?<!\w){re.escape(phrase)}(?!\w)"
    return re.search(pattern, reply, re.IGNORECASE) is not None


def spoken_sentences(reply: str) -> int:
    return len([part for part in _SENTENCE_END.split(reply.strip()) if part.strip()])


def language_of(reply: str) -> str:
    words = re.findall(r"[\w']+", reply.lower())
    french = sum(word in _FRENCH for word in words)
    english = sum(word in _ENGLISH for word in words)
    return "fr" if french > english else "en"


def check_reply(case: Case, reply: str) -> list[CheckResult]:
    """The checks of a case's last reply (the length of every reply is checked apart)."""
    results = []
    if case.expect_any or case.forbid_any:
        missing = case.expect_any and not any(mentions(reply, p) for p in case.expect_any)
        forbidden = [p for p in case.forbid_any if states(reply, p)]
        detail = "; ".join(
            part
            for part in (
                f"none of {case.expect_any}" if missing else "",
                f"said {forbidden}" if forbidden else "",
            )
            if part
        )
        results.append(CheckResult(case.id, case.kind, "content", not detail, reply, detail))
    if case.language:
        found = language_of(reply)
        results.append(
            CheckResult(
                case.id, case.kind, "language", found == case.language, reply, f"in {found}"
            )
        )
    return results


def check_length(case: Case, reply: str) -> CheckResult:
    count = spoken_sentences(reply)
    passed = MIN_SENTENCES <= count <= MAX_SENTENCES
    return CheckResult(case.id, case.kind, "length", passed, reply, f"{count} sentences")


async def run_brain(brain: str, cases: list[Case], data_dir: Path) -> list[CheckResult]:
    """Every case through a Conversation over the real engines with ``brain`` as the LLM."""
    from eva.conversation.persona import load_persona
    from eva.conversation.service import Conversation
    from eva.conversation.turn import TurnDone
    from eva.engines.runtime import Engines
    from eva.stats import LatencyStats
    from eva.store import open_store

    settings = Settings(llm_model=brain, data_dir=data_dir)
    engines = await asyncio.to_thread(
        Engines.load, settings, lambda _: None, load_persona(settings).prefix
    )
    store = open_store(settings)
    service = Conversation(settings, engines, store, LatencyStats())
    results: list[CheckResult] = []

    async def say(session_id: str, text: str) -> str:
        reply = ""
        async for event in service.reply(session_id, text, audio=False):
            if isinstance(event, TurnDone):
                reply = event.text
        return reply

    try:
        for case in cases:
            user = f"eval-{case.id}-{uuid.uuid4().hex[:8]}"  # nothing carried between cases
            if case.earlier:
                first = await service.open_session(None, user)
                for text in case.earlier:
                    results.append(check_length(case, await say(first.id, text)))
                await service.memory.settled()  # what the person said is remembered
            session = await service.open_session(None, user)
            reply = ""
            for text in case.turns:
                reply = await say(session.id, text)
                results.append(check_length(case, reply))
            results.extend(check_reply(case, reply))
    finally:
        await service.aclose()
        store.close()
        engines.close()
    return results


def summarize(results: list[CheckResult]) -> dict[str, dict[str, float]]:
    """Pass rate and count per kind, per check (``check:content`` ...), and overall. The
    length check covers every reply and the reply bounds enforce it: the content and
    language rows are the measure of understanding."""
    groups: dict[str, list[CheckResult]] = {}
    for result in results:
        groups.setdefault(result.kind, []).append(result)
    for result in results:
        groups.setdefault(f"check:{result.check}", []).append(result)
    table: dict[str, dict[str, float]] = {}
    for key, chosen in [*sorted(groups.items()), ("all", results)]:
        passed = sum(r.passed for r in chosen)
        rate = passed / len(chosen) if chosen else 0.0
        table[key] = {"passed": passed, "checks": len(chosen), "rate": rate}
    return table


def markdown(by_brain: dict[str, list[CheckResult]], seconds: dict[str, float]) -> str:
    brains = list(by_brain)
    summaries = {brain: summarize(results) for brain, results in by_brain.items()}
    kinds = list(next(iter(summaries.values())))
    lines = [
        "| kind | " + " | ".join(Path(b).name for b in brains) + " |",
        "|---|" + "---|" * len(brains),
    ]
    for kind in kinds:
        cells = [
            f"{s[kind]['rate'] * 100:.0f} % ({s[kind]['passed']:.0f}/{s[kind]['checks']:.0f})"
            for s in summaries.values()
        ]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("| seconds | " + " | ".join(f"{seconds[b]:.0f}" for b in brains) + " |")
    for brain, results in by_brain.items():
        failed = [r for r in results if not r.passed]
        lines += ["", f"Failed checks, {Path(brain).name} ({len(failed)}):", ""]
        lines += [f"- {r.case} {r.check} ({r.detail}): {r.reply[:160]!r}" for r in failed] or [
            "- none"
        ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--brains",
        default="qwen2.5-coder-1.5b,smollm2",
        help="comma-separated: packaged model names (qwen2.5-coder-1.5b, smollm2) or GGUF paths",
    )
    parser.add_argument("--quick", action="store_true", help="one case of each kind")
    parser.add_argument("--cases", type=Path, default=None, help="another cases file")
    parser.add_argument("--out", default="bench/results", help="where to write the report")


def main(args: argparse.Namespace) -> int:
    cases = load_cases(args.cases)
    if args.quick:
        cases = list({case.kind: case for case in reversed(cases)}.values())[::-1]
    by_brain: dict[str, list[CheckResult]] = {}
    seconds: dict[str, float] = {}
    for brain in [b.strip() for b in args.brains.split(",") if b.strip()]:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="eva-eval-") as data_dir:
            by_brain[brain] = asyncio.run(run_brain(brain, cases, Path(data_dir)))
        seconds[brain] = time.monotonic() - started
        rate = summarize(by_brain[brain])["all"]
        print(f"{brain}: {rate['rate'] * 100:.0f} % of {rate['checks']:.0f} checks passed")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    table = markdown(by_brain, seconds)
    (out / f"eval-{stamp}.md").write_text(table)
    report: dict[str, Any] = {
        "cases": len(cases),
        "brains": {
            brain: {
                "summary": summarize(results),
                "seconds": seconds[brain],
                "checks": [asdict(r) for r in results],
            }
            for brain, results in by_brain.items()
        },
    }
    (out / f"eval-{stamp}.json").write_text(json.dumps(report, indent=1))
    print(table)
    print(f"written to {out}/eval-{stamp}.json and .md")
    return 0
