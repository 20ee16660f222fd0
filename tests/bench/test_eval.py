"""`eva eval`: the rules that check a reply, the cases file, and a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from eva.bench.eval import (
    Case,
    check_length,
    check_reply,
    language_of,
    load_cases,
    mentions,
    spoken_sentences,
    states,
    summarize,
)


def test_mentions_matches_whole_words_in_any_case() -> None:
    assert mentions("Spiders have EIGHT legs.", "eight")
    assert not mentions("That is a weighty question.", "eight")
    assert mentions("I don't know your name yet.", "don't know")
    assert mentions("About 100 degrees.", "100") and not mentions("1000 degrees", "100")


def test_a_forbidden_phrase_counts_as_said_only_outside_an_indirect_question() -> None:
    assert states("Your pet's name is Bella!", "your pet's name is")
    assert not states("I don't know what your pet's name is.", "your pet's name is")
    assert states("I know what you mean, and your name is Tom.", "your name is")


def test_sentences_are_counted_at_their_ends() -> None:
    assert spoken_sentences("Oh no. That sounds hard! Want to talk about it?") == 3
    assert spoken_sentences("Rome.") == 1 and spoken_sentences("") == 0
    assert spoken_sentences("One. Two. Three. Four.") == 4


def test_the_language_of_a_short_reply() -> None:
    assert language_of("Je vais bien, merci. Et toi ?") == "fr"
    assert language_of("I'm doing well, thank you. And you?") == "en"
    assert language_of("Monsieur?") == "en"  # no French function word: not French enough


def test_a_reply_passes_or_fails_its_case() -> None:
    case = Case("tone", "tone", ["My cat died."], expect_any=["sorry"], forbid_any=["wonderful"])
    assert [r.passed for r in check_reply(case, "I'm so sorry about your cat.")] == [True]
    failed = check_reply(case, "How wonderful!")
    assert not failed[0].passed and "said ['wonderful']" in failed[0].detail
    french = Case("fr", "french", ["Bonjour"], language="fr")
    assert [r.passed for r in check_reply(french, "Bonjour ! Je vais très bien.")] == [True]
    assert [r.passed for r in check_reply(french, "Hello there, I am fine.")] == [False]
    assert check_length(case, "One. Two. Three.").passed
    assert not check_length(case, "One. Two. Three. Four.").passed
    assert not check_length(case, "").passed
    table = summarize([*failed, check_length(case, "Fine.")])
    assert table["tone"] == {"passed": 1, "checks": 2, "rate": 0.5}
    assert table["check:content"]["rate"] == 0.0 and table["check:length"]["rate"] == 1.0
    assert table["all"]["checks"] == 2


def test_the_packaged_cases_cover_every_kind_of_check() -> None:
    cases = load_cases()
    assert len(cases) >= 40 and len({c.id for c in cases}) == len(cases)
    kinds = {c.kind for c in cases}
    assert {"world", "recall", "memory", "tone", "french", "no_invention"} <= kinds
    for case in cases:
        if case.kind != "small_talk":
            assert case.expect_any or case.forbid_any or case.language, case.id
        if case.kind == "memory":
            assert case.earlier, case.id


def test_a_real_run_writes_per_brain_pass_rates(tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(
        '[[case]]\nid = "legs"\nkind = "world"\nturns = ["How many legs does a spider have?"]\n'
        'expect_any = ["eight", "8"]\n\n'
        '[[case]]\nid = "dog"\nkind = "memory"\nearlier = ["My dog is called Biscuit."]\n'
        'turns = ["What is my dog called?"]\nexpect_any = ["Biscuit"]\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "eva.cli", "eval", "--cases", str(cases), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(next(tmp_path.glob("eval-*.json")).read_text())
    # by default the default brain and SmolLM2, side by side
    assert list(report["brains"]) == ["qwen2.5-coder-1.5b", "smollm2"]
    for brain in report["brains"].values():
        # legs: length + content; dog: the earlier turn's length, the answer's, content
        assert brain["summary"]["all"]["checks"] == 5
        assert {c["check"] for c in brain["checks"]} == {"length", "content"}
    assert "| all |" in next(tmp_path.glob("eval-*.md")).read_text()
