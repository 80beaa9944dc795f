"""Enqueue tasks on the broker of a given test instance."""

from __future__ import annotations

from service.config import Settings
from worker.tasks.deliveries import enqueue_send as enqueue


def enqueue_send(settings: Settings, edition_id: int, copies: int = 1) -> None:
    """Put `copies` send_pending messages for the edition on the test's broker."""
    enqueue(settings.broker_url, edition_id, batches=copies, workers=copies)
