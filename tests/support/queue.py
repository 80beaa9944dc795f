"""Enqueue tasks on the broker of a given test instance."""

from __future__ import annotations

from service.config import Settings
from worker.celery_app import app
from worker.tasks.deliveries import send_pending


def enqueue_send(settings: Settings, edition_id: int, copies: int = 1) -> None:
    """Put `copies` send_pending messages for the edition on the test's broker."""
    with app.connection_for_write(settings.broker_url) as connection:
        for _ in range(copies):
            send_pending.apply_async((edition_id,), connection=connection)
