"""DKIM (RFC 6376, relaxed/relaxed) at the cost of the signature itself.

A signature is two hashes and one private-key operation: SHA-256 over the
canonical body (`bh=`), then the key over the canonical signed headers. The
edition's parts are the same for every reader but a few short spans, so
mime.prepare canonicalises them once (`relaxed_lines`) and mime.personalise
hashes the canonical bytes spliced with the reader's spans; the headers every
reader shares are canonicalised once here (`EditionSigner`). What is left per
message is one SHA-256 pass over the body, a few hundred bytes of header
canonicalisation and the RSA signature through OpenSSL (`cryptography`),
plus an Ed25519 one (RFC 8463) when a second key is configured.

dkimpy is not used to sign (it does the RSA operation in Python and
canonicalises the whole body per message); the tests verify with it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from service.config import Settings

# The headers signed, in h= order. Reply-To is signed when the newsletter has one.
SIGNED = (
    b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-id",
    b"list-unsubscribe", b"list-unsubscribe-post", b"list-archive", b"feedback-id",
    b"precedence", b"mime-version", b"content-type",
)  # fmt: skip
# Each is named once more than the message holds it (over-signing, RFC 6376 8.15): a
# name without an instance signs that there is none, so a second From, Subject or
# List-Unsubscribe, or a Reply-To, added on the way breaks the signature. All of them
# may appear at most once in a message (RFC 5322 3.6, RFC 2369, RFC 8058).
H_TAG = SIGNED + SIGNED

_MIN_RSA_BITS = 1024  # RFC 8301 3.2: verifiers refuse smaller keys

_WSP_RUN = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+(?=\r\n)")
_FIELD_START = re.compile(rb"\r\n(?![ \t])")  # a line that is not a continuation


@dataclass(frozen=True, eq=False)
class DkimKey:
    """The signing keys and where their public halves are published, loaded once."""

    selector: bytes
    domain: bytes
    private_key: rsa.RSAPrivateKey
    # The optional second signature (RFC 8463): its own selector, since the DNS
    # record of a selector holds one key.
    ed25519_selector: bytes | None = None
    ed25519_key: ed25519.Ed25519PrivateKey | None = None

    @classmethod
    def load(
        cls,
        selector: str,
        domain: str,
        key_path: Path,
        *,
        ed25519_selector: str | None = None,
        ed25519_key_path: Path | None = None,
    ) -> DkimKey:
        """Read the PEM private keys from disk (PKCS#1 or PKCS#8).

        Raises ValueError for a key that is not RSA of at least 1024 bits, or
        an Ed25519 key file without its selector (or the other way round).
        """
        rsa_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(rsa_key, rsa.RSAPrivateKey) or rsa_key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"{key_path}: a DKIM key must be RSA of {_MIN_RSA_BITS} bits or more")
        if (ed25519_selector is None) != (ed25519_key_path is None):
            raise ValueError("an Ed25519 DKIM key needs both its selector and its key file")
        ed_key = None
        if ed25519_key_path is not None:
            loaded = serialization.load_pem_private_key(
                ed25519_key_path.read_bytes(), password=None
            )
            if not isinstance(loaded, ed25519.Ed25519PrivateKey):
                raise ValueError(f"{ed25519_key_path}: not an Ed25519 private key")
            ed_key = loaded
        return cls(
            selector.encode("ascii"),
            domain.encode("ascii"),
            rsa_key,
            ed25519_selector.encode("ascii") if ed25519_selector else None,
            ed_key,
        )


def key_from(settings: Settings) -> DkimKey | None:
    """The deployment's signing key, or None when DKIM is not configured."""
    if settings.dkim_selector and settings.dkim_domain and settings.dkim_private_key_path:
        return DkimKey.load(
            settings.dkim_selector,
            settings.dkim_domain,
            settings.dkim_private_key_path,
            ed25519_selector=settings.dkim_ed25519_selector,
            ed25519_key_path=settings.dkim_ed25519_private_key_path,
        )
    return None


def relaxed_lines(chunk: bytes) -> bytes:
    """The relaxed body canonicalisation (RFC 6376 3.4.4) of whole lines.

    Exact for any piece of a body that starts at a line start and ends with
    CRLF, so pieces canonicalised apart join into the canonical body; the
    end-of-body rule (empty lines dropped) is `relaxed_body`'s.
    """
    return _WSP_RUN.sub(b" ", _TRAILING_WSP.sub(b"", chunk))


def relaxed_body(body: bytes) -> bytes:
    """The relaxed canonical form of a whole body."""
    canonical = relaxed_lines(body if body.endswith(b"\r\n") else body + b"\r\n").rstrip(b"\r\n")
    return canonical + b"\r\n" if canonical else b""


def relaxed_header(field: bytes) -> tuple[bytes, bytes]:
    """A header field's lowercased name and relaxed canonical form (RFC 6376 3.4.2)."""
    name, _, value = field.partition(b":")
    value = _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" \t")
    name = name.rstrip(b" \t").lower()
    return name, name + b":" + value + b"\r\n"


def canonical_fields(block: bytes) -> dict[bytes, list[bytes]]:
    """Each signed header of a header block, canonical, by name in message order."""
    fields: dict[bytes, list[bytes]] = {}
    for field in _FIELD_START.split(block.removesuffix(b"\r\n")):
        name, canonical = relaxed_header(field)
        if name in _SIGNED_SET:
            fields.setdefault(name, []).append(canonical)
    return fields


_SIGNED_SET = frozenset(SIGNED)


class EditionSigner:
    """Signs the messages of one edition: its shared headers are canonical once.

    Which instance of which header goes where in the signed data depends only on the
    names of the message's own headers, the same for every reader: that plan is made
    once, and each message only canonicalises its own few fields.
    """

    def __init__(self, key: DkimKey, shared_headers: bytes) -> None:
        self.key = key
        self._shared = canonical_fields(shared_headers)
        self._plans: dict[tuple[bytes, ...], list[bytes | int]] = {}

    def signature(self, own_fields: Sequence[bytes], body_hash: bytes, now: float) -> bytes:
        """The DKIM-Signature header(s) of a message.

        `own_fields` are the message's own header fields, one each (those not shared
        by the edition), `body_hash` the SHA-256 digest of its canonical body.
        """
        names, forms = [], []
        for field in own_fields:
            name, form = relaxed_header(field)
            names.append(name)
            forms.append(form)
        key = tuple(names)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(key)
        signed_headers = b"".join(forms[p] if isinstance(p, int) else p for p in plan)
        return _signatures(self.key, signed_headers, body_hash, int(now))

    def _plan(self, own_names: tuple[bytes, ...]) -> list[bytes | int]:
        # The shared instances come first in the message, then the own ones (by index).
        fields: dict[bytes, list[bytes | int]] = {n: list(v) for n, v in self._shared.items()}
        for index, name in enumerate(own_names):
            if name in _SIGNED_SET:
                fields.setdefault(name, []).append(index)
        return _selected(fields)


def signed(key: DkimKey, data: bytes, now: float | None = None) -> bytes:
    """Any message with its DKIM-Signature in front: the slow path, for one-off mail."""
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:  # no body at all: the header block ends the data
        head = head.removesuffix(b"\r\n")
    body_hash = hashlib.sha256(relaxed_body(body)).digest()
    picked: list[bytes] = _selected(canonical_fields(head + b"\r\n"))
    signed_headers = b"".join(picked)
    return (
        _signatures(key, signed_headers, body_hash, int(time.time() if now is None else now)) + data
    )


def _signatures(key: DkimKey, signed_headers: bytes, body_hash: bytes, now: int) -> bytes:
    bh = base64.b64encode(body_hash)
    rsa_header = _header(b"rsa-sha256", key.domain, key.selector, now, bh)
    data = signed_headers + relaxed_header(rsa_header)[1].removesuffix(b"\r\n")
    signature = key.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    headers = rsa_header + _folded(signature)
    if key.ed25519_key is not None and key.ed25519_selector is not None:
        ed_header = _header(b"ed25519-sha256", key.domain, key.ed25519_selector, now, bh)
        data = signed_headers + relaxed_header(ed_header)[1].removesuffix(b"\r\n")
        # RFC 8463 3: Ed25519 signs the SHA-256 digest of what RSA signs in full.
        ed_signature = key.ed25519_key.sign(hashlib.sha256(data).digest())
        # The Ed25519 signature goes first: verifiers that know only RSA read past it.
        headers = ed_header + _folded(ed_signature) + headers
    return headers


_T = TypeVar("_T")


def _selected(fields: dict[bytes, list[_T]]) -> list[_T]:
    # For a name listed again, the next instance from the bottom (RFC 6376 5.4.2); none
    # left contributes nothing, which is what over-signing signs.
    remaining = {name: list(values) for name, values in fields.items()}
    picked = []
    for name in H_TAG:
        values = remaining.get(name)
        if values:
            picked.append(values.pop())
    return picked


def _h_lines(names: Iterable[bytes], width: int = 76) -> bytes:
    lines, line = [], b" h="
    for n, name in enumerate(names):
        piece = name if n == 0 else b":" + name
        if len(line) + len(piece) > width:
            lines.append(line)
            line = b" "  # FWS before a colon of h= (RFC 6376 3.5)
        line += piece
    lines.append(line + b";")
    return b"\r\n".join(lines) + b"\r\n"


_H_LINES = _h_lines(H_TAG)


def _header(algorithm: bytes, domain: bytes, selector: bytes, now: int, bh: bytes) -> bytes:
    """The DKIM-Signature header up to its empty b= tag, folded within 78 characters."""
    return (
        b"DKIM-Signature: v=1; a=" + algorithm + b"; c=relaxed/relaxed;\r\n"
        b" d=" + domain + b"; s=" + selector + b"; t=%d;\r\n" % now
        + _H_LINES + b" bh=" + bh + b";\r\n b="
    )  # fmt: skip


def _folded(signature: bytes) -> bytes:
    encoded = base64.b64encode(signature)
    return b"\r\n ".join(encoded[i : i + 72] for i in range(0, len(encoded), 72)) + b"\r\n"
