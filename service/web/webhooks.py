"""Bounce and complaint webhooks of relays that report over HTTP (service.tracking.webhooks).

Each endpoint is off (404) until its secret is configured. A request that fails its
provider's check gets 403 and changes nothing; one that passes gets 200 with what
was recorded, including when the same report comes again (recorded once).
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable

from flask import Blueprint, Response, abort, jsonify, request
from sqlalchemy.exc import IntegrityError

from service.tracking import webhooks
from service.web.deps import db, settings
from service.web.extensions import csrf

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger(__name__)


def _body() -> bytes:
    if (request.content_length or 0) > webhooks.MAX_BODY:
        abort(413)
    return request.get_data(cache=False)[: webhooks.MAX_BODY + 1]


def _answer(reports: list[webhooks.Report]) -> Response:
    session = db()
    try:
        outcome = webhooks.apply(session, reports)
        session.commit()
    except IntegrityError:
        # The same report arrived twice at once: the other request recorded it.
        session.rollback()
        outcome = webhooks.Outcome(duplicates=len(reports))
    return jsonify(
        recorded=outcome.recorded, duplicates=outcome.duplicates, ignored=outcome.ignored
    )


def _checked(read: Callable[[], list[webhooks.Report]]) -> list[webhooks.Report]:
    try:
        return list(read())
    except webhooks.Forged as exc:
        log.warning("webhook refused: %s", exc)
        abort(403)
    except webhooks.Unreadable:
        abort(400)


@blueprint.post("/mailgun")
@csrf.exempt  # signed by the provider, not a browser form
def mailgun() -> Response:
    key = settings().mailgun_signing_key
    if not key:
        abort(404)
    body = _body()
    return _answer(_checked(lambda: webhooks.mailgun(body, key)))


@blueprint.post("/postmark")
@csrf.exempt
def postmark() -> Response:
    secret = settings().postmark_webhook_secret
    if not secret:
        abort(404)
    body, auth = _body(), request.headers.get("Authorization")
    return _answer(_checked(lambda: webhooks.postmark(body, auth, secret)))


@blueprint.post("/sendgrid")
@csrf.exempt
def sendgrid() -> Response:
    key = settings().sendgrid_public_key
    if not key:
        abort(404)
    body = _body()
    signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature")
    timestamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp")
    return _answer(_checked(lambda: webhooks.sendgrid(body, signature, timestamp, key)))


@blueprint.post("/ses")
@csrf.exempt
def ses() -> Response:
    config = settings()
    if not config.ses_topic_arns:
        abort(404)
    body = _body()
    results: list[webhooks.SnsResult] = []

    def read() -> list[webhooks.Report]:
        found = webhooks.sns(body, config.ses_topic_arns, config.sns_cert_url_pattern)
        results.append(found)
        return found.reports

    reports = _checked(read)
    if results and results[0].subscribe_url:
        # A checked confirmation of our own topic: visiting its URL starts the deliveries.
        try:
            with urllib.request.urlopen(results[0].subscribe_url, timeout=5):  # noqa: S310 - https://sns.*.amazonaws.com only
                pass
        except OSError as exc:
            log.warning("SNS subscription not confirmed: %s", exc)
            abort(502)
    return _answer(reports)
