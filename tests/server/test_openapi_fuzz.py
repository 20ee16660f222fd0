"""schemathesis against Eva's own OpenAPI spec, on a real server with the real models: no
request it generates gets a server error, and every documented response matches its
schema. Bounded: a few examples per operation, fewer for those that run a whole reply."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from eva.engines.runtime import Engines
from tests.server.servers import start_server
from tests.support import ServerThread

# The operations that run a whole reply (LLM, and TTS or STT): a few examples each keep the
# test around a minute on two cores; the rest are cheap and get more.
_REPLYING = re.compile(
    "^/(chat|chat/stream|voice|v1/chat/completions|v1/audio/(speech|transcriptions|translations))$"
)
_REPLYING_EXAMPLES = 3
_CHEAP_EXAMPLES = 15
_CHECKS = [not_a_server_error, response_schema_conformance]
_CONFIG = {"request-timeout": 120}
# Every generated request within a minute, with room.
_FUZZ_RATE_LIMIT = 5000


@pytest.fixture(scope="module")
def fuzzed(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A server of its own: a few hundred requests from one address would leave the shared
    server's rate limit spent for the tests that follow."""
    running = start_server(
        engines, tmp_path_factory.mktemp("fuzzed"), rate_limit_per_address=_FUZZ_RATE_LIMIT
    )
    yield running
    running.stop()


def test_no_generated_request_gets_a_server_error_and_responses_match_the_spec(
    fuzzed: ServerThread,
) -> None:
    server = fuzzed
    schema = schemathesis.openapi.from_url(
        f"{server.base_url}/openapi.json", config=schemathesis.Config.from_dict(_CONFIG)
    )
    tried: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        examples = _REPLYING_EXAMPLES if _REPLYING.match(operation.path) else _CHEAP_EXAMPLES

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def call(case: schemathesis.Case) -> None:
            tried[case.operation.label] = tried.get(case.operation.label, 0) + 1
            case.call_and_validate(checks=_CHECKS)

        call()
    print(f"\nschemathesis: {sum(tried.values())} requests: {tried}")
    assert {"POST /chat", "POST /chat/stream", "GET /sessions/{session_id}/messages"} <= set(tried)


def test_a_lone_surrogate_in_text_is_a_400_not_a_backend_failure(server: ServerThread) -> None:
    """JSON can escape a lone surrogate (``"\\ud800"``); no model or voice can take one, so
    it is the client's error, not a failed backend (found by fuzzing: it was a 503)."""
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        errors = http.get("/stats").json()["errors"]
        for path, field in (("/chat", "message"), ("/chat/stream", "message"), ("/tts", "text")):
            raw = '{"' + field + '": "Hello \\ud800 there"}'
            answer = http.post(path, content=raw, headers={"content-type": "application/json"})
            assert answer.status_code == 400, (path, answer.text)
            assert answer.json()["error"]["code"] == f"invalid_{field}"
        assert http.get("/stats").json()["errors"] == errors
