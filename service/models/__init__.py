"""The data model, one module per aggregate."""

from service.models._types import utcnow
from service.models.access import ApiToken, WebhookDelivery, WebhookEndpoint, WebhookStatus
from service.models.audit import AuditEntry
from service.models.confirmation import ConfirmationMail, ConfirmationStatus
from service.models.delivery import Delivery, DeliveryStatus
from service.models.edition import Edition, EditionStatus, NewsItem
from service.models.editor import Editor, EditorNewsletter, EditorRole, EditorSession
from service.models.event import Actor, Event, EventKind
from service.models.newsletter import Newsletter
from service.models.ratelimit import RateWindow
from service.models.subscriber import (
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    Tag,
)

__all__ = [
    "Actor",
    "ApiToken",
    "AuditEntry",
    "ConfirmationMail",
    "ConfirmationStatus",
    "Delivery",
    "DeliveryStatus",
    "Edition",
    "EditionStatus",
    "Editor",
    "EditorNewsletter",
    "EditorRole",
    "EditorSession",
    "Event",
    "EventKind",
    "NewsItem",
    "Newsletter",
    "RateWindow",
    "Subscriber",
    "SubscriberStatus",
    "Subscription",
    "SubscriptionStatus",
    "Suppression",
    "SuppressionReason",
    "Tag",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookStatus",
    "utcnow",
]
