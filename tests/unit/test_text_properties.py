"""Property-based tests of the input rules: the text rule, the header fold, addresses."""

from __future__ import annotations

import email
import email.policy
import unicodedata
from email.header import decode_header, make_header

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from service import text
from service.addresses import InvalidAddress, for_sending, normalise
from service.mail.mime import UnsafeHeader, fold, mailbox, phrase, unstructured

# Every code point, surrogates and controls included: what a CLI argument or a badly
# decoded file can hold.
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=400)
LINE_BREAKS = [
    "\r",
    "\n",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
]


def _parse_header(folded: bytes, name: str) -> str:
    message = email.message_from_bytes(folded + b"\r\n", policy=email.policy.default)
    return str(message[name])


@given(ANY_TEXT, st.integers(min_value=1, max_value=300))
@example("Jeanne\r\nBcc: x@evil.example", 200)
@example("a\u2028b\u2029c\x85d\te\x0bf", 200)
@example(" \u200b\u202eabc\u202c ", 200)
def test_one_line_gives_one_clean_bounded_line_and_is_idempotent(value: str, limit: int) -> None:
    if "\x00" in value:
        with pytest.raises(text.UnusableText, match="NUL"):
            text.one_line(value, limit=limit)
        return
    cleaned = text.one_line(value, limit=limit)
    assert len(cleaned) <= limit
    assert text.one_line(cleaned, limit=limit) == cleaned
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    assert len(cleaned.splitlines()) <= 1
    for char in cleaned:
        category = unicodedata.category(char)
        assert category not in ("Cc", "Zl", "Zp", "Cs"), repr(char)
        assert category != "Cf" or char in "\u200c\u200d", repr(char)
    cleaned.encode("utf-8")  # no lone surrogate left


@given(st.lists(st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1), max_size=8))
def test_one_line_keeps_ordinary_text_as_typed(words: list[str]) -> None:
    typed = unicodedata.normalize("NFC", " ".join(words))
    assert text.one_line(typed, limit=10_000) == typed


@pytest.mark.parametrize("brk", LINE_BREAKS)
def test_fold_refuses_every_kind_of_line_break(brk: str) -> None:
    for value in (f"Jeanne{brk}Bcc: x@evil.example", f"Société{brk}Bcc: x@evil.example"):
        with pytest.raises(UnsafeHeader):
            fold("Subject", value)
        with pytest.raises(UnsafeHeader):
            fold("To", value, utf8=True)


@given(ANY_TEXT)
@example("Semaine du 18 au 25 janvier : l'IA, la société et nous " * 3)
@example("=?utf-8?q?faux?= mot")
def test_a_folded_subject_reads_back_exactly_in_ascii_lines_of_at_most_76(value: str) -> None:
    if "\x00" in value:
        return
    subject = text.subject(value)
    if not subject:
        return
    folded = fold("Subject", unstructured(subject))
    assert folded.isascii()
    assert folded.endswith(b"\r\n")
    lines = folded[:-2].split(b"\r\n")
    assert all(line.startswith(b" ") for line in lines[1:])
    if not subject.isascii() or "=?" in subject:
        assert all(len(line) <= 76 for line in lines)
    assert _parse_header(folded, "Subject") == subject


@given(ANY_TEXT, st.emails())
@example('Dupont, Jean "le grand"', "jean@example.org")
@example("Jeanne Bcc: x@evil.example", "jeanne@example.org")
def test_a_mailbox_reads_back_as_the_same_name_and_address(name: str, address: str) -> None:
    if "\x00" in name:
        return
    clean = text.person_name(name)
    folded = fold("To", mailbox(clean, address))
    message = email.message_from_bytes(folded + b"\r\n", policy=email.policy.strict)
    (parsed,) = message["To"].addresses
    assert parsed.addr_spec == address
    if clean.isascii():
        assert parsed.display_name == clean
    else:
        # Python's address parser keeps the space between two encoded words, which
        # RFC 2047 6.2 says to drop; the legacy decoder follows the RFC.
        words = phrase(clean)
        assert words.isascii()
        assert str(make_header(decode_header(words))) == clean
        assert "".join(parsed.display_name.split()) == "".join(clean.split())


ADDRESSES = st.one_of(
    st.emails(),
    ANY_TEXT,
    st.builds(
        "{}@{}.{}".format,
        st.text(min_size=1, max_size=30),
        st.text(min_size=1, max_size=30),
        st.sampled_from(["fr", "org", "xn--p1ai", "рф", "中国"]),
    ),
)


@given(ADDRESSES)
@example("lectrice@exämple.fr")
@example("José@EXÄMPLE.fr")
@example("a\udc80@example.org")
@example("x@xn--exmple-cua.fr")
def test_normalise_only_ever_raises_invalid_address_and_sends_ascii_domains(raw: str) -> None:
    try:
        address = normalise(raw)
    except InvalidAddress:
        return
    assert normalise(address) == address
    wire = for_sending(address)
    local, _, domain = wire.rpartition("@")
    assert domain.isascii()
    assert local == address.rpartition("@")[0]
    assert wire.isascii() == local.isascii()


def test_an_idn_domain_and_its_ascii_form_are_one_address() -> None:
    assert normalise("Lectrice@EXÄMPLE.fr") == normalise("lectrice@xn--exmple-cua.fr")
    assert for_sending(normalise("lectrice@exämple.fr")) == "lectrice@xn--exmple-cua.fr"
