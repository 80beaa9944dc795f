"""The JSON shapes of /api/v1: request bodies, query strings and answers (pydantic v2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, StringConstraints

from service.sending.testsend import MAX_ADDRESSES
from service.web.api.core import Answer, QueryModel, Strict

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$")]
Email = Annotated[str, StringConstraints(min_length=1, max_length=320)]
Cursor = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,10}$")]
Limit = Annotated[int, Field(ge=1, le=200)]
Text200 = Annotated[str, StringConstraints(max_length=200)]
Language = Literal["fr", "en"]
SubscriptionState = Literal["pending", "confirmed", "unsubscribed"]


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31T23:59-23:59 is past year 9999 in UTC
        raise ValueError("the time is out of range") from exc


UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]
BULK_MAX = 1000
BULK_STATES = ("created", "existing", "skipped", "rejected")


# --- newsletters --------------------------------------------------------------------


class NewsletterOut(Answer):
    id: int
    slug: str
    name: str
    description: str
    language: str
    sender_name: str
    sender_email: str
    timezone: str
    tracking: bool


class NewsletterList(Answer):
    newsletters: list[NewsletterOut]


# --- subscribers ------------------------------------------------------------------


class SubscriptionOut(Answer):
    newsletter: str  # slug
    status: SubscriptionState
    consent_at: datetime | None
    consent_source: str
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


class SubscriberOut(Answer):
    id: int
    email: str
    name: str
    locale: str
    status: Literal["active", "bounced", "complained"]
    created_at: datetime
    tags: list[str]
    subscriptions: list[SubscriptionOut]


class SubscriberPage(Answer):
    subscribers: list[SubscriberOut]
    total: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class SubscriberQuery(QueryModel):
    newsletter: Slug | None = None
    status: SubscriptionState | None = None
    tag: Annotated[str, StringConstraints(min_length=1, max_length=80)] | None = None
    created_since: UtcTime | None = None
    cursor: Cursor | None = None
    limit: Limit = 50


class LookupQuery(QueryModel):
    email: Email


class SubscriberCreate(Strict):
    email: Email
    newsletter: Slug
    name: Text200 = ""
    locale: Language | None = None
    confirmed: bool = Field(
        False,
        description="False (the default): double opt-in, the reader is mailed a confirmation "
        "link. True: already confirmed elsewhere; needs consent_reason.",
    )
    consent_reason: Text200 | None = None
    tags: Annotated[
        list[Annotated[str, StringConstraints(max_length=80)]], Field(max_length=50)
    ] = Field(default_factory=list)


class SubscriberUpdate(Strict):
    name: Text200 | None = None
    locale: Language | None = None
    tags: (
        Annotated[list[Annotated[str, StringConstraints(max_length=80)]], Field(max_length=50)]
        | None
    ) = Field(None, description="The full set of tags (replaces the current ones).")


class Unsubscribe(Strict):
    newsletter: Slug
    reason: Text200 | None = None


class BulkRow(Strict):
    email: Email
    name: Text200 = ""
    locale: Language | None = None


class BulkCreate(Strict):
    newsletter: Slug
    confirmed: bool = False
    consent_reason: Text200 | None = None
    subscribers: Annotated[list[BulkRow], Field(min_length=1, max_length=BULK_MAX)]


class BulkRowResult(Answer):
    index: int
    email: str
    status: Literal["created", "existing", "skipped", "rejected"]
    reason: str = ""
    subscriber_id: int | None = None


class BulkReport(Answer):
    created: int
    existing: int
    skipped: int
    rejected: int
    confirmations_queued: int
    rows: list[BulkRowResult]


# --- suppressions -------------------------------------------------------------------


class SuppressionOut(Answer):
    id: int
    email: str
    newsletter: str | None
    reason: str
    detail: str
    created_at: datetime


class SuppressionPage(Answer):
    suppressions: list[SuppressionOut]
    next_cursor: str | None


class SuppressionQuery(QueryModel):
    newsletter: Slug | None = None
    cursor: Cursor | None = None
    limit: Limit = 50


class SuppressionCreate(Strict):
    email: Email
    newsletter: Slug | None = Field(None, description="None: every newsletter.")
    detail: Text200 = ""


# --- editions -----------------------------------------------------------------------

EditionState = Literal["draft", "scheduled", "sending", "paused", "sent", "cancelled"]


class EditionSummary(Answer):
    id: int
    newsletter: str
    number: int
    title: str
    subject: str
    status: EditionState
    status_detail: str
    scheduled_at: datetime | None
    send_started_at: datetime | None
    sent_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EditionOut(EditionSummary):
    document: dict[str, Any] = Field(description="The edition document (`hebdo editions load`).")


class EditionList(Answer):
    editions: list[EditionSummary]


class Preview(Answer):
    subject: str
    html: str
    text: str


class TestSend(Strict):
    addresses: Annotated[list[Email], Field(min_length=1, max_length=MAX_ADDRESSES)]


class TestSendResult(Answer):
    sent: list[str]
    failed: dict[str, str]


class ScheduleBody(Strict):
    at: UtcTime | None = Field(
        None, description="When, with its UTC offset; null: the newsletter's next weekly slot."
    )


class Progress(Answer):
    status: EditionState
    detail: str
    queued: int
    sending: int
    sent: int
    failed: int
    cancelled: int
    total: int
    resume_at: datetime | None


class Results(Answer):
    """The figures `hebdo editions results --json` prints."""

    model_config = ConfigDict(extra="allow")


class EventOut(Answer):
    id: int
    kind: Literal["open", "click", "unsubscribe", "feedback", "bounce", "complaint"]
    created_at: datetime
    subscriber_id: int | None
    delivery_id: int | None
    value: str | None
    link_index: int | None
    actor: Literal["human", "machine"] | None


class EventPage(Answer):
    events: list[EventOut]
    next_cursor: str | None


class EventQuery(QueryModel):
    kind: Literal["open", "click", "unsubscribe", "feedback", "bounce", "complaint"] | None = None
    cursor: Cursor | None = None
    limit: Limit = 100
