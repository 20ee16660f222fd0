"""The HTTP API against a real server on loopback with the real embedded models."""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
import wave

import httpx
import jiwer
import numpy as np

from eva.engines.runtime import Engines
from tests.support import ServerThread, free_port, make_settings

MARKDOWN = re.compile(r"[*#`_|\[\]<>~]")


def _wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        frames = wav.readframes(wav.getnframes())
        return np.frombuffer(frames, dtype="<i2"), wav.getframerate()


def _error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return response.status_code, body["error"]["code"]


def _speech_wav(client: httpx.Client, text: str) -> bytes:
    response = client.post("/tts", json={"text": text})
    assert response.status_code == 200
    return response.content


# --- typed turns


def test_unique_message_gets_a_nonempty_spoken_style_reply(client: httpx.Client) -> None:
    nonce = uuid.uuid4().hex[:6]
    response = client.post(
        "/chat", json={"message": f"Hi Eva, my code word is {nonce}. How are you today?"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["response"].strip()
    assert not MARKDOWN.search(body["response"])
    assert len(re.findall(r"[.!?](\s|$)", body["response"])) <= 3
    assert body["latency_ms"] > 0
    assert {"llm_first_token_ms", "total_ms"} <= set(body["timings"])
    assert re.fullmatch(r"[0-9a-f]{32}", body["session_id"])


def test_history_is_kept_within_a_session(client: httpx.Client) -> None:
    first = client.post("/chat", json={"message": "I am planting tulips this weekend."}).json()
    second = client.post(
        "/chat", json={"message": "What colour should they be?", "session_id": first["session_id"]}
    )
    assert second.status_code == 200
    assert second.json()["session_id"] == first["session_id"]
    stored = client.get(f"/sessions/{first['session_id']}/messages").json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[0]["content"] == "I am planting tulips this weekend."
    assert stored[3]["content"] == second.json()["response"]
    assert stored[3]["timings"]["total_ms"] > 0


def test_chat_stream_sends_deltas_then_done_with_timings(client: httpx.Client) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    with client.stream(
        "POST", "/chat/stream", json={"message": "Tell me about the sea.", "audio": True}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "session" and kinds[-1] == "done"
    assert "delta" in kinds and "audio" in kinds
    done = events[-1][1]
    text = "".join(str(data["text"]) for kind, data in events if kind == "delta")
    assert " ".join(text.split()) == done["response"]
    timings = done["timings"]
    assert isinstance(timings, dict)
    assert timings["first_audio_ms"] <= timings["total_ms"]
    audio = b"".join(base64.b64decode(str(d["audio"])) for k, d in events if k == "audio")
    assert len(audio) > 22050  # more than half a second of speech


# --- speech


def test_tts_returns_a_wav_whose_speech_the_stt_recovers(client: httpx.Client) -> None:
    sentence = "The little garden behind the house is full of yellow flowers."
    pcm, rate = _wav(_speech_wav(client, sentence))
    seconds = len(pcm) / rate
    assert 2.0 < seconds < 7.0  # about 11 words at a natural pace
    assert np.abs(pcm).max() > 3000  # speech, not silence
    heard = client.post("/stt", files={"file": ("speech.wav", _speech_wav(client, sentence))})
    assert heard.status_code == 200
    said = re.sub(r"[^\w\s]", "", heard.json()["text"].lower())
    assert jiwer.wer(sentence.lower().rstrip("."), said) < 0.2
    assert heard.json()["latency_ms"] > 0


def test_tts_speaks_numbers_and_times_intelligibly(client: httpx.Client) -> None:
    wav = _speech_wav(client, "Meet me at 3:30 with 42 apples.")
    heard = client.post("/stt", files={"file": ("t.wav", wav)}).json()["text"].lower()
    # Whisper writes spoken numbers back as digits: "three thirty" comes back as 3:30 or 330.
    assert re.search(r"3:?30|three thirty", heard), heard
    assert re.search(r"42|forty.two", heard), heard


def test_stt_accepts_browser_webm_opus(client: httpx.Client) -> None:
    import av

    pcm, rate = _wav(_speech_wav(client, "Good morning, how did you sleep?"))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        resampled = np.interp(
            np.arange(0, len(pcm) * 48000 / rate) * rate / 48000, np.arange(len(pcm)), pcm
        ).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(resampled.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    heard = client.post("/stt", files={"file": ("rec.webm", buffer.getvalue(), "audio/webm")})
    assert heard.status_code == 200, heard.text
    assert "morning" in heard.json()["text"].lower()


def test_voice_turn_answers_a_spoken_question_with_speech(client: httpx.Client) -> None:
    question = _speech_wav(client, "What is your favourite season of the year?")
    response = client.post("/voice", files={"file": ("q.wav", question)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "season" in body["user_text"].lower()
    assert body["response"].strip()
    pcm, rate = _wav(base64.b64decode(body["audio"]))
    assert len(pcm) / rate > 0.5
    assert {"stt_ms", "llm_first_token_ms", "first_audio_ms", "total_ms"} <= set(body["timings"])
    stored = client.get(f"/sessions/{body['session_id']}/messages").json()["messages"]
    assert stored[0]["content"] == body["user_text"]


def test_voices_lists_the_default_voice_with_language_and_rate(client: httpx.Client) -> None:
    voices = client.get("/voices").json()
    default = [v for v in voices if v["default"]]
    assert len(default) == 1 and default[0]["id"] == "en_US-joe-medium"
    assert default[0]["sample_rate"] == 22050 and default[0]["language"] == "en-US"
    assert any(v["language"].startswith("fr") for v in voices)  # espeak-ng speaks French


def test_tts_with_a_french_voice_produces_speech(client: httpx.Client) -> None:
    response = client.post("/tts", json={"text": "Bonjour, il est 14h30.", "voice": "espeak-fr-fr"})
    assert response.status_code == 200
    pcm, rate = _wav(response.content)
    assert len(pcm) / rate > 1.0


# --- service endpoints


def test_health_reports_ready_and_the_loaded_backends(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["ready"] is True and health["status"] == "ok"
    assert health["backends"]["llm"] == "llamaserver"
    assert health["backends"]["stt"] == "whisper"


def test_stats_count_requests_and_report_stage_percentiles(client: httpx.Client) -> None:
    client.post("/chat", json={"message": f"Quick hello {uuid.uuid4().hex[:4]}"})
    stats = client.get("/stats").json()
    assert stats["requests"]["/chat"] >= 1
    stage = stats["stages"]["llm_first_token_ms"]
    assert stage["count"] >= 1 and 0 < stage["p50"] <= stage["p95"]
    assert stats["sessions"] >= 1


def test_openapi_docs_are_served(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {
        "/chat",
        "/chat/stream",
        "/tts",
        "/stt",
        "/voice",
        "/voices",
        "/health",
        "/stats",
        "/sessions/{session_id}/messages",
    } <= set(spec["paths"])


# --- bad input


def test_invalid_json_gets_400(client: httpx.Client) -> None:
    response = client.post(
        "/chat", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert _error(response) == (400, "invalid_json")


def test_missing_or_mistyped_message_gets_422(client: httpx.Client) -> None:
    assert _error(client.post("/chat", json={}))[0] == 422
    assert _error(client.post("/chat", json={"message": 5}))[0] == 422


def test_empty_message_gets_400(client: httpx.Client) -> None:
    assert _error(client.post("/chat", json={"message": "   "})) == (400, "empty_message")


def test_overlong_message_gets_413(client: httpx.Client) -> None:
    assert _error(client.post("/chat", json={"message": "a" * 5000})) == (413, "message_too_long")


def test_unknown_session_gets_404(client: httpx.Client) -> None:
    assert _error(client.post("/chat", json={"message": "hi", "session_id": "nope"})) == (
        404,
        "unknown_session",
    )
    assert _error(client.get("/sessions/nope/messages")) == (404, "unknown_session")


def test_unknown_voice_gets_400(client: httpx.Client) -> None:
    assert _error(client.post("/tts", json={"text": "hi", "voice": "nobody"})) == (
        400,
        "unknown_voice",
    )
    assert _error(client.post("/chat/stream", json={"message": "hi", "voice": "nobody"})) == (
        400,
        "unknown_voice",
    )


def test_upload_that_is_not_audio_gets_415(client: httpx.Client) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    for name, data in (("notes.txt", b"hello, this is text"), ("img.png", png)):
        assert _error(client.post("/stt", files={"file": (name, data)})) == (415, "invalid_audio")


def test_upload_too_long_gets_413(client: httpx.Client) -> None:
    silence = io.BytesIO()
    with wave.open(silence, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(2 * 8000 * 61))  # 61 s, over the 60 s limit, under 10 MB
    assert _error(client.post("/stt", files={"file": ("long.wav", silence.getvalue())})) == (
        413,
        "audio_too_long",
    )


def test_upload_over_the_byte_limit_gets_413(client: httpx.Client) -> None:
    big = bytes(10 * 1024 * 1024 + 10)
    assert _error(client.post("/voice", files={"file": ("big.wav", big)})) == (
        413,
        "upload_too_large",
    )


def test_empty_upload_and_missing_file_are_refused(client: httpx.Client) -> None:
    assert _error(client.post("/stt", files={"file": ("e.wav", b"")})) == (400, "empty_upload")
    assert _error(client.post("/stt"))[0] == 422


def test_silent_voice_turn_gets_422_no_speech(client: httpx.Client) -> None:
    silence = io.BytesIO()
    with wave.open(silence, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(2 * 16000))
    assert _error(client.post("/voice", files={"file": ("s.wav", silence.getvalue())})) == (
        422,
        "no_speech",
    )


# --- persistence and failures


def test_history_persists_across_a_restart(tmp_path, engines: Engines) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path)
    first = ServerThread(settings, engines).start()
    try:
        reply = httpx.post(
            f"{first.base_url}/chat", json={"message": "My cat is called Miso."}, timeout=60
        ).json()
    finally:
        first.stop()
    second = ServerThread(settings, engines).start()
    try:
        stored = httpx.get(f"{second.base_url}/sessions/{reply['session_id']}/messages").json()
        assert [m["content"] for m in stored["messages"]] == [
            "My cat is called Miso.",
            reply["response"],
        ]
        more = httpx.post(
            f"{second.base_url}/chat",
            timeout=60,
            json={"message": "What is my cat called?", "session_id": reply["session_id"]},
        )
        assert more.status_code == 200
        after = httpx.get(f"{second.base_url}/sessions/{reply['session_id']}/messages").json()
        assert len(after["messages"]) == 4
    finally:
        second.stop()


def test_backend_failure_gets_503_and_the_server_keeps_serving(  # type: ignore[no-untyped-def]
    tmp_path, engines: Engines
) -> None:
    from dataclasses import replace

    from eva.engines import llm_openai

    settings = make_settings(tmp_path, openai_base_url=f"http://127.0.0.1:{free_port()}/v1")
    broken = replace(engines, llm=llm_openai.create(settings))
    running = ServerThread(settings, broken).start()
    try:
        failed = httpx.post(f"{running.base_url}/chat", json={"message": "hello"}, timeout=30)
        status, code = _error(failed)
        assert (status, code) == (503, "backend_unavailable")
        assert "127.0.0.1" in failed.json()["error"]["message"]
        assert httpx.get(f"{running.base_url}/health").json()["ready"] is True
        assert httpx.post(f"{running.base_url}/tts", json={"text": "still here"}).status_code == 200
        assert httpx.get(f"{running.base_url}/stats").json()["errors"]["/chat"] == 1
    finally:
        running.stop()


def test_a_users_session_is_a_404_to_another_user(client: httpx.Client) -> None:
    started = client.post("/chat", json={"message": "Hi, I am Ada.", "user_id": "ada"})
    assert started.status_code == 200, started.text
    session_id = started.json()["session_id"]

    own = client.get(f"/sessions/{session_id}/messages", params={"user_id": "ada"})
    assert own.status_code == 200
    assert own.json()["messages"][0]["content"] == "Hi, I am Ada."
    for stranger in ({"user_id": "bob"}, {}):
        peek = client.get(f"/sessions/{session_id}/messages", params=stranger)
        assert peek.status_code == 404
        assert "Ada" not in peek.text
        resume = client.post(
            "/chat", json={"message": "Who am I?", "session_id": session_id, **stranger}
        )
        assert resume.status_code == 404


def test_malformed_user_id_gets_400(client: httpx.Client) -> None:
    reply = client.post("/chat", json={"message": "Hello.", "user_id": "a b;drop"})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_user_id"
