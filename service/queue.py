"""The work queue as the domain sees it: task names and the `Queue` protocol.

A door (web, CLI) hands work to the workers through a `Queue` after its commit; the
one implementation sits in `service.broker` (Celery by task name), so nothing in
`service` imports `worker`. The worker's task decorators use the same names.
"""

from __future__ import annotations

from typing import Protocol

QUEUE = "hebdo"  # the broker queue the workers consume

SEND_PENDING = "hebdo.send_pending"
DISPATCH_DUE = "hebdo.dispatch_due"
SEND_CONFIRMATIONS = "hebdo.send_confirmations"
CONFIRMATIONS_DUE = "hebdo.confirmations_due"
PURGE_RATE_WINDOWS = "hebdo.purge_rate_windows"
DELIVER_WEBHOOKS = "hebdo.deliver_webhooks"
SCHEDULE_NEXT_ISSUES = "hebdo.schedule_next_issues"

SEND_WORKERS = 4  # most tasks per edition handed out at once: one per worker slot
CONFIRMATION_WORKERS = (
    2  # tasks per enqueue: the shared rate limit, not the task count, sets the pace
)


class Queue(Protocol):
    """Hands committed work to the workers."""

    def send_edition(self, edition_id: int, batches: int) -> None:
        """Ask the workers to send an edition's due rows (one task per worker slot)."""

    def send_confirmations(self, newsletter_id: int) -> None:
        """Ask the workers to send a newsletter's queued confirmation mails."""
