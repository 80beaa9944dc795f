"""Tokens on arbitrary input: verify answers a tuple or BadToken, nothing else (hypothesis)."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from service import tokens

SECRET = "s3cret"
PROPERTY = settings(max_examples=500, deadline=None, database=None)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
purposes = st.text(min_size=1, max_size=20)
# Mostly the token alphabet (with padding and the other base64 variant), then any text.
token_like = st.text(alphabet=string.ascii_letters + string.digits + "-_=+/", max_size=80)
any_text = st.text(max_size=200) | token_like


@PROPERTY
@given(any_text, purposes, st.integers(min_value=0, max_value=6))
def test_verify_on_any_string_gives_values_or_bad_token(
    token: str, purpose: str, count: int
) -> None:
    try:
        values = tokens.verify(SECRET, purpose, token, count)
    except tokens.BadToken:
        return
    assert isinstance(values, tuple)
    assert len(values) == count


@PROPERTY
@given(purposes, st.lists(u64, min_size=0, max_size=5))
def test_sign_then_verify_gives_back_the_values(purpose: str, values: list[int]) -> None:
    token = tokens.sign(SECRET, purpose, *values)
    assert token.isascii()
    assert set(token) <= set(string.ascii_letters + string.digits + "-_")
    assert tokens.verify(SECRET, purpose, token, len(values)) == tuple(values)


@PROPERTY
@given(purposes, purposes, st.lists(u64, min_size=1, max_size=3))
def test_a_token_opens_only_its_own_purpose(purpose: str, other: str, values: list[int]) -> None:
    token = tokens.sign(SECRET, purpose, *values)
    if other == purpose:
        return
    try:
        tokens.verify(SECRET, other, token, len(values))
    except tokens.BadToken:
        return
    raise AssertionError(f"a {purpose!r} token opened {other!r}")


@PROPERTY
@given(purposes, st.lists(u64, min_size=1, max_size=3), st.data())
def test_any_changed_character_is_refused(
    purpose: str, values: list[int], data: st.DataObject
) -> None:
    token = tokens.sign(SECRET, purpose, *values)
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.sampled_from(string.ascii_letters + string.digits + "-_"))
    forged = token[:position] + replacement + token[position + 1 :]
    if forged == token:
        return
    try:
        got = tokens.verify(SECRET, purpose, forged, len(values))
    except tokens.BadToken:
        return
    # base64's last character may carry unused bits: the same bytes, the same values.
    assert got == tuple(values)
