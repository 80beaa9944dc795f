"""The edition lifecycle: the one table of status transitions.

    draft ⇄ scheduled → sending ⇄ paused → sent
    (draft, scheduled, sending and paused may all be cancelled)

`move` is the only code that assigns `edition.status`; the operations that decide a
move (controls, schedule, outbox) check their own preconditions first and say in the
reader's words why one is refused, so `IllegalTransition` means a bug, not bad input.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.models import Edition, EditionStatus

DRAFT = EditionStatus.DRAFT
SCHEDULED = EditionStatus.SCHEDULED
SENDING = EditionStatus.SENDING
PAUSED = EditionStatus.PAUSED
SENT = EditionStatus.SENT
CANCELLED = EditionStatus.CANCELLED

# Content can still change (and the send be scheduled) only before sending starts.
EDITABLE: frozenset[EditionStatus] = frozenset({DRAFT, SCHEDULED})
FINAL: frozenset[EditionStatus] = frozenset({SENT, CANCELLED})

TRANSITIONS: Mapping[EditionStatus, frozenset[EditionStatus]] = {
    DRAFT: frozenset({SCHEDULED, SENDING, CANCELLED}),
    SCHEDULED: frozenset({SCHEDULED, DRAFT, SENDING, CANCELLED}),  # rescheduling stays
    SENDING: frozenset({SENDING, PAUSED, SENT, CANCELLED}),
    PAUSED: frozenset({PAUSED, SENDING, CANCELLED}),  # pausing again keeps it paused
    SENT: frozenset(),
    CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    """A move the table does not allow: the caller skipped its own check."""


def is_editable(edition: Edition) -> bool:
    """May the edition's content still change?"""
    return edition.status in EDITABLE


def can_move(edition: Edition, to: EditionStatus) -> bool:
    """Does the table allow this move from the edition's current status?"""
    return to in TRANSITIONS[edition.status]


def move(edition: Edition, to: EditionStatus, detail: str | None = None) -> None:
    """Move the edition to `to`, with a new status detail unless `detail` is None."""
    if not can_move(edition, to):
        raise IllegalTransition(f"edition {edition.number}: {edition.status.value} -> {to.value}")
    edition.status = to
    if detail is not None:
        edition.status_detail = detail
