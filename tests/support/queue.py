"""Enqueue tasks on the broker of a given test instance."""

from __future__ import annotations

from service.broker import CeleryQueue
from service.config import Settings


def enqueue_send(settings: Settings, edition_id: int, copies: int = 1) -> None:
    """Put `copies` send_pending messages for the edition on the test's broker."""
    CeleryQueue(settings.broker_url).send_edition(edition_id, batches=copies, workers=copies)
