"""`hebdo editions schedule|unschedule|pause|resume|cancel` on a real instance and broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.config import Settings
from service.models import Edition, EditionStatus
from tests import factories
from worker.celery_app import app as celery_app


def _hebdo(env: dict[str, str], *args: str, ok: bool = True) -> str:
    result = CliRunner(env=env).invoke(cli, list(args))
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def _edition(sessions: sessionmaker[Session], edition_id: int) -> Edition:
    with sessions() as session:
        found = session.get(Edition, edition_id)
        assert found is not None
        return found


def _queued_sends(broker_url: str) -> list[int]:
    """Take every message off the broker's hebdo queue; the editions they ask to send."""
    sent_for = []
    with celery_app.connection_for_read(broker_url) as connection:
        channel: Any = connection.default_channel
        while (message := channel.basic_get("hebdo", no_ack=True)) is not None:
            args, _kwargs, _embed = message.decode()
            sent_for.append(args[0])
    return sent_for


def test_schedule_reschedule_and_unschedule_from_the_command_line(
    backend: str, env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        edition_id = factories.edition(session, factories.newsletter(session)).id
    ident = str(edition_id)

    out = _hebdo(env, "editions", "schedule", ident, "--at", "2031-03-29T08:00+01:00")
    assert "scheduled for Sat 2031-03-29 08:00 Europe/Paris (2031-03-29 07:00Z)" in out
    # The Saturday after the change to summer time: same wall clock, an hour earlier in UTC.
    out = _hebdo(env, "editions", "schedule", ident, "--at", "2031-04-05T06:00Z")
    assert "Sat 2031-04-05 08:00 Europe/Paris (2031-04-05 06:00Z)" in out
    assert _edition(sessions, edition_id).scheduled_at == datetime(2031, 4, 5, 6, tzinfo=UTC)

    out = _hebdo(env, "editions", "schedule", ident, "--next-slot")
    found = _edition(sessions, edition_id)
    assert found.status == EditionStatus.SCHEDULED
    assert found.scheduled_at is not None
    assert found.scheduled_at.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ") in out

    out = _hebdo(env, "editions", "schedule", ident, "--at", "2031-03-29T08:00", ok=False)
    assert "time zone" in out
    out = _hebdo(env, "editions", "schedule", ident, "--at", "samedi", ok=False)
    assert "not an ISO 8601 time" in out
    out = _hebdo(
        env, "editions", "schedule", ident, "--at", "2031-03-29T08:00Z", "--next-slot", ok=False
    )
    assert "not both" in out

    assert "is a draft again" in _hebdo(env, "editions", "unschedule", ident)
    assert _edition(sessions, edition_id).status == EditionStatus.DRAFT
    assert "not scheduled" in _hebdo(env, "editions", "unschedule", ident, ok=False)
    assert "no edition with id 999" in _hebdo(env, "editions", "pause", "999", ok=False)


def test_pause_resume_and_cancel_from_the_command_line(
    backend: str, env: dict[str, str], settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 5)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=2)
        edition_id = edition.id
    ident = str(edition_id)

    assert "with 5 messages left" in _hebdo(env, "editions", "pause", ident)
    assert _edition(sessions, edition_id).status == EditionStatus.PAUSED
    assert _queued_sends(settings.broker_url) == []

    assert "5 messages left" in _hebdo(env, "editions", "resume", ident)
    assert _edition(sessions, edition_id).status == EditionStatus.SENDING
    # One task per batch of the instance's batch size (200 here): one is enough.
    assert _queued_sends(settings.broker_url) == [edition_id]
    assert "only a paused edition" in _hebdo(env, "editions", "resume", ident, ok=False)

    out = _hebdo(env, "editions", "cancel", ident)
    assert "5 messages will not go out, 0 already sent" in out
    assert _edition(sessions, edition_id).status == EditionStatus.CANCELLED
    assert "already cancelled" in _hebdo(env, "editions", "cancel", ident, ok=False)
