"""Confirmation-mail tasks: send queued confirmations; find the due ones on a schedule."""

from __future__ import annotations

from service.audience import confirmations
from worker import runtime
from worker.celery_app import app

WORKERS = 2  # tasks per enqueue: the shared rate limit, not the task count, sets the pace


@app.task(name="hebdo.send_confirmations")
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


@app.task(name="hebdo.confirmations_due")
def confirmations_due() -> list[int]:
    """Hand out confirmations left queued (a crash, a relay outage, a temporary refusal)."""
    with runtime.sessions()() as session:
        due = confirmations.due_newsletters(session)
    for newsletter_id in due:
        send_confirmations.delay(newsletter_id)
    return due


def enqueue_confirmations(broker_url: str, newsletter_id: int, workers: int = WORKERS) -> None:
    """Ask the workers to send this newsletter's queued confirmations (after the commit)."""
    with app.connection_for_write(broker_url) as connection:
        for _ in range(max(1, workers)):
            send_confirmations.apply_async((newsletter_id,), connection=connection)
