"""The browser client in a real browser: Debian's chromium, driven by Playwright, talking to a
real Eva on a loopback port, with a fake microphone that asks a question in Eva's own voice.

Playwright's browser downloads are never used (`playwright install` needs the internet):
these tests run the system chromium that `scripts/install.sh test` installs.
"""

from __future__ import annotations

import re
import threading
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from eva.config import Settings
from eva.engines.runtime import Engines
from tests.support import ServerThread

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need the test extra: pip install -e '.[test]'"
)

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
VIEWPORT = {"width": 1100, "height": 760}

QUESTION = "What is your favourite colour?"
QUESTION_VOICE = "en_US-joe-medium"
# Silence before the question: the page has opened the microphone and the VAD has settled.
LEAD_SILENCE_S = 1.0
# For barge-in, speak soon after the microphone opens, well before Eva's reply can end.
BARGE_IN_LEAD_SILENCE_S = 0.3
# Silence after it: longer than it takes Eva to answer, so the fake microphone stays quiet
# meanwhile even on a chromium that ignores %noloop and plays the file from the start again.
TRAIL_SILENCE_S = 8.0

# Generous waits: two CPU cores run Whisper, the LLM, Piper and chromium at once.
TURN_TIMEOUT_MS = 60_000
CONNECT_TIMEOUT_MS = 20_000

Launch = Callable[..., Any]  # (microphone: Path | None = None, allow_microphone=True) -> context


# --------------------------------------------------------------------------- fixtures


def question_wav(engines: Engines, path: Path, lead_silence_s: float) -> Path:
    """A 16-bit mono WAV of Eva's voice asking QUESTION, between stretches of silence."""
    voice = engines.tts.info(QUESTION_VOICE)
    chunks = list(engines.tts.synthesize(QUESTION, voice.id, threading.Event()))
    rate = voice.sample_rate
    audio = np.concatenate(
        [
            np.zeros(int(rate * lead_silence_s), np.int16),
            *chunks,
            np.zeros(int(rate * TRAIL_SILENCE_S), np.int16),
        ]
    ).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(audio.tobytes())
    return path


@pytest.fixture(scope="session")
def spoken_question(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The question one second after the microphone opens."""
    folder = tmp_path_factory.mktemp("fake-microphone")
    return question_wav(engines, folder / "question.wav", LEAD_SILENCE_S)


@pytest.fixture(scope="session")
def spoken_question_at_once(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The question right after the microphone opens: to talk over Eva while she speaks."""
    folder = tmp_path_factory.mktemp("fake-microphone")
    return question_wav(engines, folder / "question-at-once.wav", BARGE_IN_LEAD_SILENCE_S)


def chromium_args(microphone: Path | None, allow_microphone: bool) -> list[str]:
    args = [
        "--headless=new",
        "--no-sandbox",  # the test machine runs as root, where chromium's sandbox cannot start
        "--disable-gpu",
        "--use-fake-device-for-media-stream",  # a fake microphone instead of a real one
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking",  # nothing but 127.0.0.1: no update checks
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    if allow_microphone:
        args.append("--use-fake-ui-for-media-stream")  # the permission prompt says "Allow"
    else:
        args.append("--deny-permission-prompts")  # it says "Block", as a wary person would
    if microphone is not None:
        # %noloop: the file plays once, then silence, instead of asking the question forever.
        args.append(f"--use-file-for-fake-audio-capture={microphone}%noloop")
    return args


@pytest.fixture(scope="module")  # one driver for these tests, gone before any other module
def playwright() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("the browser tests need Debian's chromium: scripts/install.sh test")
    with sync_api.sync_playwright() as running:
        yield running


@pytest.fixture
def launch(playwright: Any, tmp_path: Path) -> Iterator[Launch]:
    """Starts chromium with a fresh profile directory; every one is closed after the test."""
    opened: list[Any] = []

    def start(microphone: Path | None = None, allow_microphone: bool = True) -> Any:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=tmp_path / f"chromium-profile-{len(opened)}",
            executable_path=str(CHROMIUM),
            args=chromium_args(microphone, allow_microphone),
            viewport=VIEWPORT,
        )
        opened.append(context)
        return context

    yield start
    for context in opened:
        context.close()


# Test-side instrumentation, not part of the page: a log of the protocol as the page saw it
# (times in ms since the socket opened), quoted when a wait fails so the failure says
# whether the page or the server went wrong.
RECORD_WIRE = """
(() => {
  const Native = window.WebSocket;
  window.__evaWire = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      const opened = performance.now();
      const log = (what) => {
        window.__evaWire.push(`${Math.round(performance.now() - opened)} ${what}`);
      };
      this.addEventListener("message", (message) => {
        if (typeof message.data !== "string") return log(`audio ${message.data.byteLength} bytes`);
        const event = JSON.parse(message.data);
        log(event.type === "response.text.delta" ? "delta" : message.data.slice(0, 160));
      });
      this.addEventListener("close", (event) => log(`closed ${event.code}`));
    }
  };
})();
"""
WIRE_LINES_IN_FAILURE = 40


class EvaPage:
    """The page, plus the uncaught script errors it raised (a test should see none)."""

    def __init__(self, context: Any, base_url: str) -> None:
        self.page = context.pages[0] if context.pages else context.new_page()
        self.script_errors: list[str] = []
        self.page.on("pageerror", lambda error: self.script_errors.append(str(error)))
        self.page.add_init_script(RECORD_WIRE)
        self.page.goto(f"{base_url}/")
        self.wait_until("window.evaDebug && window.evaDebug.connected", CONNECT_TIMEOUT_MS)

    def wire(self) -> list[str]:
        """What the page received, consecutive audio frames and text deltas folded."""
        lines: list[str] = self.page.evaluate("window.__evaWire")
        folded: list[str] = []
        for line in lines:
            kind = line.split(" ", 1)[1].split(" ", 1)[0]
            if (
                folded
                and folded[-1].split(" ", 1)[1].startswith(kind)
                and kind in ("audio", "delta")
            ):
                continue
            folded.append(line)
        return folded

    def debug(self) -> dict[str, Any]:
        state: dict[str, Any] = self.page.evaluate("({...window.evaDebug})")
        return state

    def wait_until(self, expression: str, timeout_ms: int = TURN_TIMEOUT_MS) -> None:
        # As a function, not a bare expression: Playwright would eval() an expression, which
        # the page's Content-Security-Policy forbids (and the tests keep that policy on).
        try:
            self.page.wait_for_function(f"() => {expression}", timeout=timeout_ms)
        except sync_api.TimeoutError:
            wire = "\n  ".join(self.wire()[-WIRE_LINES_IN_FAILURE:])
            transcript = self.page.locator("#transcript").inner_text()
            pytest.fail(
                f"waited {timeout_ms} ms for: {expression}\n"
                f"page: {self.debug()}\ntranscript:\n{transcript}\nreceived:\n  {wire}"
            )

    def wait_for_state(self, state: str, timeout_ms: int = TURN_TIMEOUT_MS) -> None:
        self.wait_until(f"window.evaDebug.state === {state!r}", timeout_ms)

    def your_final_lines(self) -> list[str]:
        lines: list[str] = self.page.locator(".turn.you .text:not(.partial)").all_inner_texts()
        return lines

    def wait_for_your_final_line(self, pattern: str) -> str:
        self.wait_until(
            "[...document.querySelectorAll('.turn.you .text:not(.partial)')]"
            f".some(line => /{pattern}/i.test(line.textContent))"
        )
        return next(line for line in self.your_final_lines() if re.search(pattern, line, re.I))

    def wait_for_finished_replies(self, count: int = 1) -> list[str]:
        """Eva's replies, once ``count`` of them are done (a done reply shows its latency)."""
        self.wait_until(f"document.querySelectorAll('.turn.eva .latency').length >= {count}")
        replies: list[str] = self.page.locator(".turn.eva .text").all_inner_texts()
        return replies

    def send_typed(self, text: str) -> None:
        self.page.get_by_label("Type a message to Eva").fill(text)
        self.page.get_by_role("button", name="Send").click()

    def label(self) -> str:
        text: str = self.page.locator("#state").inner_text()
        return text


def restarted_on_same_port(old: ServerThread, settings: Settings, engines: Engines) -> ServerThread:
    """A fresh server where ``old`` was, as after a restart: same port, same database."""
    new = ServerThread(settings, engines)
    new.port, new.base_url = old.port, old.base_url
    new.server.config.port = old.port
    return new.start()


# ------------------------------------------------------------------------------ tests


def test_page_and_its_files_are_served_without_stale_caching(server: ServerThread) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        assert '<script type="module" src="/static/app.js">' in page.text
        assert http.head("/").status_code == 200
        for name in ("app.js", "audio.js", "connection.js", "audio-worklet.js"):
            script = http.get(f"/static/{name}")
            assert script.status_code == 200
            assert "javascript" in script.headers["content-type"]
            assert script.headers["cache-control"] == "no-cache"
        assert http.get("/static/style.css").headers["content-type"].startswith("text/css")
        assert http.get("/static/favicon.svg").status_code == 200
        assert http.get("/static/missing.js").status_code == 404
        assert http.get("/static/%2e%2e/server/web.py").status_code == 404


def test_spoken_question_is_transcribed_answered_and_played(
    launch: Launch, server: ServerThread, spoken_question: Path
) -> None:
    eva = EvaPage(launch(microphone=spoken_question), server.base_url)
    eva.page.get_by_role("button", name="Start").click()
    eva.wait_for_state("listening", CONNECT_TIMEOUT_MS)

    heard = eva.wait_for_your_final_line(r"colou?r")
    assert "favo" in heard.lower()

    replies = eva.wait_for_finished_replies()
    assert replies[0].strip()
    latency = eva.page.locator(".turn.eva .latency").first.inner_text()
    assert re.fullmatch(r"\d+ ms", latency)
    debug = eva.debug()
    assert debug["micFramesSent"] > 50  # 20 ms frames: over a second of microphone audio
    assert debug["audioChunksReceived"] > 0
    assert debug["audioSecondsScheduled"] > 0.5
    assert debug["audioContextState"] == "running"

    # A typed follow-up in the same conversation, and a picture of the page while Eva
    # answers it aloud: both turns on screen, the first with its latency.
    eva.wait_for_state("listening")
    eva.send_typed("Why that one?")
    eva.wait_until("document.querySelectorAll('.turn.eva').length === 2")
    eva.wait_for_state("speaking")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    eva.page.screenshot(path=str(SCREENSHOT))
    assert len(eva.wait_for_finished_replies(2)) == 2
    eva.wait_for_state("listening")  # the reply played to its end, then Eva listens again
    assert eva.label() == "Listening"
    debug = eva.debug()
    assert debug["audioSecondsPlayed"] == pytest.approx(debug["audioSecondsScheduled"])
    assert eva.script_errors == []


def test_typed_message_gets_a_written_and_spoken_reply(
    launch: Launch, server: ServerThread
) -> None:
    eva = EvaPage(launch(), server.base_url)
    eva.send_typed("Hello Eva, what a lovely morning.")
    eva.wait_until("document.querySelectorAll('.turn.you .text').length === 1")
    assert eva.your_final_lines() == ["Hello Eva, what a lovely morning."]
    replies = eva.wait_for_finished_replies()
    assert len(replies) == 1 and replies[0].strip()
    assert re.fullmatch(r"\d+ ms", eva.page.locator(".turn.eva .latency").inner_text())
    assert eva.debug()["audioChunksReceived"] > 0  # the Send click let the page play audio
    assert eva.page.get_by_label("Type a message to Eva").input_value() == ""
    assert eva.script_errors == []


def test_refused_microphone_explains_itself_and_typing_still_works(
    launch: Launch, server: ServerThread
) -> None:
    eva = EvaPage(launch(allow_microphone=False), server.base_url)
    eva.page.get_by_role("button", name="Start").click()
    notice = eva.page.get_by_role("alert").filter(has_text="microphone")
    notice.wait_for(timeout=CONNECT_TIMEOUT_MS)
    message = notice.inner_text()
    assert "microphone access was refused" in message and "type" in message
    assert eva.debug()["micFramesSent"] == 0
    assert eva.page.get_by_role("button", name="Try the microphone again").is_visible()

    eva.send_typed("Can you hear me?")
    assert eva.wait_for_finished_replies()[0].strip()
    assert eva.script_errors == []


def test_push_to_talk_sends_audio_only_while_held_and_ends_the_turn_on_release(
    launch: Launch, server: ServerThread, spoken_question: Path
) -> None:
    eva = EvaPage(launch(microphone=spoken_question), server.base_url)
    eva.page.get_by_text("Push-to-talk").click()
    eva.wait_until("window.evaDebug.mode === 'push_to_talk'")
    eva.page.get_by_role("button", name="Start").click()
    eva.wait_for_state("waiting", CONNECT_TIMEOUT_MS)
    assert eva.label() == "Ready"
    assert eva.debug()["micFramesSent"] == 0

    # Hold the space bar through the question (it starts one second into the file).
    eva.page.locator("body").focus()
    eva.page.keyboard.down("Space")
    eva.wait_for_state("hearing", CONNECT_TIMEOUT_MS)
    eva.page.wait_for_timeout((LEAD_SILENCE_S + 3.0) * 1000)
    eva.page.keyboard.up("Space")
    sent = eva.debug()["micFramesSent"]
    assert sent > 100  # 20 ms frames, about four seconds held

    heard = eva.wait_for_your_final_line(r"colou?r")
    assert "favo" in heard.lower()
    assert eva.wait_for_finished_replies()[0].strip()
    assert eva.debug()["micFramesSent"] == sent  # nothing more once the key was released
    assert eva.script_errors == []


def test_speaking_over_eva_stops_her_voice_at_once(
    launch: Launch, server: ServerThread, spoken_question_at_once: Path
) -> None:
    eva = EvaPage(launch(microphone=spoken_question_at_once), server.base_url)
    eva.send_typed("Please tell me a long story about a lighthouse keeper and a seagull.")
    # The reply itself is playing, not only a short acknowledgement ("Mm.", half a second)
    # that a slow reply starts with.
    eva.wait_until("window.evaDebug.audioSecondsScheduled > 1.5")
    eva.wait_for_state("speaking")
    # The microphone opens now; a moment later the question talks over Eva.
    eva.page.get_by_role("button", name="Start").click()
    eva.wait_until("window.evaDebug.audioFlushes >= 1")
    assert eva.debug()["state"] in ("hearing", "listening", "thinking")  # not "speaking"
    eva.wait_until("document.querySelector('.turn.eva.interrupted') !== null")
    heard = eva.wait_for_your_final_line(r"colou?r")
    assert "favo" in heard.lower()
    assert eva.script_errors == []


def test_page_reconnects_after_a_server_restart_and_resumes_the_conversation(
    launch: Launch, eva_settings: Settings, engines: Engines
) -> None:
    first = ServerThread(eva_settings, engines).start()
    second: ServerThread | None = None
    try:
        eva = EvaPage(launch(), first.base_url)
        eva.wait_until("window.evaDebug.sessionId")  # session.created has arrived
        session_id = eva.debug()["sessionId"]
        eva.send_typed("Remember the word marmalade.")
        eva.wait_for_finished_replies()

        first.stop()
        eva.wait_for_state("reconnecting", CONNECT_TIMEOUT_MS)
        assert eva.label() == "Reconnecting…"

        second = restarted_on_same_port(first, eva_settings, engines)
        eva.wait_until("window.evaDebug.connected", CONNECT_TIMEOUT_MS)
        debug = eva.debug()
        assert debug["sessionId"] == session_id and debug["reconnects"] >= 1
        assert eva.label() == "Ready"
        assert eva.your_final_lines() == ["Remember the word marmalade."]  # still on screen

        # A reload keeps the session too, and shows what was said before it.
        eva.page.reload()
        eva.wait_until("window.evaDebug && window.evaDebug.connected", CONNECT_TIMEOUT_MS)
        assert eva.debug()["sessionId"] == session_id
        eva.wait_until("document.querySelectorAll('.turn').length === 2", CONNECT_TIMEOUT_MS)
        assert eva.your_final_lines() == ["Remember the word marmalade."]
        assert eva.script_errors == []
    finally:
        (second or first).stop()
