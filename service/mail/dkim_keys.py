"""DKIM keys: made, written and published (the DNS TXT record of their public half).

`hebdo dkim generate` makes a key here and `hebdo check` prints the record of the key
the deployment signs with, from the same function, so the two always agree. Signing
itself is service/mail/dkim.py.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

RSA_BITS = 2048  # RFC 8301 asks for 1024 at least; 2048 is what mailbox providers advise
_TXT_STRING = 255  # one character-string of a TXT record holds at most 255 bytes (RFC 1035)
# A selector is one or more DNS labels (RFC 6376 3.1); letters, digits, hyphens, underscores.
_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_SELECTOR = re.compile(rf"{_LABEL}(\.{_LABEL})*")


class BadKeyRequest(ValueError):
    """A selector or domain that cannot name a DKIM record; the message says why."""


@dataclass(frozen=True)
class PublicRecord:
    """Where and what to publish for one key."""

    name: str  # selector._domainkey.domain (no trailing dot)
    value: str  # v=DKIM1; k=…; p=…  (what a DNS provider's form takes)
    algorithm: str  # "rsa" or "ed25519"
    public_key: str  # the p= value

    @property
    def zone_line(self) -> str:
        """The record in zone-file form, the value cut in strings of at most 255 bytes."""
        chunks = [self.value[i : i + _TXT_STRING] for i in range(0, len(self.value), _TXT_STRING)]
        return f"{self.name}. IN TXT " + " ".join(f'"{chunk}"' for chunk in chunks)


def check_selector(selector: str) -> str:
    """The selector as given, or BadKeyRequest when it is not a DNS name."""
    if not _SELECTOR.fullmatch(selector) or len(selector) > 200:
        raise BadKeyRequest(f"{selector!r} is not a DKIM selector (DNS labels: a-z, 0-9, -, _)")
    return selector


def check_domain(domain: str) -> str:
    """The domain in ASCII and lower case (IDNA), or BadKeyRequest."""
    try:
        ascii_domain = domain.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError as error:
        raise BadKeyRequest(f"{domain!r} is not a domain name: {error}") from error
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(re.fullmatch(_LABEL, label) for label in labels):
        raise BadKeyRequest(f"{domain!r} is not a domain name (example.org, lettre.example.org)")
    return ascii_domain


def generate(*, ed25519_key: bool = False) -> PrivateKey:
    """A new private key: RSA 2048 bits, or Ed25519 (RFC 8463)."""
    if ed25519_key:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def write_private_key(key: PrivateKey, path: Path) -> None:
    """Write the key as unencrypted PEM (PKCS#8), readable by its owner only.

    Refuses to replace an existing file: a key already published in DNS must not vanish.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with 0600 at once, so the key is never readable by others, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(pem)


def load_private_key(path: Path) -> PrivateKey:
    """Read a PEM private key (PKCS#1 or PKCS#8); ValueError unless it is RSA or Ed25519."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path}: not an RSA or Ed25519 private key")
    return key


def public_record(key: PrivateKey, selector: str, domain: str) -> PublicRecord:
    """The TXT record that publishes key's public half under selector and domain."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        # RFC 8463 3: p= is the bare 32-byte public key.
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        algorithm = "ed25519"
    else:
        # RFC 6376 3.6.1: p= is the DER SubjectPublicKeyInfo, as `openssl rsa -pubout` gives.
        raw = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        algorithm = "rsa"
    public = base64.b64encode(raw).decode("ascii")
    return PublicRecord(
        name=f"{selector}._domainkey.{domain}",
        value=f"v=DKIM1; k={algorithm}; p={public}",
        algorithm=algorithm,
        public_key=public,
    )


def record_tags(txt: str) -> dict[str, str]:
    """The tags of a DKIM (or DMARC) TXT value, names lower-cased, spaces taken out of p=."""
    tags: dict[str, str] = {}
    for part in txt.split(";"):
        name, equals, value = part.partition("=")
        if equals:
            tags[name.strip().lower()] = value.strip()
    if "p" in tags:
        tags["p"] = "".join(tags["p"].split())
    return tags
