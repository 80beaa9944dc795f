"""Scheduling: weekly slots across DST changes, and the beat sweep with a moved clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import cast

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.models import Delivery, DeliveryStatus, Edition, EditionStatus, Newsletter
from service.sending import controls, outbox, schedule
from tests import factories


def _letter(weekday: int = 5, at: time = time(8, 0), zone: str = "Europe/Paris") -> Newsletter:
    return Newsletter(send_weekday=weekday, send_time=at, timezone=zone)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # Saturday 08:00 in Paris is 07:00Z in winter and 06:00Z in summer.
        ("2025-01-15T12:00:00+00:00", "2025-01-18T07:00:00+00:00"),
        ("2025-06-11T12:00:00+00:00", "2025-06-14T06:00:00+00:00"),
        # The last winter Saturday before the change of 2025-03-30, then the first summer one.
        ("2025-03-27T00:00:00+00:00", "2025-03-29T07:00:00+00:00"),
        ("2025-03-29T07:00:00+00:00", "2025-04-05T06:00:00+00:00"),
        # The last summer Saturday before the change of 2025-10-26, then the first winter one.
        ("2025-10-22T00:00:00+00:00", "2025-10-25T06:00:00+00:00"),
        ("2025-10-25T06:00:01+00:00", "2025-11-01T07:00:00+00:00"),
        # Saturday morning, an hour before the slot: this very day.
        ("2025-01-18T06:00:00+00:00", "2025-01-18T07:00:00+00:00"),
        # A Saturday night in Paris that is still Saturday evening in UTC: next week.
        ("2025-01-18T23:30:00+00:00", "2025-01-25T07:00:00+00:00"),
    ],
)
def test_next_slot_is_the_wall_clock_time_in_the_newsletters_zone(
    after: str, expected: str
) -> None:
    assert schedule.next_slot(_letter(), _utc(after)) == _utc(expected)


def test_next_slot_on_the_days_of_the_change_itself() -> None:
    sunday = 6
    # 08:00 on the spring-forward Sunday is already summer time.
    assert schedule.next_slot(_letter(sunday), _utc("2025-03-29T12:00Z")) == _utc(
        "2025-03-30T06:00Z"
    )
    # 02:30 does not exist that night: it lands on 03:30 summer time, one real hour after 01:30.
    skipped = schedule.next_slot(_letter(sunday, time(2, 30)), _utc("2025-03-29T12:00Z"))
    assert skipped == _utc("2025-03-30T01:30Z")
    # 02:30 happens twice on the fall-back Sunday: the first one (summer time) is meant.
    repeated = schedule.next_slot(_letter(sunday, time(2, 30)), _utc("2025-10-25T12:00Z"))
    assert repeated == _utc("2025-10-26T00:30Z")
    assert schedule.next_slot(_letter(sunday), _utc("2025-10-25T12:00Z")) == _utc(
        "2025-10-26T07:00Z"
    )


def test_next_slot_follows_other_zones_and_their_own_change_dates() -> None:
    # New York changes on 2025-03-09, three weeks before Paris.
    monday = 0
    letter = _letter(monday, time(7, 0), "America/New_York")
    assert schedule.next_slot(letter, _utc("2025-03-04T00:00Z")) == _utc("2025-03-10T11:00Z")
    assert schedule.next_slot(letter, _utc("2025-02-25T00:00Z")) == _utc("2025-03-03T12:00Z")


def _start(session: Session, settings: Settings, now: datetime) -> list[controls.SendStarted]:
    return schedule.start_due(
        session,
        base_url=settings.base_url,
        templates_path=settings.email_templates_path,
        batch_size=10,
        now=now,
    )


def _sweep(session: Session, settings: Settings, now: datetime) -> schedule.DueWork:
    return schedule.sweep(
        session,
        base_url=settings.base_url,
        templates_path=settings.email_templates_path,
        batch_size=10,
        now=now,
    )


def test_a_scheduled_edition_starts_once_its_time_has_come(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    factories.readers(session, letter, 3)
    edition = factories.edition(session, letter)
    now = _utc("2025-01-15T12:00Z")

    when = schedule.schedule(session, edition, now=now)

    assert when == _utc("2025-01-18T07:00Z")
    assert edition.status == EditionStatus.SCHEDULED
    assert edition.rendered_html is None  # frozen at send time, not when scheduled
    assert _start(session, settings, now=when - timedelta(seconds=1)) == []
    assert edition.status == EditionStatus.SCHEDULED

    started = _start(session, settings, now=when + timedelta(seconds=14))

    assert [(s.edition_id, s.recipients) for s in started] == [(edition.id, 3)]
    # The cast widens what mypy still holds from the asserts above; _start changed the row.
    assert cast(EditionStatus, edition.status) == EditionStatus.SENDING
    assert edition.rendered_html is not None
    assert edition.send_started_at == when + timedelta(seconds=14)
    assert outbox.progress(session, edition.id).queued == 3
    # The next tick finds nothing more to start.
    assert _start(session, settings, now=when + timedelta(seconds=29)) == []


def test_a_sweep_says_when_an_edition_falls_due_before_the_next_one(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    factories.readers(session, letter, 2)
    soon, later = factories.edition(session, letter), factories.edition(session, letter)
    now = _utc("2025-01-15T12:00Z")
    schedule.schedule(session, soon, now + timedelta(seconds=40), now=now)
    schedule.schedule(session, later, now + timedelta(hours=1), now=now)

    # Beyond the next tick: nothing to look ahead for yet.
    assert _sweep(session, settings, now).next_start_in is None
    # A tick 10.5 s before the edition's time: the beat sweeps again at that time (the
    # worker task enqueues itself with that countdown) instead of up to 15 s late.
    work = _sweep(session, settings, now + timedelta(seconds=29.5))
    assert work.started == []
    assert work.next_start_in == pytest.approx(10.5)
    # At its time it starts; the one an hour away is not looked ahead for.
    work = _sweep(session, settings, now + timedelta(seconds=40))
    assert [s.edition_id for s in work.started] == [soon.id]
    assert work.next_start_in is None
    assert later.status == EditionStatus.SCHEDULED


def test_reschedule_and_unschedule_until_sending_starts(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    factories.readers(session, letter, 2)
    edition = factories.edition(session, letter)
    now = _utc("2025-03-01T10:00Z")

    schedule.schedule(session, edition, _utc("2025-03-08T09:00+01:00"), now=now)
    assert edition.scheduled_at == _utc("2025-03-08T08:00Z")
    schedule.schedule(session, edition, _utc("2025-03-09T18:30+01:00"), now=now)
    assert edition.scheduled_at == _utc("2025-03-09T17:30Z")
    assert _start(session, settings, now=_utc("2025-03-08T12:00Z")) == []

    schedule.unschedule(session, edition)
    # The cast widens what mypy still holds from the asserts above; unschedule changed the row.
    scheduled_at = cast(datetime | None, edition.scheduled_at)
    assert (edition.status, scheduled_at) == (EditionStatus.DRAFT, None)
    assert _start(session, settings, now=_utc("2025-03-10T00:00Z")) == []
    with pytest.raises(outbox.SendError, match="not scheduled"):
        schedule.unschedule(session, edition)

    schedule.schedule(session, edition, _utc("2025-03-09T18:30+01:00"), now=now)
    assert len(_start(session, settings, now=_utc("2025-03-09T17:30Z"))) == 1
    with pytest.raises(outbox.SendError, match="can no longer be scheduled"):
        schedule.schedule(session, edition, _utc("2025-03-20T08:00Z"), now=now)
    with pytest.raises(outbox.SendError, match="not scheduled"):
        schedule.unschedule(session, edition)
    assert edition.status == EditionStatus.SENDING


def test_schedule_refuses_times_without_zone_or_well_in_the_past(
    backend: str, session: Session
) -> None:
    edition = factories.edition(session, factories.newsletter(session))
    now = _utc("2025-03-01T10:00Z")

    with pytest.raises(schedule.ScheduleError, match="time zone"):
        schedule.schedule(session, edition, datetime(2025, 3, 8, 8, 0), now=now)  # noqa: DTZ001
    with pytest.raises(schedule.ScheduleError, match="in the past"):
        schedule.schedule(session, edition, now - timedelta(hours=1), now=now)
    assert edition.status == EditionStatus.DRAFT
    # A few seconds late is "now": the next tick sends it.
    assert schedule.schedule(session, edition, now - timedelta(seconds=5), now=now) < now


def test_the_sweep_starts_resumes_hands_out_retries_and_finishes(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    factories.readers(session, letter, 4)
    now = _utc("2025-05-02T08:00Z")
    due, relay_paused, editor_paused, retrying, done = (
        factories.edition(session, letter) for _ in range(5)
    )
    schedule.schedule(session, due, now - timedelta(seconds=30), now=now)
    for edition in (relay_paused, editor_paused, retrying, done):
        controls.begin(
            session,
            edition,
            base_url=settings.base_url,
            templates_path=settings.email_templates_path,
            batch_size=10,
            now=now - timedelta(minutes=5),
        )
    controls.pause_for_relay(session, relay_paused, "connection refused", now=now)
    assert relay_paused.resume_at == now + timedelta(seconds=controls.RELAY_RETRY_MAX_SECONDS)
    controls.pause(session, editor_paused)
    # Every row of `retrying` waits for a retry in two minutes; `done` has gone out entirely.
    session.execute(
        update(Delivery)
        .where(Delivery.edition_id == retrying.id)
        .values(next_attempt_at=now + timedelta(minutes=2))
    )
    session.execute(
        update(Delivery)
        .where(Delivery.edition_id == done.id)
        .values(status=DeliveryStatus.SENT, sent_at=now)
    )

    first = _sweep(session, settings, now)

    assert [s.edition_id for s in first.started] == [due.id]
    assert first.resumed == []
    assert first.pending == []
    assert first.finished == [done.id]
    assert done.status == EditionStatus.SENT

    later = now + timedelta(minutes=6)
    second = _sweep(session, settings, later)

    assert second.started == []
    assert [(s.edition_id, s.recipients) for s in second.resumed] == [(relay_paused.id, 4)]
    # The cast widens what mypy still holds from the assert above; the sweep changed the row.
    resume_at = cast(datetime | None, relay_paused.resume_at)
    assert (relay_paused.status, resume_at) == (EditionStatus.SENDING, None)
    # `due` still has its rows queued and `retrying`'s retries are due now.
    assert sorted(second.pending) == sorted([due.id, retrying.id])
    # An editor's pause is never lifted by the beat.
    assert editor_paused.status == EditionStatus.PAUSED
    assert editor_paused.resume_at is None


def test_relay_pauses_wait_longer_as_the_outage_lasts(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    factories.readers(session, letter, 2)
    edition = factories.edition(session, letter)
    start = _utc("2025-05-02T08:00:00Z")
    controls.begin(
        session,
        edition,
        base_url=settings.base_url,
        templates_path=settings.email_templates_path,
        batch_size=10,
        now=start,
    )
    waits = []
    now = start
    for _ in range(6):
        assert controls.pause_for_relay(session, edition, "connection refused", now=now)
        assert edition.resume_at is not None
        assert edition.status_detail.startswith(
            "paused: SMTP relay unavailable (connection refused)"
        )
        waits.append((edition.resume_at - now).total_seconds())
        now = edition.resume_at
        assert [s.edition_id for s in controls.resume_due(session, batch_size=10, now=now)] == [
            edition.id
        ]

    assert waits == [30, 30, 60, 120, 240, 300]
    # A message accepted meanwhile ends the outage: the next pause is short again.
    first = session.scalars(select(Delivery).where(Delivery.edition_id == edition.id)).first()
    assert first is not None
    first.status, first.sent_at = DeliveryStatus.SENT, now
    controls.pause_for_relay(session, edition, "connection refused", now=now + timedelta(seconds=1))
    assert edition.resume_at == now + timedelta(seconds=31)


def test_pause_resume_and_cancel_follow_the_state_machine(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    factories.readers(session, letter, 3)
    edition = factories.edition(session, letter)
    with pytest.raises(outbox.SendError, match="only a sending edition"):
        controls.pause(session, edition)
    factories.begin_sending(session, settings, edition, batch_size=10)
    controls.pause_for_relay(session, edition, "connection refused")
    # An editor pausing a send that paused itself keeps it paused for good.
    controls.pause(session, edition)
    assert (edition.status, edition.resume_at) == (EditionStatus.PAUSED, None)
    assert edition.status_detail == "paused by an editor"
    assert controls.resume(session, edition, batch_size=500).recipients == 3
    with pytest.raises(outbox.SendError, match="only a paused edition"):
        controls.resume(session, edition, batch_size=500)

    assert controls.cancel(session, edition) == 3
    assert edition.status == EditionStatus.CANCELLED
    assert outbox.progress(session, edition.id).cancelled == 3
    with pytest.raises(outbox.SendError, match="already cancelled"):
        controls.cancel(session, edition)
    assert session.scalar(select(Edition.status).where(Edition.id == edition.id)) == (
        EditionStatus.CANCELLED
    )
