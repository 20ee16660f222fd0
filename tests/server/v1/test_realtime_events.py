"""Eva's events said as OpenAI Realtime events: the translation alone, no socket."""

from __future__ import annotations

from typing import Any

from eva.server.v1.realtime_events import RealtimeEvents


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def _reply(
    events: RealtimeEvents, response_id: str, text: str, interrupted: bool = False
) -> list[str]:
    out = events.from_eva({"type": "response.created", "response_id": response_id})
    out += events.from_eva({"type": "response.text.delta", "text": text})
    done = {"type": "response.done", "response_id": response_id, "text": text,
            "interrupted": interrupted, "timings": {}}  # fmt: skip
    return _kinds(out + events.from_eva(done))


def test_a_spoken_turn_is_one_user_item_committed_then_transcribed() -> None:
    events = RealtimeEvents()
    started = events.from_eva({"type": "speech.started"})
    assert _kinds(started) == ["input_audio_buffer.speech_started"]
    # pauses within the turn say nothing, and speaking on is the same item
    assert events.from_eva({"type": "speech.stopped"}) == []
    assert events.from_eva({"type": "speech.started"}) == []
    heard = events.from_eva({"type": "transcript.final", "text": "Hello there."})
    assert _kinds(heard) == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
    ]
    item_id = started[0]["item_id"]
    assert all(e.get("item_id", e.get("item", {}).get("id")) == item_id for e in heard)
    assert heard[3]["transcript"] == "Hello there."


def test_a_response_opens_and_closes_its_item_part_and_response() -> None:
    events = RealtimeEvents()
    assert _reply(events, "resp_1", "Hi!") == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    delta = events.audio_delta("AAAA", 40.0)
    assert delta is None  # no response in progress: nothing to attach audio to


def test_speech_over_eva_is_announced_only_once_it_is_a_barge_in() -> None:
    events = RealtimeEvents()
    events.from_eva({"type": "response.created", "response_id": "resp_1"})
    assert events.from_eva({"type": "speech.started"}) == []  # Eva pauses, and waits
    assert events.from_eva({"type": "response.paused", "response_id": "resp_1"}) == []
    cancelled = events.from_eva({"type": "response.cancelled", "response_id": "resp_1"})
    assert _kinds(cancelled) == ["input_audio_buffer.speech_started"]
    done = events.from_eva({"type": "response.done", "response_id": "resp_1", "text": "Once—",
                            "interrupted": True, "timings": {}})  # fmt: skip
    response = done[-1]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"]["reason"] == "turn_detected"
    assert response["output"][0]["status"] == "incomplete"


def test_a_backchannel_over_eva_is_no_turn_at_all() -> None:
    events = RealtimeEvents()
    events.from_eva({"type": "response.created", "response_id": "resp_1"})
    events.from_eva({"type": "speech.started"})
    assert events.from_eva({"type": "response.resumed", "response_id": "resp_1"}) == []
    assert events.from_eva({"type": "response.cancelled", "response_id": "resp_1"}) == []


def test_a_typed_turns_echo_is_no_new_item() -> None:
    events = RealtimeEvents(modality="text")
    added = events.user_text_item("What time is it?")
    assert _kinds(added) == ["conversation.item.added", "conversation.item.done"]
    events.expect_echo()
    assert events.from_eva({"type": "transcript.final", "text": "What time is it?"}) == []
    assert "response.output_text.delta" in _reply(events, "resp_1", "Noon.")
    # the next spoken turn is an item again
    assert events.from_eva({"type": "transcript.final", "text": "Thanks."})


def test_a_turn_taken_back_deletes_its_item_and_goes_on_as_a_new_one() -> None:
    events = RealtimeEvents()
    first = events.from_eva({"type": "speech.started"})[0]["item_id"]
    events.from_eva({"type": "transcript.final", "text": "I went to the market."})
    events.from_eva({"type": "response.created", "response_id": "resp_1"})
    resumed = events.from_eva({"type": "speech.started", "resumed_turn": True})
    assert _kinds(resumed) == ["conversation.item.deleted", "input_audio_buffer.speech_started"]
    assert resumed[0]["item_id"] == first and resumed[1]["item_id"] != first


def test_errors_have_openais_shape() -> None:
    error = RealtimeEvents().from_eva({"type": "error", "code": "busy", "message": "later"})[0]
    assert error["error"] == {"type": "invalid_request_error", "code": "busy",
                              "message": "later", "param": None, "event_id": None}  # fmt: skip
