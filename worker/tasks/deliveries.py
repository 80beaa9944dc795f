"""Delivery tasks: send an edition's due rows; find due work on a schedule."""

from __future__ import annotations

from service import dispatch, scheduling, sending
from worker import runtime
from worker.celery_app import app


@app.task(name="hebdo.send_pending")
def send_pending(edition_id: int) -> dict[str, int]:
    """Send the edition's due rows until none is left to claim."""
    report = dispatch.send_pending(runtime.sessions(), runtime.settings(), edition_id)
    return {"sent": report.sent, "retried": report.retried, "failed": report.failed}


@app.task(name="hebdo.dispatch_due")
def dispatch_due() -> list[int]:
    """Start editions whose time has come and pick up rows no worker is handling."""
    settings = runtime.settings()
    factory = runtime.sessions()
    with factory() as session, session.begin():
        scheduling.start_due(
            session,
            base_url=settings.base_url,
            templates_path=settings.email_templates_path,
            batch_size=settings.batch_size,
        )
    with factory() as session:
        edition_ids = sending.editions_with_work(session)
    for edition_id in edition_ids:
        send_pending.delay(edition_id)
    return edition_ids


def enqueue_send(edition_id: int, batches: int, workers: int = 4) -> None:
    """Hand an edition to the workers: one task per worker slot, each loops over batches."""
    for _ in range(max(1, min(batches, workers))):
        send_pending.delay(edition_id)
