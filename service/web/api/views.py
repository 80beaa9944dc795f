"""/api/v1 endpoints: each translates JSON to the same domain calls as the pages and the CLI."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from service import newsletters
from service.access.tokens import Scope
from service.addresses import normalise
from service.audience import imports, preferences, subscribers, subscriptions
from service.broker import CeleryQueue
from service.editions import schema, store
from service.models import (
    Edition,
    EventKind,
    Newsletter,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from service.numbers import DB_INT_MAX
from service.sending import controls, outbox, testsend
from service.sending import schedule as scheduling
from service.team import audit
from service.text import one_line
from service.tracking import events, results
from service.web.api import schemas as s
from service.web.api.core import (
    ApiProblem,
    actor,
    check_newsletter,
    current_token,
    json_body,
    operation,
)
from service.web.deps import db, settings

logger = logging.getLogger(__name__)
EDITION_DOCUMENT = schema.EditionDocument.model_json_schema(
    ref_template="#/components/schemas/{model}"
)


# --- helpers ------------------------------------------------------------------------


def _newsletter(slug: str) -> Newsletter:
    try:
        found = newsletters.get_by_slug(db(), slug)
    except newsletters.UnknownNewsletter as exc:
        raise ApiProblem("not-found", f"no newsletter {slug[:80]!r}") from exc
    check_newsletter(found.id)
    return found


def _cursor(value: str | None) -> int | None:
    return None if value is None else min(int(value), DB_INT_MAX + 1)


def _newsletter_out(letter: Newsletter) -> s.NewsletterOut:
    return s.NewsletterOut(
        id=letter.id,
        slug=letter.slug,
        name=letter.name,
        description=letter.description,
        language=letter.language,
        sender_name=letter.sender_name,
        sender_email=letter.sender_email,
        timezone=letter.timezone,
        tracking=letter.tracking,
    )


def _subscriber_out(person: Subscriber) -> s.SubscriberOut:
    token = current_token()
    return s.SubscriberOut(
        id=person.id,
        email=person.email,
        name=person.name,
        locale=person.locale,
        status=person.status.value,
        created_at=person.created_at,
        tags=sorted(tag.name for tag in person.tags),
        subscriptions=[
            s.SubscriptionOut(
                newsletter=item.newsletter.slug,
                status=item.status.value,
                consent_at=item.consent_at,
                consent_source=item.consent_source,
                confirmed_at=item.confirmed_at,
                unsubscribed_at=item.unsubscribed_at,
            )
            for item in sorted(person.subscriptions, key=lambda sub: sub.newsletter_id)
            if token.newsletter_id is None or item.newsletter_id == token.newsletter_id
        ],
    )


def _load(ids: list[int]) -> dict[int, Subscriber]:
    query = (
        select(Subscriber)
        .where(Subscriber.id.in_(ids))
        .options(
            selectinload(Subscriber.subscriptions).selectinload(Subscription.newsletter),
            selectinload(Subscriber.tags),
        )
    )
    return {person.id: person for person in db().scalars(query)}


def _subscriber(subscriber_id: int) -> Subscriber:
    """The subscriber, or 404 (also for one outside the token's newsletter)."""
    person = db().get(Subscriber, subscriber_id)
    limit = current_token().newsletter_id
    if person is None or (
        limit is not None and all(sub.newsletter_id != limit for sub in person.subscriptions)
    ):
        raise ApiProblem("not-found", f"no subscriber {subscriber_id}")
    return person


def _enqueue_confirmations(newsletter_id: int) -> None:
    try:
        CeleryQueue(settings().broker_url).send_confirmations(newsletter_id)
    except Exception:  # the rows are queued; beat's sweep sends them even if this fails
        logger.exception("could not enqueue the confirmations of newsletter %s", newsletter_id)


# --- newsletters --------------------------------------------------------------------


@operation(
    "/newsletters",
    "GET",
    summary="List the newsletters the token sees",
    tag="newsletters",
    scope=Scope.READ,
    answer=s.NewsletterList,
)
def list_newsletters() -> s.NewsletterList:
    token = current_token()
    found = [
        letter
        for letter in newsletters.list_all(db())
        if token.newsletter_id is None or letter.id == token.newsletter_id
    ]
    return s.NewsletterList(newsletters=[_newsletter_out(letter) for letter in found])


@operation(
    "/newsletters/<slug>",
    "GET",
    summary="One newsletter",
    tag="newsletters",
    scope=Scope.READ,
    answer=s.NewsletterOut,
    problems=(404,),
)
def get_newsletter(slug: str) -> s.NewsletterOut:
    return _newsletter_out(_newsletter(slug))


# --- subscribers --------------------------------------------------------------------


@operation(
    "/subscribers",
    "GET",
    summary="List subscribers (newest first), filtered, with a cursor",
    tag="subscribers",
    scope=Scope.READ,
    answer=s.SubscriberPage,
    query=s.SubscriberQuery,
    problems=(404,),
)
def list_subscribers(query: s.SubscriberQuery) -> s.SubscriberPage:
    token = current_token()
    newsletter_id = token.newsletter_id
    if query.newsletter is not None:
        newsletter_id = _newsletter(query.newsletter).id
    filter_ = subscribers.SubscriberFilter(
        newsletter_id=newsletter_id,
        subscription_status=SubscriptionStatus(query.status) if query.status else None,
        tag=query.tag or "",
        created_since=query.created_since,
    )
    page = subscribers.search(
        db(), filter_, older_than=_cursor(query.cursor), page_size=query.limit
    )
    loaded = _load([row.id for row in page.rows])
    return s.SubscriberPage(
        subscribers=[_subscriber_out(loaded[row.id]) for row in page.rows if row.id in loaded],
        total=page.total,
        next_cursor=str(page.older) if page.older is not None else None,
    )


@operation(
    "/subscribers",
    "POST",
    summary="Subscribe an address (double opt-in unless confirmed with a consent reason)",
    tag="subscribers",
    scope=Scope.WRITE,
    answer=s.SubscriberOut,
    status=201,
    body=s.SubscriberCreate,
    statuses=(200,),
    problems=(404, 409),
)
def create_subscriber(body: s.SubscriberCreate) -> tuple[s.SubscriberOut, int]:
    letter = _newsletter(body.newsletter)
    if body.confirmed and not (body.consent_reason or "").strip():
        raise ApiProblem(
            "validation", errors=[("consent_reason", "a confirmed reader needs the consent reason")]
        )
    tags = [subscribers.clean_tag(name) for name in body.tags]
    report = imports.add_address(
        db(),
        letter,
        body.email,
        name=body.name,
        locale=body.locale,
        confirmed=body.confirmed,
        confirmed_reason=body.consent_reason,
        origin=f"API ({current_token().name})",
    )
    if report.rejected:
        raise ApiProblem("validation", errors=[("email", report.rejected[0].reason)])
    if report.skipped_rows:
        raise ApiProblem(
            "conflict",
            f"{report.skipped_rows[0].email} is {report.skipped_rows[0].reason}: "
            "the reader must opt in again themselves",
        )
    person = db().scalar(select(Subscriber).where(Subscriber.email == normalise(body.email)))
    assert person is not None
    for name in tags:
        tag = subscribers.find_or_create_tag(db(), name)
        if tag not in person.tags:
            person.tags.append(tag)
    audit.record(
        db(),
        actor(),
        "subscriber.create",
        object_type="subscriber",
        object_id=person.id,
        detail={"newsletter": letter.slug, "confirmed": body.confirmed},
    )
    db().commit()
    if report.confirmations_queued:
        _enqueue_confirmations(letter.id)
    return _subscriber_out(person), 201 if report.added else 200


@operation(
    "/subscribers/bulk",
    "POST",
    summary="Subscribe up to 1,000 addresses; each row is reported by its index",
    tag="subscribers",
    scope=Scope.WRITE,
    answer=s.BulkReport,
    body=s.BulkCreate,
    problems=(404,),
)
def bulk_create(body: s.BulkCreate) -> s.BulkReport:
    letter = _newsletter(body.newsletter)
    if body.confirmed and not (body.consent_reason or "").strip():
        raise ApiProblem(
            "validation", errors=[("consent_reason", "a confirmed import needs the consent reason")]
        )
    report, rows = imports.add_addresses(
        db(),
        letter,
        [(row.email, row.name, row.locale) for row in body.subscribers],
        confirmed=body.confirmed,
        confirmed_reason=body.consent_reason,
        origin=f"API ({current_token().name})",
    )
    counts = {key: sum(1 for row in rows if row.status == key) for key in s.BULK_STATES}
    audit.record(
        db(),
        actor(),
        "subscribers.import",
        object_type="newsletter",
        object_id=letter.id,
        detail={"via": "api", **counts},
    )
    db().commit()
    if report.confirmations_queued:
        _enqueue_confirmations(letter.id)
    return s.BulkReport(
        created=counts["created"],
        existing=counts["existing"],
        skipped=counts["skipped"],
        rejected=counts["rejected"],
        confirmations_queued=report.confirmations_queued,
        rows=[
            s.BulkRowResult(
                index=row.index,
                email=row.email,
                status=row.status,  # type: ignore[arg-type]
                reason=row.reason,
                subscriber_id=row.subscriber_id,
            )
            for row in rows
        ],
    )


@operation(
    "/subscribers/lookup",
    "GET",
    summary="Find a subscriber by address",
    tag="subscribers",
    scope=Scope.READ,
    answer=s.SubscriberOut,
    query=s.LookupQuery,
    problems=(404,),
)
def lookup_subscriber(query: s.LookupQuery) -> s.SubscriberOut:
    try:
        address = normalise(query.email)
    except ValueError as exc:
        raise ApiProblem("validation", errors=[("email", str(exc))]) from exc
    found = db().scalar(select(Subscriber.id).where(Subscriber.email == address))
    if found is None:
        raise ApiProblem("not-found", "no subscriber has this address")
    return _subscriber_out(_subscriber(found))


@operation(
    "/subscribers/<int:subscriber_id>",
    "GET",
    summary="One subscriber",
    tag="subscribers",
    scope=Scope.READ,
    answer=s.SubscriberOut,
    problems=(404,),
)
def get_subscriber(subscriber_id: int) -> s.SubscriberOut:
    return _subscriber_out(_subscriber(subscriber_id))


@operation(
    "/subscribers/<int:subscriber_id>",
    "PATCH",
    summary="Change a subscriber's name, language or tags",
    tag="subscribers",
    scope=Scope.WRITE,
    answer=s.SubscriberOut,
    body=s.SubscriberUpdate,
    problems=(404,),
)
def update_subscriber(subscriber_id: int, body: s.SubscriberUpdate) -> s.SubscriberOut:
    person = _subscriber(subscriber_id)
    if body.name is not None or body.locale is not None:
        preferences.update_profile(
            db(),
            person,
            name=body.name if body.name is not None else person.name,
            locale=body.locale or person.locale,
        )
    if body.tags is not None:
        try:
            names = sorted({subscribers.clean_tag(name) for name in body.tags})
        except subscribers.InvalidTag as exc:
            raise ApiProblem("validation", errors=[("tags", str(exc))]) from exc
        person.tags = [subscribers.find_or_create_tag(db(), name) for name in names]
    audit.record(
        db(),
        actor(),
        "subscriber.update",
        object_type="subscriber",
        object_id=person.id,
        detail={key: True for key, value in body.model_dump().items() if value is not None},
    )
    db().flush()
    return _subscriber_out(person)


@operation(
    "/subscribers/<int:subscriber_id>/unsubscribe",
    "POST",
    summary="Unsubscribe a subscriber from one newsletter",
    tag="subscribers",
    scope=Scope.WRITE,
    answer=s.SubscriberOut,
    body=s.Unsubscribe,
    problems=(404,),
)
def unsubscribe_subscriber(subscriber_id: int, body: s.Unsubscribe) -> s.SubscriberOut:
    person = _subscriber(subscriber_id)
    letter = _newsletter(body.newsletter)
    subscription = next(
        (sub for sub in person.subscriptions if sub.newsletter_id == letter.id), None
    )
    if subscription is None:
        raise ApiProblem("not-found", f"{person.email} is not subscribed to {letter.slug}")
    if subscriptions.unsubscribe(db(), subscription, reason=body.reason or "API"):
        audit.record(
            db(),
            actor(),
            "subscriber.unsubscribe",
            object_type="subscriber",
            object_id=person.id,
            detail={"newsletter": letter.slug},
        )
    return _subscriber_out(person)


@operation(
    "/subscribers/<int:subscriber_id>",
    "DELETE",
    summary="Erase a subscriber and their personal data",
    tag="subscribers",
    scope=Scope.WRITE,
    answer=None,
    status=204,
    problems=(404,),
)
def erase_subscriber(subscriber_id: int) -> tuple[Any, int]:
    person = _subscriber(subscriber_id)
    limit = current_token().newsletter_id
    if limit is not None and any(sub.newsletter_id != limit for sub in person.subscriptions):
        raise ApiProblem("forbidden", "the reader also reads newsletters this token cannot see")
    preferences.erase(db(), person)
    audit.record(
        db(), actor(), "subscriber.erase", object_type="subscriber", object_id=subscriber_id
    )
    return Response(status=204), 204


# --- suppressions -------------------------------------------------------------------


def _suppression_out(row: Suppression, slugs: dict[int, str]) -> s.SuppressionOut:
    return s.SuppressionOut(
        id=row.id,
        email=row.email,
        newsletter=slugs.get(row.newsletter_id) if row.newsletter_id is not None else None,
        reason=row.reason.value,
        detail=row.detail,
        created_at=row.created_at,
    )


def _slugs() -> dict[int, str]:
    return {letter.id: letter.slug for letter in newsletters.list_all(db())}


@operation(
    "/suppressions",
    "GET",
    summary="The suppression list, newest first",
    tag="suppressions",
    scope=Scope.READ,
    answer=s.SuppressionPage,
    query=s.SuppressionQuery,
    problems=(404,),
)
def list_suppressions(query: s.SuppressionQuery) -> s.SuppressionPage:
    statement = select(Suppression).order_by(Suppression.id.desc()).limit(query.limit + 1)
    newsletter_id = current_token().newsletter_id
    if query.newsletter is not None:
        newsletter_id = _newsletter(query.newsletter).id
    if newsletter_id is not None:
        statement = statement.where(
            (Suppression.newsletter_id == newsletter_id) | Suppression.newsletter_id.is_(None)
        )
    before = _cursor(query.cursor)
    if before is not None:
        statement = statement.where(Suppression.id < before)
    rows = list(db().scalars(statement))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    slugs = _slugs()
    return s.SuppressionPage(
        suppressions=[_suppression_out(row, slugs) for row in rows],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )


@operation(
    "/suppressions",
    "POST",
    summary="Suppress an address (for one newsletter, or every one)",
    tag="suppressions",
    scope=Scope.WRITE,
    answer=s.SuppressionOut,
    status=201,
    body=s.SuppressionCreate,
    problems=(404,),
)
def add_suppression(body: s.SuppressionCreate) -> s.SuppressionOut:
    newsletter_id = None
    if body.newsletter is not None:
        newsletter_id = _newsletter(body.newsletter).id
    elif current_token().newsletter_id is not None:
        raise ApiProblem("forbidden", "a token limited to a newsletter cannot suppress everywhere")
    try:
        address = normalise(body.email)
    except ValueError as exc:
        raise ApiProblem("validation", errors=[("email", str(exc))]) from exc
    row = subscriptions.suppress(
        db(),
        address,
        SuppressionReason.MANUAL,
        newsletter_id=newsletter_id,
        detail=one_line(body.detail, limit=200),
    )
    audit.record(
        db(),
        actor(),
        "suppression.add",
        object_type="suppression",
        object_id=row.id,
        detail={"newsletter": body.newsletter},
    )
    return _suppression_out(row, _slugs())


# --- editions -----------------------------------------------------------------------


def _edition(edition_id: int) -> Edition:
    found = db().get(Edition, edition_id)
    if found is None:
        raise ApiProblem("not-found", f"no edition {edition_id}")
    check_newsletter(found.newsletter_id)
    return found


def _summary_fields(edition: Edition) -> dict[str, Any]:
    return {
        "id": edition.id,
        "newsletter": edition.newsletter.slug,
        "number": edition.number,
        "title": edition.title,
        "subject": edition.subject,
        "status": edition.status.value,
        "status_detail": edition.status_detail,
        "scheduled_at": edition.scheduled_at,
        "send_started_at": edition.send_started_at,
        "sent_at": edition.sent_at,
        "created_at": edition.created_at,
        "updated_at": edition.updated_at,
    }


def _edition_out(edition: Edition) -> s.EditionOut:
    return s.EditionOut(**_summary_fields(edition), document=store.to_data(edition))


@operation(
    "/newsletters/<slug>/editions",
    "GET",
    summary="A newsletter's editions, newest first",
    tag="editions",
    scope=Scope.READ,
    answer=s.EditionList,
    problems=(404,),
)
def list_editions(slug: str) -> s.EditionList:
    letter = _newsletter(slug)
    found = db().scalars(
        select(Edition)
        .where(Edition.newsletter_id == letter.id)
        .order_by(Edition.number.desc())
        .limit(200)
    )
    return s.EditionList(editions=[s.EditionSummary(**_summary_fields(e)) for e in found])


@operation(
    "/newsletters/<slug>/editions",
    "POST",
    summary="Create a draft edition from the edition document (`hebdo editions load`)",
    tag="editions",
    scope=Scope.WRITE,
    answer=s.EditionOut,
    status=201,
    body_schema=EDITION_DOCUMENT,
    problems=(404,),
)
def create_edition(slug: str) -> tuple[s.EditionOut, int]:
    letter = _newsletter(slug)
    edition = store.create(db(), letter, json_body())
    audit.record(
        db(), actor(), "edition.create", object_type="edition", object_id=edition.id, detail={}
    )
    return _edition_out(edition), 201


@operation(
    "/editions/<int:edition_id>",
    "GET",
    summary="One edition: its state and its document",
    tag="editions",
    scope=Scope.READ,
    answer=s.EditionOut,
    problems=(404,),
)
def get_edition(edition_id: int) -> s.EditionOut:
    return _edition_out(_edition(edition_id))


@operation(
    "/editions/<int:edition_id>",
    "PUT",
    summary="Replace a draft's content with an edition document",
    tag="editions",
    scope=Scope.WRITE,
    answer=s.EditionOut,
    body_schema=EDITION_DOCUMENT,
    problems=(404, 409),
)
def update_edition(edition_id: int) -> s.EditionOut:
    edition = _edition(edition_id)
    data = json_body()
    store.apply_data(edition, data)
    db().flush()
    audit.record(
        db(), actor(), "edition.update", object_type="edition", object_id=edition.id, detail={}
    )
    return _edition_out(edition)


@operation(
    "/editions/<int:edition_id>/preview",
    "GET",
    summary="The edition rendered as subscribers get it (before personalisation)",
    tag="editions",
    scope=Scope.READ,
    answer=s.Preview,
    problems=(404,),
)
def preview_edition(edition_id: int) -> s.Preview:
    edition = _edition(edition_id)
    config = settings()
    rendered = store.render(
        edition, base_url=config.base_url, templates_path=config.email_templates_path
    )
    return s.Preview(subject=rendered.subject, html=rendered.html, text=rendered.text)


@operation(
    "/editions/<int:edition_id>/test-send",
    "POST",
    summary="Mail the edition, marked as a test, to a few addresses",
    tag="editions",
    scope=Scope.SEND,
    answer=s.TestSendResult,
    body=s.TestSend,
    problems=(404,),
)
def test_send(edition_id: int, body: s.TestSend) -> s.TestSendResult:
    edition = _edition(edition_id)
    try:
        report = testsend.send_test(db(), edition, body.addresses, settings())
    except testsend.BadTestAddresses as exc:
        raise ApiProblem("validation", errors=[("addresses", str(exc))]) from exc
    audit.record(
        db(),
        actor(),
        "edition.test_send",
        object_type="edition",
        object_id=edition.id,
        detail={"sent": len(report.sent), "failed": len(report.failed)},
    )
    return s.TestSendResult(sent=report.sent, failed=report.failed)


def _progress(edition: Edition) -> s.Progress:
    counts = outbox.progress(db(), edition.id)
    return s.Progress(
        status=edition.status.value,
        detail=edition.status_detail,
        queued=counts.queued,
        sending=counts.sending,
        sent=counts.sent,
        failed=counts.failed,
        cancelled=counts.cancelled,
        total=counts.total,
        resume_at=edition.resume_at,
    )


def _audit_control(edition: Edition, action: str, **detail: Any) -> None:
    audit.record(db(), actor(), action, object_type="edition", object_id=edition.id, detail=detail)


@operation(
    "/editions/<int:edition_id>/schedule",
    "POST",
    summary="Schedule (or reschedule) an edition",
    tag="editions",
    scope=Scope.SEND,
    answer=s.EditionSummary,
    body=s.ScheduleBody,
    problems=(404, 409),
)
def schedule_edition(edition_id: int, body: s.ScheduleBody) -> s.EditionSummary:
    edition = _edition(edition_id)
    when = scheduling.schedule(db(), edition, body.at)
    _audit_control(edition, "edition.schedule", at=when.isoformat())
    return s.EditionSummary(**_summary_fields(edition))


@operation(
    "/editions/<int:edition_id>/unschedule",
    "POST",
    summary="Take a scheduled edition back to draft",
    tag="editions",
    scope=Scope.SEND,
    answer=s.EditionSummary,
    problems=(404, 409),
)
def unschedule_edition(edition_id: int) -> s.EditionSummary:
    edition = _edition(edition_id)
    scheduling.unschedule(db(), edition)
    _audit_control(edition, "edition.unschedule")
    return s.EditionSummary(**_summary_fields(edition))


@operation(
    "/editions/<int:edition_id>/send",
    "POST",
    summary="Send now: snapshot the recipients and hand them to the workers",
    tag="editions",
    scope=Scope.SEND,
    answer=s.Progress,
    status=202,
    problems=(404, 409),
)
def send_edition(edition_id: int) -> tuple[s.Progress, int]:
    edition = _edition(edition_id)
    config = settings()
    started = controls.begin(
        db(),
        edition,
        base_url=config.base_url,
        templates_path=config.email_templates_path,
        batch_size=config.batch_size,
    )
    _audit_control(edition, "edition.send", recipients=started.recipients)
    db().commit()
    CeleryQueue(config.broker_url).send_edition(edition.id, started.batches)
    return _progress(edition), 202


@operation(
    "/editions/<int:edition_id>/pause",
    "POST",
    summary="Pause a send; messages in flight finish",
    tag="editions",
    scope=Scope.SEND,
    answer=s.Progress,
    problems=(404, 409),
)
def pause_edition(edition_id: int) -> s.Progress:
    edition = _edition(edition_id)
    controls.pause(db(), edition, reason="paused through the API")
    _audit_control(edition, "edition.pause")
    return _progress(edition)


@operation(
    "/editions/<int:edition_id>/resume",
    "POST",
    summary="Resume a paused send",
    tag="editions",
    scope=Scope.SEND,
    answer=s.Progress,
    problems=(404, 409),
)
def resume_edition(edition_id: int) -> s.Progress:
    edition = _edition(edition_id)
    config = settings()
    started = controls.resume(db(), edition, batch_size=config.batch_size)
    _audit_control(edition, "edition.resume")
    db().commit()
    CeleryQueue(config.broker_url).send_edition(edition.id, started.batches)
    return _progress(edition)


@operation(
    "/editions/<int:edition_id>/cancel",
    "POST",
    summary="Cancel a send (or a schedule) for good",
    tag="editions",
    scope=Scope.SEND,
    answer=s.Progress,
    problems=(404, 409),
)
def cancel_edition(edition_id: int) -> s.Progress:
    edition = _edition(edition_id)
    controls.cancel(db(), edition)
    _audit_control(edition, "edition.cancel")
    return _progress(edition)


@operation(
    "/editions/<int:edition_id>/progress",
    "GET",
    summary="Delivery counts of an edition",
    tag="editions",
    scope=Scope.READ,
    answer=s.Progress,
    problems=(404,),
)
def edition_progress(edition_id: int) -> s.Progress:
    return _progress(_edition(edition_id))


@operation(
    "/editions/<int:edition_id>/results",
    "GET",
    summary="What happened to an edition (`hebdo editions results --json`)",
    tag="editions",
    scope=Scope.READ,
    answer=s.Results,
    problems=(404,),
)
def edition_results(edition_id: int) -> dict[str, Any]:
    edition = _edition(edition_id)
    return results.as_json(results.edition_results(db(), edition.id))


@operation(
    "/editions/<int:edition_id>/events",
    "GET",
    summary="An edition's events, newest first, with a cursor",
    tag="editions",
    scope=Scope.READ,
    answer=s.EventPage,
    query=s.EventQuery,
    problems=(404,),
)
def edition_events(edition_id: int, query: s.EventQuery) -> s.EventPage:
    edition = _edition(edition_id)
    found = events.of_edition(
        db(),
        edition.id,
        before_id=_cursor(query.cursor),
        kind=EventKind(query.kind) if query.kind else None,
        limit=query.limit + 1,
    )
    more = len(found) > query.limit
    found = found[: query.limit]
    return s.EventPage(
        events=[
            s.EventOut(
                id=event.id,
                kind=event.kind.value,
                created_at=event.created_at,
                subscriber_id=event.subscriber_id,
                delivery_id=event.delivery_id,
                value=event.value,
                link_index=event.link_index,
                actor=event.actor.value if event.actor else None,
            )
            for event in found
        ],
        next_cursor=str(found[-1].id) if more and found else None,
    )
