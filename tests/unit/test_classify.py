"""The human/machine rules, one request shape at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.models import Actor, EventKind
from service.tracking.classify import Facts, Fetch, classify, client_network, in_bursts

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
OPEN, CLICK = EventKind.OPEN, EventKind.CLICK


@pytest.mark.parametrize(
    ("facts", "actor", "rule"),
    [
        (Facts(OPEN, "GET", FIREFOX, "203.0.113.0/24", 3600), Actor.HUMAN, "person"),
        (Facts(CLICK, "GET", FIREFOX, "203.0.113.0/24", 60), Actor.HUMAN, "person"),
        (Facts(CLICK, "HEAD", FIREFOX, "203.0.113.0/24", 3600), Actor.MACHINE, "head_request"),
        (Facts(OPEN, "GET", "", "203.0.113.0/24", 3600), Actor.MACHINE, "no_user_agent"),
        (Facts(OPEN, "GET", "Mozilla/5.0", "203.0.113.0/24", 3600), Actor.MACHINE, "apple_mpp"),
        (Facts(OPEN, "GET", FIREFOX, "17.58.101.0/24", 3600), Actor.MACHINE, "apple_mpp"),
        # A person behind iCloud Private Relay clicking is still a person.
        (Facts(CLICK, "GET", FIREFOX, "17.58.101.0/24", 3600), Actor.HUMAN, "person"),
        (Facts(OPEN, "GET", GMAIL, "66.249.84.0/24", 1), Actor.HUMAN, "image_proxy_open"),
        (Facts(OPEN, "GET", YAHOO, "98.136.0.0/24", 900), Actor.HUMAN, "image_proxy_open"),
        (
            Facts(CLICK, "GET", "Mozilla/5.0 (compatible; Mimecast)", None, 3600),
            Actor.MACHINE,
            "scanner_user_agent",
        ),
        (
            Facts(CLICK, "GET", "python-requests/2.32", None, 3600),
            Actor.MACHINE,
            "scanner_user_agent",
        ),
        (Facts(CLICK, "GET", FIREFOX, "40.94.5.0/24", 1.5), Actor.MACHINE, "within_seconds"),
        (Facts(CLICK, "GET", FIREFOX, "40.94.5.0/24", None), Actor.MACHINE, "before_delivery"),
        (Facts(EventKind.FEEDBACK, "GET", FIREFOX, None, -2), Actor.MACHINE, "before_delivery"),
    ],
)
def test_rules(facts: Facts, actor: Actor, rule: str) -> None:
    verdict = classify(facts)
    assert (verdict.actor, verdict.rule) == (actor, rule)


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("17.58.101.12", "17.58.101.0/24"),
        ("2a01:e0a:1f:2::4", "2a01:e0a:1f::/48"),
        ("::ffff:192.0.2.77", "192.0.2.0/24"),
        ("not an address", None),
        ("", None),
        (None, None),
    ],
)
def test_client_network_keeps_only_the_network(address: str | None, network: str | None) -> None:
    assert client_network(address) == network


def test_bursts_need_three_different_links_within_ten_seconds() -> None:
    t = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

    def at(seconds: float) -> datetime:
        return t + timedelta(seconds=seconds)

    # The same link three times is a person reloading; three links a minute apart too.
    assert in_bursts([Fetch(1, "click:0", at(0)), Fetch(2, "click:0", at(1)),
                      Fetch(3, "click:0", at(2))]) == set()  # fmt: skip
    assert in_bursts([Fetch(1, "click:0", at(0)), Fetch(2, "click:1", at(60)),
                      Fetch(3, "click:2", at(120))]) == set()  # fmt: skip
    burst = [Fetch(1, "click:0", at(0)), Fetch(2, "feedback:yes", at(2)),
             Fetch(3, "feedback:no", at(3)), Fetch(4, "click:5", at(300))]  # fmt: skip
    assert in_bursts(burst) == {1, 2, 3}
