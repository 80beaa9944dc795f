"""Outgoing webhooks: beat asks every few seconds; the task POSTs what is due."""

from __future__ import annotations

from service import queue
from service.access import webhooks
from worker import runtime
from worker.celery_app import app


@app.task(name=queue.DELIVER_WEBHOOKS)
def deliver_webhooks() -> dict[str, int]:
    """POST the due webhook deliveries (signed); failures wait for their next try."""
    report = webhooks.deliver_due(runtime.sessions())
    return {"delivered": report.delivered, "retried": report.retried, "failed": report.failed}
