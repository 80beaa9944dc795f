"""DKIM: the key from the settings, and the one signing of an outgoing message."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.config import Settings

HEADERS = [
    b"from", b"to", b"subject", b"date", b"message-id", b"list-id",
    b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version", b"content-type",
]  # fmt: skip


@dataclass(frozen=True)
class DkimKey:
    """What DKIM signing needs, loaded once."""

    selector: bytes
    domain: bytes
    private_key: bytes

    @classmethod
    def load(cls, selector: str, domain: str, key_path: Path) -> DkimKey:
        """Read the PEM private key from disk."""
        return cls(selector.encode(), domain.encode(), key_path.read_bytes())


def key_from(settings: Settings) -> DkimKey | None:
    """The deployment's signing key, or None when DKIM is not configured."""
    if settings.dkim_selector and settings.dkim_domain and settings.dkim_private_key_path:
        return DkimKey.load(
            settings.dkim_selector, settings.dkim_domain, settings.dkim_private_key_path
        )
    return None


def signed(key: DkimKey, data: bytes) -> bytes:
    """The message with its DKIM-Signature header in front."""
    import dkim  # imported lazily: only deployments that sign pay for it

    signature = dkim.sign(data, key.selector, key.domain, key.private_key, include_headers=HEADERS)
    return bytes(signature) + data
