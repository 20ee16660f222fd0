"""/v1/models and /v1/chat/completions through the official OpenAI SDK, on a real server."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.server.v1.conftest import ALICE_KEY, BOB_KEY, sdk
from tests.support import ServerThread


def _stored(server: ServerThread, session_id: str, key: str | None = None) -> list[dict[str, str]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    reply = httpx.get(
        f"{server.base_url}/sessions/{session_id}/messages", headers=headers, timeout=30
    )
    reply.raise_for_status()
    return [{"role": m["role"], "content": m["content"]} for m in reply.json()["messages"]]


def _plain_model(client: openai.OpenAI) -> str:
    ids = [model.id for model in client.models.list()]
    return ids[1]  # the catalogue lists eva, then the language model by its own name


def test_models_list_eva_the_language_model_and_openai_aliases(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids[0] == "eva" and ids[1] == "smollm2"
    assert {"whisper-1", "whisper-tiny.en", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= set(ids)
    assert client.models.retrieve("whisper-1").owned_by == "eva"


def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hello"}]
        )
    assert raised.value.code == "model_not_found" and raised.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_eva_answers_a_whole_completion_and_stores_the_turn(
    client: openai.OpenAI, server: ServerThread
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="eva", messages=[{"role": "user", "content": "Hi Eva, how are you today?"}]
    )
    completion = raw.parse()
    reply = completion.choices[0].message.content
    assert reply and completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion" and completion.model == "eva"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    session_id = raw.headers["x-eva-session-id"]
    assert _stored(server, session_id) == [
        {"role": "user", "content": "Hi Eva, how are you today?"},
        {"role": "assistant", "content": reply},
    ]


def test_a_streamed_completion_sends_chunks_then_usage_then_done(
    client: openai.OpenAI, server: ServerThread
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="eva",
        messages=[{"role": "user", "content": "Tell me about the sea."}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        session_id = response.headers["x-eva-session-id"]
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    stored = _stored(server, session_id)[-1]
    assert stored["role"] == "assistant" and stored["content"].split() == text.split()


def test_eva_keeps_the_earlier_turns_a_client_resends_as_the_sessions_history(
    client: openai.OpenAI, server: ServerThread
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="eva",
        messages=[
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "My cat is called Pixel."},
            {"role": "assistant", "content": "What a lovely name for a cat!"},
            {"role": "user", "content": "What is my cat called?"},
        ],
    )
    stored = _stored(server, raw.headers["x-eva-session-id"])
    assert stored[:3] == [
        {"role": "user", "content": "My cat is called Pixel."},
        {"role": "assistant", "content": "What a lovely name for a cat!"},
        {"role": "user", "content": "What is my cat called?"},
    ]


def test_a_named_session_goes_on_from_its_stored_history(
    client: openai.OpenAI, server: ServerThread
) -> None:
    first = client.chat.completions.with_raw_response.create(
        model="eva", messages=[{"role": "user", "content": "I live in Lyon."}]
    )
    session_id = first.headers["x-eva-session-id"]
    second = client.chat.completions.with_raw_response.create(
        model="eva",
        messages=[{"role": "user", "content": "Where do I live?"}],
        metadata={"session_id": session_id},
    )
    assert second.headers["x-eva-session-id"] == session_id
    stored = _stored(server, session_id)
    assert [m["content"] for m in stored if m["role"] == "user"] == [
        "I live in Lyon.",
        "Where do I live?",
    ]


def test_the_plain_model_at_temperature_zero_answers_the_same_twice_and_stores_nothing(
    client: openai.OpenAI, server: ServerThread
) -> None:
    model = _plain_model(client)
    messages: list[dict[str, str]] = [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name three colours."},
    ]
    answers = [
        client.chat.completions.with_raw_response.create(
            model=model,
            messages=messages,
            temperature=0,
            max_tokens=24,  # type: ignore[arg-type]
        )
        for _ in range(2)
    ]
    texts = [a.parse().choices[0].message.content for a in answers]
    assert texts[0] and texts[0] == texts[1]
    assert "x-eva-session-id" not in answers[0].headers


def test_max_tokens_bounds_the_plain_models_answer(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=_plain_model(client),
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_completion_tokens=4,
        stream=False,
    )
    text = completion.choices[0].message.content or ""
    assert text and len(text.split()) <= 6, text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
def test_what_eva_cannot_honour_is_refused_as_a_bad_request(
    client: openai.OpenAI, extra: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="eva",
            messages=[{"role": "user", "content": "Hello"}],
            **extra,  # type: ignore[call-overload]
        )
    assert raised.value.param == param and raised.value.code == "unsupported_parameter"


def test_an_image_part_is_refused_and_text_parts_are_read(client: openai.OpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="eva",
            messages=[{"role": "user", "content": [{"type": "text", "text": "What?"}, image]}],
        )
    assert raised.value.param == "messages.0.content"
    completion = client.chat.completions.create(
        model="eva", messages=[{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}]
    )
    assert completion.choices[0].message.content


def test_bad_parameters_get_the_sdks_bad_request_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="eva", messages=[{"role": "user", "content": "Hi"}], temperature=5
        )
    assert raised.value.param == "temperature"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="eva", messages=[])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="eva", messages=[{"role": "user", "content": "Hi\x00there"}]
        )


def test_keys_are_required_and_keep_each_users_sessions_their_own(keyed: ServerThread) -> None:
    with sdk(keyed, "not-a-valid-key-000") as stranger, pytest.raises(openai.AuthenticationError):
        stranger.models.list()
    with sdk(keyed, ALICE_KEY) as alice, sdk(keyed, BOB_KEY) as bob:
        raw = alice.chat.completions.with_raw_response.create(
            model="eva", messages=[{"role": "user", "content": "My secret is a blue door."}]
        )
        session_id = raw.headers["x-eva-session-id"]
        with pytest.raises(openai.NotFoundError):
            bob.chat.completions.create(
                model="eva",
                messages=[{"role": "user", "content": "What is the secret?"}],
                metadata={"session_id": session_id},
            )
        # the user field cannot make alice anyone else: her key decides
        alice.chat.completions.create(
            model="eva", messages=[{"role": "user", "content": "Hello"}], user="bob"
        )
    assert _stored(keyed, session_id, ALICE_KEY)[0]["content"] == "My secret is a blue door."


def test_every_v1_route_wants_a_valid_key(keyed: ServerThread) -> None:
    wav = b"RIFF" + b"\x00" * 40
    with sdk(keyed, "not-a-valid-key-000") as stranger:
        calls = [
            lambda: stranger.models.retrieve("eva"),
            lambda: stranger.chat.completions.create(
                model="eva", messages=[{"role": "user", "content": "Hi"}]
            ),
            lambda: stranger.audio.speech.create(model="tts-1", voice="alloy", input="Hi"),
            lambda: stranger.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", wav, "audio/wav")
            ),
            lambda: stranger.realtime.client_secrets.create(),
        ]
        for call in calls:
            with pytest.raises(openai.AuthenticationError):
                call()
