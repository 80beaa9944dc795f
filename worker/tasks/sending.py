"""Sending tasks: send an edition's due rows; find due work on a schedule."""

from __future__ import annotations

from service import queue
from service.broker import CeleryQueue
from service.sending import loop, schedule
from worker import runtime
from worker.celery_app import app


@app.task(name=queue.SEND_PENDING)
def send_pending(edition_id: int) -> dict[str, int]:
    """Send the edition's due rows until none is left to claim."""
    report = loop.send_pending(
        runtime.sessions(),
        runtime.settings(),
        edition_id,
        limiter=runtime.limiter(),
        connections=runtime.connection_cap(),
    )
    return {"sent": report.sent, "retried": report.retried, "failed": report.failed}


@app.task(name=queue.DISPATCH_DUE)
def dispatch_due() -> list[int]:
    """Start, resume and finish editions from the database, and hand their rows to workers."""
    settings = runtime.settings()
    with runtime.sessions()() as session, session.begin():
        work = schedule.sweep(
            session,
            base_url=settings.base_url,
            templates_path=settings.email_templates_path,
            batch_size=settings.batch_size,
        )
    # Enqueued after the commit, so a worker never looks for rows it cannot see yet.
    workers = CeleryQueue(settings.broker_url)
    for started in (*work.started, *work.resumed):
        workers.send_edition(started.edition_id, started.batches)
    for edition_id in work.pending:
        send_pending.delay(edition_id)
    if work.next_start_in is not None:
        # An edition is due before the next tick: sweep again at its time. A sweep more
        # than needed does nothing (start_due takes each edition once).
        dispatch_due.apply_async(countdown=work.next_start_in)
    return [s.edition_id for s in (*work.started, *work.resumed)] + work.pending


@app.task(name=queue.SCHEDULE_NEXT_ISSUES)
def schedule_next_issues() -> list[int]:
    """Schedule each ready edition marked "next issue" to its newsletter's next weekly slot."""
    with runtime.sessions()() as session, session.begin():
        return schedule.schedule_next_issues(session)
