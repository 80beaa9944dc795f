"""The `Queue` of the doors: Celery messages sent by task name.

Door-neutral (web and CLI both use it) and outside the domain: it imports celery,
never `worker`, so a door does not load the tasks' code to enqueue them.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from service import queue


@lru_cache(maxsize=8)
def _app(broker_url: str) -> Celery:
    app = Celery("hebdo-broker", broker=broker_url, set_as_current=False)
    app.conf.update(task_default_queue=queue.QUEUE, task_ignore_result=True)
    return app


class CeleryQueue:
    """Puts task messages on the broker at `broker_url` (the caller's settings)."""

    def __init__(self, broker_url: str) -> None:
        self._broker_url = broker_url

    def _send(self, name: str, args: tuple[int], copies: int) -> None:
        app = _app(self._broker_url)
        with app.connection_for_write() as connection:
            for _ in range(max(1, copies)):
                app.send_task(name, args, connection=connection)

    def send_edition(
        self, edition_id: int, batches: int, workers: int = queue.SEND_WORKERS
    ) -> None:
        """One send task per worker slot, at most one per batch; each loops over batches."""
        self._send(queue.SEND_PENDING, (edition_id,), min(batches, workers))

    def send_confirmations(
        self, newsletter_id: int, workers: int = queue.CONFIRMATION_WORKERS
    ) -> None:
        """Ask the workers to send this newsletter's queued confirmations."""
        self._send(queue.SEND_CONFIRMATIONS, (newsletter_id,), workers)
