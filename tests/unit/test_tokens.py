"""Signed tokens: round trip, tampering, purpose binding, expiry."""

from __future__ import annotations

import time

import pytest

from service import tokens

SECRET = "s3cret"


def test_token_round_trips_its_integers() -> None:
    token = tokens.sign(SECRET, "delivery", 42, 7)
    assert tokens.verify(SECRET, "delivery", token, 2) == (42, 7)


@pytest.mark.parametrize("position", [0, 5, 11, -1])
def test_a_changed_character_is_rejected(position: int) -> None:
    token = tokens.sign(SECRET, "delivery", 42)
    flipped = "A" if token[position] != "A" else "B"
    end = position + 1 if position != -1 else len(token)
    forged = token[:position] + flipped + token[end:]
    with pytest.raises(tokens.BadToken):
        tokens.verify(SECRET, "delivery", forged, 1)


def test_a_token_for_one_purpose_does_not_open_another() -> None:
    token = tokens.sign(SECRET, "delivery", 42)
    with pytest.raises(tokens.BadToken):
        tokens.verify(SECRET, "prefs", token, 1)


def test_another_secret_rejects_the_token() -> None:
    token = tokens.sign(SECRET, "delivery", 42)
    with pytest.raises(tokens.BadToken):
        tokens.verify("other", "delivery", token, 1)


@pytest.mark.parametrize("garbage", ["", "!!!", "a" * 200, "AAAA"])
def test_malformed_tokens_are_rejected_cleanly(garbage: str) -> None:
    with pytest.raises(tokens.BadToken):
        tokens.verify(SECRET, "delivery", garbage, 1)


def test_expiring_token_is_refused_once_too_old(monkeypatch: pytest.MonkeyPatch) -> None:
    token = tokens.sign_expiring(SECRET, "confirm", 9)
    assert tokens.verify_expiring(SECRET, "confirm", token, 1, max_age_seconds=60) == (9,)
    later = time.time() + 61
    monkeypatch.setattr("service.tokens.time.time", lambda: later)
    with pytest.raises(tokens.BadToken, match="expired"):
        tokens.verify_expiring(SECRET, "confirm", token, 1, max_age_seconds=60)
    with pytest.raises(tokens.ExpiredToken) as expired:
        tokens.verify_expiring(SECRET, "confirm", token, 1, max_age_seconds=60)
    assert expired.value.values == (9,)


def test_verify_any_takes_each_listed_purpose_and_no_other() -> None:
    for purpose in ("unsubscribe", "delivery"):
        token = tokens.sign(SECRET, purpose, 5)
        assert tokens.verify_any(SECRET, ("unsubscribe", "delivery"), token, 1) == (5,)
    with pytest.raises(tokens.BadToken):
        tokens.verify_any(SECRET, ("unsubscribe", "delivery"), tokens.sign(SECRET, "open", 5), 1)
    with pytest.raises(tokens.BadToken):
        tokens.verify_any(SECRET, (), tokens.sign(SECRET, "open", 5), 1)
