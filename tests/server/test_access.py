"""Access and privacy on a real server: API keys on every route and socket, each key's
sessions kept to itself, the WebSocket Origin check, CORS, request ids, and logs that hold
neither what was said nor the keys."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from eva.engines.runtime import Engines
from eva.server.logs import install_request_ids
from tests.server.servers import StartServer, servers_for_a_test, start_server
from tests.support import ServerThread

ALICE_KEY = "alice-0123456789abcdef"
BOB_KEY = "bob-fedcba9876543210xx"
APP_ORIGIN = "http://app.example"
FOREIGN_ORIGIN = "http://evil.example"


@pytest.fixture(scope="module")
def keyed(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = start_server(
        engines,
        tmp_path_factory.mktemp("keyed"),
        api_keys=f"alice:{ALICE_KEY},bob:{BOB_KEY}",
        cors_origins=APP_ORIGIN,
        allowed_origins=APP_ORIGIN,
    )
    yield running
    running.stop()


@pytest.fixture
def start(engines: Engines, tmp_path: Path) -> Iterator[StartServer]:
    yield from servers_for_a_test(engines, tmp_path)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ws_url(server: ServerThread, path: str, query: str = "") -> str:
    return server.base_url.replace("http://", "ws://") + path + (f"?{query}" if query else "")


async def refused_with(url: str, **connect: Any) -> tuple[int, list[dict[str, Any]]]:
    """Connects; returns the close code the server ended with and the events before it."""
    events: list[dict[str, Any]] = []
    async with websockets.connect(url, **connect) as socket:
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                events.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
        assert socket.close_code is not None
        return socket.close_code, events


def tiny_wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(b"\0\0" * 1600)
    return out.getvalue()


# ----------------------------------------------------------------------------- keys


def test_health_and_the_page_are_public_and_health_says_a_key_is_needed(
    keyed: ServerThread, server: ServerThread
) -> None:
    health = httpx.get(f"{keyed.base_url}/health")
    assert health.status_code == 200 and health.json()["auth_required"] is True
    assert httpx.get(f"{server.base_url}/health").json()["auth_required"] is False
    for path in ("/", "/static/app.js", "/static/access.js", "/static/style.css"):
        assert httpx.get(f"{keyed.base_url}{path}").status_code == 200, path


ROUTES = [
    ("GET", "/voices", {}),
    ("GET", "/stats", {}),
    ("GET", "/docs", {}),
    ("GET", "/openapi.json", {}),
    ("GET", "/sessions/some-session/messages", {}),
    ("POST", "/chat", {"json": {"message": "hello"}}),
    ("POST", "/chat/stream", {"json": {"message": "hello"}}),
    ("POST", "/tts", {"json": {"text": "hello"}}),
    ("POST", "/stt", {"files": {"file": ("a.wav", b"RIFF")}}),
    ("POST", "/voice", {"files": {"file": ("a.wav", b"RIFF")}}),
]


@pytest.mark.parametrize("method,path,body", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_other_route_refuses_a_missing_or_wrong_key_with_401(
    keyed: ServerThread, method: str, path: str, body: dict[str, Any]
) -> None:
    for headers in ({}, bearer("not-a-key-0123456789"), {"Authorization": ALICE_KEY}):
        response = httpx.request(method, f"{keyed.base_url}{path}", headers=headers, **body)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"


def test_a_valid_key_opens_the_routes(keyed: ServerThread) -> None:
    assert httpx.get(f"{keyed.base_url}/voices", headers=bearer(ALICE_KEY)).status_code == 200
    assert httpx.get(f"{keyed.base_url}/stats", headers=bearer(BOB_KEY)).status_code == 200
    # a query token is for WebSockets only: browsers can set headers on fetch
    assert httpx.get(f"{keyed.base_url}/voices?token={ALICE_KEY}").status_code == 401


@pytest.mark.parametrize("path", ["/ws", "/ws/chat"])
async def test_websocket_without_a_valid_key_gets_an_error_and_close_code_4401(
    keyed: ServerThread, path: str
) -> None:
    for query in ("", "token=wrong-key-0123456789", f"token={ALICE_KEY}x"):
        code, events = await refused_with(ws_url(keyed, path, query))
        assert code == 4401
        assert [e["code"] for e in events] == ["unauthorized"]


async def test_websocket_accepts_the_key_as_token_or_bearer_header(keyed: ServerThread) -> None:
    async with websockets.connect(ws_url(keyed, "/ws", f"token={ALICE_KEY}")) as socket:
        assert json.loads(await socket.recv())["type"] == "session.created"
    async with websockets.connect(
        ws_url(keyed, "/ws"), additional_headers=bearer(BOB_KEY)
    ) as socket:
        assert json.loads(await socket.recv())["type"] == "session.created"
    async with websockets.connect(ws_url(keyed, "/ws/chat", f"token={BOB_KEY}")) as socket:
        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await socket.recv()) == {"type": "pong"}


# ---------------------------------------------------------------- each key its own data


def test_another_keys_session_is_a_404_on_every_http_route(keyed: ServerThread) -> None:
    with httpx.Client(base_url=keyed.base_url, timeout=60.0) as http:
        made = http.post(
            "/chat", json={"message": "My secret is marmalade."}, headers=bearer(ALICE_KEY)
        )
        assert made.status_code == 200
        session = made.json()["session_id"]
        own = http.get(f"/sessions/{session}/messages", headers=bearer(ALICE_KEY))
        assert "marmalade" in own.json()["messages"][0]["content"]

        # Bob, even naming himself alice, reaches none of it.
        for claimed in (None, "alice"):
            extra = {"user_id": claimed} if claimed else {}
            attempts = [
                http.get(f"/sessions/{session}/messages", params=extra, headers=bearer(BOB_KEY)),
                http.post(
                    "/chat",
                    json={"message": "What is my secret?", "session_id": session, **extra},
                    headers=bearer(BOB_KEY),
                ),
                http.post(
                    "/chat/stream",
                    json={"message": "What is my secret?", "session_id": session, **extra},
                    headers=bearer(BOB_KEY),
                ),
                http.post(
                    "/voice",
                    data={"session_id": session, **extra},
                    files={"file": ("a.wav", tiny_wav(), "audio/wav")},
                    headers=bearer(BOB_KEY),
                ),
            ]
            for response in attempts:
                assert response.status_code == 404, response.text
                assert response.json()["error"]["code"] == "unknown_session"
                assert "marmalade" not in response.text

        # Alice naming herself bob still acts as alice: the key decides, not the claim.
        own = http.get(
            f"/sessions/{session}/messages", params={"user_id": "bob"}, headers=bearer(ALICE_KEY)
        )
        assert own.status_code == 200 and len(own.json()["messages"]) == 2


async def test_another_keys_session_cannot_be_resumed_over_websockets(
    keyed: ServerThread,
) -> None:
    async with httpx.AsyncClient(base_url=keyed.base_url, timeout=60.0) as http:
        made = await http.post(
            "/chat", json={"message": "Remember the word quince."}, headers=bearer(ALICE_KEY)
        )
    session = made.json()["session_id"]

    code, events = await refused_with(
        ws_url(keyed, "/ws", f"session_id={session}&user_id=alice&token={BOB_KEY}")
    )
    assert code == 4404 and [e["code"] for e in events] == ["unknown_session"]

    async with websockets.connect(ws_url(keyed, "/ws/chat", f"token={BOB_KEY}")) as socket:
        await socket.send(json.dumps({"message": "Which word?", "session_id": session}))
        reply = json.loads(await asyncio.wait_for(socket.recv(), 30))
        assert reply["type"] == "error" and reply["code"] == "unknown_session"

    async with websockets.connect(
        ws_url(keyed, "/ws", f"session_id={session}&token={ALICE_KEY}")
    ) as socket:
        assert json.loads(await socket.recv())["session_id"] == session  # hers: resumed


# ------------------------------------------------------------------------ origin, CORS


@pytest.mark.parametrize("path", ["/ws", "/ws/chat"])
async def test_websocket_from_a_foreign_origin_is_refused_with_403(
    server: ServerThread, path: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(ws_url(server, path), origin=FOREIGN_ORIGIN)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    # The page's own origin, and a client that is not a browser (no Origin), get in.
    async with websockets.connect(ws_url(server, path), origin=server.base_url):  # type: ignore[arg-type]
        pass
    async with websockets.connect(ws_url(server, path)):
        pass


async def test_configured_origins_are_allowed_and_others_still_refused(
    keyed: ServerThread,
) -> None:
    url = ws_url(keyed, "/ws/chat", f"token={ALICE_KEY}")
    async with websockets.connect(url, origin=APP_ORIGIN):  # type: ignore[arg-type]
        pass
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, origin=FOREIGN_ORIGIN)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


def test_cors_is_closed_by_default(server: ServerThread) -> None:
    simple = httpx.get(f"{server.base_url}/health", headers={"Origin": APP_ORIGIN})
    assert "access-control-allow-origin" not in simple.headers
    preflight = httpx.options(
        f"{server.base_url}/chat",
        headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_answers_configured_origins_only_and_preflight_needs_no_key(
    keyed: ServerThread,
) -> None:
    preflight = httpx.options(
        f"{keyed.base_url}/chat",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
    refused = httpx.get(f"{keyed.base_url}/voices", headers={"Origin": APP_ORIGIN})
    assert refused.status_code == 401  # the browser can read why: CORS headers on errors too
    assert refused.headers["access-control-allow-origin"] == APP_ORIGIN
    foreign = httpx.get(
        f"{keyed.base_url}/voices", headers={"Origin": FOREIGN_ORIGIN, **bearer(ALICE_KEY)}
    )
    assert "access-control-allow-origin" not in foreign.headers


# ------------------------------------------------------------------ request ids and logs


def test_each_request_has_an_id_in_the_header_and_in_error_bodies(server: ServerThread) -> None:
    kept = httpx.get(f"{server.base_url}/health", headers={"X-Request-ID": "trace-42.a"})
    assert kept.headers["X-Request-ID"] == "trace-42.a"
    made = httpx.get(f"{server.base_url}/health", headers={"X-Request-ID": "no spaces <please>"})
    assert made.headers["X-Request-ID"] != "no spaces <please>"
    assert len(made.headers["X-Request-ID"]) == 32
    other = httpx.get(f"{server.base_url}/health")
    assert other.headers["X-Request-ID"] != made.headers["X-Request-ID"]
    missing = httpx.get(f"{server.base_url}/sessions/nobody/messages")
    assert missing.status_code == 404
    assert missing.json()["error"]["request_id"] == missing.headers["X-Request-ID"]


async def test_logs_hold_no_message_text_transcript_or_key(
    start: StartServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret_word = "persimmonade"
    running = start(as_served=True, api_keys=f"alice:{ALICE_KEY}")
    # Everything Eva logs at INFO or above, and uvicorn's loggers at the level `eva serve`
    # gives them (they do not propagate, so the capture is attached to them directly).
    caplog.set_level(logging.INFO, logger="eva")
    uvicorn_loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    for logger in uvicorn_loggers:
        logger.addHandler(caplog.handler)
    install_request_ids(caplog.handler)  # as `eva serve` formats its log lines
    try:
        async with httpx.AsyncClient(base_url=running.base_url, timeout=60.0) as http:
            chat = await http.post(
                "/chat",
                json={"message": f"My password is {secret_word}, keep it."},
                headers={**bearer(ALICE_KEY), "X-Request-ID": "trace-log-1"},
            )
            session = chat.json()["session_id"]
            await http.get(f"/sessions/{session}/messages", headers=bearer(ALICE_KEY))
            await http.get("/voices", headers=bearer("wrong-key-0123456789abc"))
        url = ws_url(running, "/ws", f"session_id={session}&token={ALICE_KEY}")
        async with websockets.connect(url) as socket:
            await socket.send(json.dumps({"type": "text", "text": f"Say {secret_word} back."}))
            while True:
                frame = await asyncio.wait_for(socket.recv(), 60)
                if isinstance(frame, str) and json.loads(frame)["type"] == "response.done":
                    break
        async with websockets.connect(ws_url(running, "/ws/chat", f"token={ALICE_KEY}")) as chat_ws:
            await chat_ws.send(f"The word is {secret_word}.")
            while json.loads(await asyncio.wait_for(chat_ws.recv(), 60))["type"] != "end":
                pass
        await asyncio.sleep(0.3)  # the closing sockets' log lines
    finally:
        for logger in uvicorn_loggers:
            logger.removeHandler(caplog.handler)
    logged = caplog.text
    assert "[trace-log-1]: POST /chat 200" in logged  # the request log, with its ids...
    assert "WS /ws?session_id=…&token=… 101" in logged
    assert secret_word not in logged  # ...and holds neither what was said
    assert ALICE_KEY not in logged and "wrong-key" not in logged  # nor any key


def test_memories_belong_to_the_key_and_a_claimed_user_id_does_not_reach_anothers(
    keyed: ServerThread,
) -> None:
    with httpx.Client(base_url=keyed.base_url, timeout=60.0) as http:
        told = http.post(
            "/chat", json={"message": "My name is Alicia and I live in Oslo."},
            headers=bearer(ALICE_KEY),
        )  # fmt: skip
        assert told.status_code == 200, told.text
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:  # facts are stored just after the reply
            mine = http.get("/memories", headers=bearer(ALICE_KEY)).json()["memories"]
            if len(mine) >= 2:
                break
            time.sleep(0.2)
        assert {m["key"] for m in mine} >= {"name", "lives_in"}

        for params in ({}, {"user_id": "alice"}):
            theirs = http.get("/memories", params=params, headers=bearer(BOB_KEY))
            assert theirs.status_code == 200 and theirs.json()["memories"] == []
            assert "Oslo" not in theirs.text
        some_id = mine[0]["id"]
        assert http.delete(f"/memories/{some_id}", headers=bearer(BOB_KEY)).status_code == 404
        assert http.get("/memories", headers=bearer(ALICE_KEY)).json()["memories"] == mine
