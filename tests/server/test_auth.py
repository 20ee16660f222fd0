"""Client secrets for the Realtime socket, on a virtual clock."""

from __future__ import annotations

import pytest

from eva.server import auth
from eva.server.auth import ClientSecrets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_secret_names_its_owner_until_it_expires() -> None:
    clock = Clock()
    secrets = ClientSecrets(clock)
    value, expires_at = secrets.mint("alice", 60, {"instructions": "Be brief."})
    assert value.startswith("ek_") and expires_at == 1060.0
    assert secrets.owner(value) == "alice"
    assert secrets.session(value) == {"instructions": "Be brief."}
    assert secrets.owner(value + "x") is None and secrets.session("ek_other") == {}
    clock.now = 1060.0
    assert secrets.owner(value) is None


def test_expired_secrets_are_forgotten_and_the_live_ones_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth, "MAX_CLIENT_SECRETS", 3)
    clock = Clock()
    secrets = ClientSecrets(clock)
    for _ in range(3):
        secrets.mint("alice", 10, {})
    with pytest.raises(OverflowError):
        secrets.mint("alice", 10, {})
    clock.now += 11  # all three expired: minting makes room
    assert secrets.owner(secrets.mint("bob", 10, {})[0]) == "bob"
