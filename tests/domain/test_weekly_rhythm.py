"""The weekly rhythm: a ready "next issue" is scheduled to the next slot by beat, and the
dashboard's outlook warns a day before a slot that nothing is ready for. Fixed clocks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import queue
from service.config import Settings
from service.models import AuditEntry, Edition, EditionStatus, NewsItem
from service.sending import schedule
from tests import factories
from worker.celery_app import celery_config
from worker.tasks import sending as sending_tasks

# Thursday 5 December 2024, 09:00 UTC: the Paris slot (Saturday 08:00) is 1 day 22 h away.
THURSDAY = datetime(2024, 12, 5, 9, 0, tzinfo=UTC)
SATURDAY_SLOT = datetime(2024, 12, 7, 7, 0, tzinfo=UTC)


def test_a_ready_next_issue_is_scheduled_to_the_next_slot_by_beat(
    backend: str, session: Session
) -> None:
    letter = factories.newsletter(session)
    marked = factories.edition(session, letter)
    other = factories.edition(session, letter)
    schedule.mark_next_issue(session, marked)
    session.commit()

    done = schedule.schedule_next_issues(session, now=THURSDAY)
    session.commit()

    assert done == [marked.id]
    session.refresh(marked)
    assert marked.status == EditionStatus.SCHEDULED
    assert marked.scheduled_at == SATURDAY_SLOT
    assert marked.is_next_issue is False  # back to draft later, it is not rescheduled
    session.refresh(other)
    assert other.status == EditionStatus.DRAFT
    entry = session.scalars(select(AuditEntry)).one()
    assert (entry.actor, entry.action, entry.object_id) == (
        "beat",
        "edition.schedule",
        str(marked.id),
    )
    assert json.loads(entry.detail)["at"] == SATURDAY_SLOT.isoformat()
    # The next tick finds nothing more to do.
    assert schedule.schedule_next_issues(session, now=THURSDAY + timedelta(minutes=1)) == []


def test_a_next_issue_that_is_not_ready_waits_and_says_why(session: Session) -> None:
    letter = factories.newsletter(session)
    edition = factories.edition(session, letter)
    edition.items = []
    edition.subject = ""
    schedule.mark_next_issue(session, edition)
    session.commit()

    assert schedule.not_ready(edition) == ["it has no subject", "it has no news item"]
    assert schedule.schedule_next_issues(session, now=THURSDAY) == []
    assert edition.status == EditionStatus.DRAFT
    assert schedule.outlook(session, letter, now=SATURDAY_SLOT - timedelta(hours=3)).warn

    edition.subject = "Cette semaine"
    edition.items = [NewsItem(position=0, title="Une nouvelle", body="Le texte.")]
    session.commit()
    assert schedule.not_ready(edition) == []
    assert schedule.schedule_next_issues(session, now=THURSDAY) == [edition.id]


def test_one_next_issue_per_newsletter(session: Session) -> None:
    letter = factories.newsletter(session)
    first, second = factories.edition(session, letter), factories.edition(session, letter)
    other_letter = factories.newsletter(session, slug="weekly", language="en")
    elsewhere = factories.edition(session, other_letter, language="en")

    schedule.mark_next_issue(session, first)
    schedule.mark_next_issue(session, elsewhere)
    schedule.mark_next_issue(session, second)

    marked = set(session.scalars(select(Edition.id).where(Edition.is_next_issue.is_(True))))
    assert marked == {second.id, elsewhere.id}


def test_the_outlook_counts_down_and_warns_only_within_a_day_of_an_uncovered_slot(
    session: Session,
) -> None:
    letter = factories.newsletter(session)
    edition = factories.edition(session, letter)
    session.commit()

    far = schedule.outlook(session, letter, now=THURSDAY)
    assert far.slot == SATURDAY_SLOT
    assert far.left == timedelta(days=1, hours=22)
    assert not far.warn  # nothing ready, but more than a day to go

    near_time = SATURDAY_SLOT - timedelta(hours=23)
    assert schedule.outlook(session, letter, now=near_time).warn

    schedule.schedule(session, edition, None, now=near_time)
    session.commit()
    covered = schedule.outlook(session, letter, now=near_time)
    assert covered.covered
    assert not covered.warn


def test_a_ready_next_issue_covers_the_slot(session: Session) -> None:
    letter = factories.newsletter(session)
    schedule.mark_next_issue(session, factories.edition(session, letter))
    session.commit()

    assert not schedule.outlook(session, letter, now=SATURDAY_SLOT - timedelta(hours=2)).warn


def test_beat_runs_the_next_issue_task_every_minute(settings: Settings) -> None:
    entries = celery_config(settings)["beat_schedule"].values()
    [entry] = [e for e in entries if e["task"] == queue.SCHEDULE_NEXT_ISSUES]
    assert entry["schedule"] == 60.0
    assert sending_tasks.schedule_next_issues.name == queue.SCHEDULE_NEXT_ISSUES
