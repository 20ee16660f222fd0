"""The end-of-turn policy: which silence ends a turn, from the model and the words."""

from __future__ import annotations

import pytest

from eva.conversation.end_of_turn import TurnPolicy, looks_complete, trails_off


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("What's the weather like tomorrow?", True),
        ("I went to the market.", True),
        ("I went to the market and", False),
        ("I went to the market and.", False),
        ("So I was thinking, um", False),
        ("Well...", False),
        ("I think", False),
        ("Je suis allée au marché et", False),
        ("Je suis allée au marché.", True),
        ("", False),
    ],
)
def test_looks_complete_tells_finished_words_from_trailing_ones(text: str, complete: bool) -> None:
    assert looks_complete(text) is complete


def test_words_that_trail_off_are_mid_thought_but_a_missing_full_stop_is_not() -> None:
    assert trails_off("and then the doctor said that I should, ")
    assert trails_off("I went to the market and")
    assert not trails_off("I think")  # unpunctuated, but no sign of more to come


def test_a_confident_model_with_finished_words_ends_the_turn_as_fast_as_a_person_answers() -> None:
    policy = TurnPolicy()
    assert policy.wait_ms(0.95, "Could you tell me a story?") == policy.confident_ms == 200
    assert policy.wait_ms(0.95, None) == policy.likely_ms  # until the words agree
    assert TurnPolicy(confirm=False).wait_ms(0.95, None) == 200  # on the model alone


def test_words_without_a_full_stop_override_a_confident_model() -> None:
    assert TurnPolicy().wait_ms(0.95, "How do you") == TurnPolicy().unfinished_ms


def test_finished_words_shorten_an_unfinished_judgement() -> None:
    assert TurnPolicy().wait_ms(0.05, "Have you ever tried it?") == TurnPolicy().disputed_ms


def test_an_unsure_model_waits_longer_and_trailing_words_longest() -> None:
    policy = TurnPolicy()
    assert policy.wait_ms(0.6, None) == policy.likely_ms
    assert policy.wait_ms(0.1, None) == policy.unfinished_ms
    # the words override a confident model: "and then the doctor said that I should..."
    assert policy.wait_ms(0.95, "and then the doctor said that I should...") == 2000


def test_without_the_model_the_rule_on_words_decides_as_before() -> None:
    policy = TurnPolicy(model=False)
    assert policy.wait_ms(None, None) == 800  # nothing known yet
    assert policy.wait_ms(None, "What's the weather like tomorrow?") == 500
    assert policy.wait_ms(None, "I went to the market and") == 800
    assert policy.wait_ms(0.99, None) == 800  # a probability is ignored when the model is off


def test_before_the_model_answers_the_words_rule_holds() -> None:
    policy = TurnPolicy()
    assert policy.wait_ms(None, "I went to the market.") == 500
