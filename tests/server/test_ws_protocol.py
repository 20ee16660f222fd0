"""Client frames parsed into events, or a ProtocolError that says what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from eva.server.ws_protocol import (
    MAX_AUDIO_FRAME_BYTES,
    CommitAudio,
    Interrupt,
    Ping,
    ProtocolError,
    SessionUpdate,
    TextTurn,
    parse_audio,
    parse_event,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"type": "text", "text": " hello "}', TextTurn(type="text", text="hello")),
        ('{"type": "interrupt"}', Interrupt(type="interrupt")),
        ('{"type": "ping", "extra": 1}', Ping(type="ping")),
        ('{"type": "input_audio.commit"}', CommitAudio(type="input_audio.commit")),
        (
            '{"type": "session.update", "mode": "push_to_talk"}',
            SessionUpdate(type="session.update", mode="push_to_talk"),
        ),
    ],
)
def test_known_events_parse(raw: str, expected: object) -> None:
    assert parse_event(raw, 100) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "invalid_json"),
        ("{", "invalid_json"),
        ("[" * 100_000, "invalid_json"),
        ('"text"', "invalid_event"),
        ("null", "invalid_event"),
        ("{}", "unknown_event"),
        ('{"type": 7}', "unknown_event"),
        ('{"type": "response.create"}', "unknown_event"),
        ('{"type": "text"}', "invalid_event"),
        ('{"type": "text", "text": ["a"]}', "invalid_event"),
        ('{"type": "text", "text": "\\n\\t "}', "empty_text"),
        ('{"type": "text", "text": "' + "a" * 101 + '"}', "text_too_long"),
        ('{"type": "session.update", "voice": 3}', "invalid_event"),
    ],
)
def test_bad_events_name_what_is_wrong(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_event(raw, 100)
    assert caught.value.code == code and caught.value.message


def test_audio_frames_are_little_endian_pcm16() -> None:
    samples = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    assert np.array_equal(parse_audio(samples.astype("<i2").tobytes()), samples)


@pytest.mark.parametrize(
    ("frame", "code"),
    [(b"\x00", "invalid_audio"), (b"\x00" * (MAX_AUDIO_FRAME_BYTES + 2), "frame_too_large")],
)
def test_bad_audio_frames_are_refused(frame: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_audio(frame)
    assert caught.value.code == code
