"""Confirmation-mail tasks: send queued confirmations; find the due ones on a schedule."""

from __future__ import annotations

from service import queue
from service.audience import confirmations
from worker import runtime
from worker.celery_app import app


@app.task(name=queue.SEND_CONFIRMATIONS)
def send_confirmations(newsletter_id: int) -> dict[str, int]:
    """Send the newsletter's queued confirmation mails until none is due."""
    report = confirmations.send_queued(
        runtime.sessions(),
        runtime.settings(),
        newsletter_id,
        limiter=runtime.limiter(),
        connections=runtime.connection_cap(),
    )
    return {"sent": report.sent, "retried": report.retried, "failed": report.failed}


@app.task(name=queue.CONFIRMATIONS_DUE)
def confirmations_due() -> list[int]:
    """Hand out confirmations left queued (a crash, a relay outage, a temporary refusal)."""
    with runtime.sessions()() as session:
        due = confirmations.due_newsletters(session)
    for newsletter_id in due:
        send_confirmations.delay(newsletter_id)
    return due
