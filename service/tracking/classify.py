"""Human or machine: the rules that tell a reader's open or click from a robot's.

Every event behind a public link (pixel, click, feedback) is stored with the facts
below and with the verdict of these rules (`event.actor`, and the rule that
decided in `event.actor_rule`), so the rules can change and be re-applied to
events already stored (`reapply`). The rules, first match wins:

1. `head_request` (machine). Mail clients load images and follow links with GET;
   HEAD is what link checkers and security gateways send to look at a URL
   without taking it (Proofpoint URL Defense and Barracuda Link Protection are
   seen probing with HEAD before a GET).
2. `no_user_agent` (machine). Every browser and mail client names itself; an empty
   User-Agent is a script.
3. `scanner_user_agent` (machine). Scanners that say who they are: Mimecast,
   Proofpoint, Barracuda, Trend Micro, Symantec/Broadcom, Forcepoint, Cisco
   IronPort, Sophos, FireEye, Microsoft's link preview (BingPreview) and the
   generic HTTP libraries (python-requests, curl, Go-http-client, Java, okhttp,
   libwww-perl, Wget), headless browsers, and chat/social unfurlers (Slackbot,
   facebookexternalhit, Twitterbot…), which fetch a link pasted elsewhere.
4. `apple_mpp` (machine, opens only). Apple Mail Privacy Protection downloads every
   remote image of every message through Apple's proxy as soon as the message
   reaches the device, whether or not it is read (Apple: "Mail Privacy Protection
   … hides your IP address … and prevents senders from knowing when you open";
   SocketLabs and others measured it: the fetch comes with `User-Agent: Mozilla/5.0`
   and nothing else, from Apple's networks). So a pixel fetched with that bare
   user agent, or from Apple's own 17.0.0.0/8 (the egress of its mail proxy), is
   no evidence of a reader. Clicks are not judged by network: a person behind
   iCloud Private Relay clicking a link is still a person.
5. `image_proxy_open` (human, opens only). Gmail (`GoogleImageProxy`, via ggpht.com)
   and Yahoo (`YahooMailProxy`) fetch images through their proxy when the reader
   displays the message, not on arrival, so a fetch by them is a real open; the
   proxy caches the image, so later re-opens are not seen (unique opens count).
6. `before_delivery` (machine). The relay had not yet accepted the message when the
   link was fetched (our delivery row was not marked sent): only the receiving
   system's own gateway can do that.
7. `within_seconds` (machine). Within `SOON_SECONDS` of the relay's acceptance:
   gateways such as Microsoft Defender for Office 365 Safe Links ("detonation"
   on delivery), Mimecast and Proofpoint fetch links while delivering; listmonk's
   users see open rates of 50 % a minute after a send (listmonk #1025, #1180).
8. `link_burst` (machine; applied across one delivery's events). `BURST_TARGETS` or
   more different links of one message (its tracked links and the two feedback
   answers) fetched within `BURST_SECONDS`: no person clicks three different links
   in ten seconds, and no person answers both "yes" and "no"; a scanner that
   follows every link does both. It overrides the verdicts above.
9. `person` (human). None of the above.

What is not decided here: a human click also counts as an open of its delivery
(the reader saw the message); service.tracking.results applies that when counting.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Actor, Event, EventKind

SOON_SECONDS = 5.0
BURST_SECONDS = 10.0
BURST_TARGETS = 3
JUDGED = (EventKind.OPEN, EventKind.CLICK, EventKind.FEEDBACK)  # what public GETs record

APPLE_PROXY_USER_AGENT = "Mozilla/5.0"
# Apple's own address block (ARIN: Apple Inc., 17.0.0.0/8), where its mail proxy
# egresses. A deployment that sees more of Apple's partner egress can add networks.
APPLE_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("17.0.0.0/8"),
)
_SCANNERS = re.compile(
    r"mimecast|proofpoint|barracuda|trend ?micro|symantec|broadcom|forcepoint|ironport"
    r"|sophos|fireeye|trellix|bingpreview|safelinks|urldefense|cloudmark|zscaler"
    r"|python-requests|python-urllib|aiohttp|httpx|curl/|wget|go-http-client|java/|okhttp"
    r"|libwww-perl|apache-httpclient|headlesschrome|phantomjs|slackbot|facebookexternalhit"
    r"|twitterbot|linkedinbot|discordbot|whatsapp|telegrambot|\bbot\b|crawler|spider",
    re.IGNORECASE,
)
_IMAGE_PROXIES = re.compile(r"GoogleImageProxy|YahooMailProxy", re.IGNORECASE)


@dataclass(frozen=True)
class Facts:
    """What a public request tells about who made it."""

    kind: EventKind
    method: str | None
    user_agent: str | None
    network: str | None
    seconds_after: float | None  # None: the delivery was not marked sent yet


@dataclass(frozen=True)
class Verdict:
    actor: Actor
    rule: str


HUMAN = Verdict(Actor.HUMAN, "person")
BURST = Verdict(Actor.MACHINE, "link_burst")


def client_network(address: str | None) -> str | None:
    """The client's network, never its address: IPv4 /24, IPv6 /48 (None if unreadable)."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # Masking the integer, not parsing a network: this runs in every pixel request.
    if isinstance(ip, ipaddress.IPv4Address):
        return f"{ipaddress.IPv4Address(int(ip) & _IPV4_24)}/24"
    return f"{ipaddress.IPv6Address(int(ip) & _IPV6_48)}/48"


_IPV4_24 = (1 << 32) - (1 << 8)
_IPV6_48 = (1 << 128) - (1 << 80)


@lru_cache(maxsize=4096)
def _in_apple(network: str | None) -> bool:
    # Parsing the network and testing it against each of Apple's took about 45 us, half
    # of an event's write (bench/RESULTS.md); a /24 sends many events: remember it.
    if not network:
        return False
    try:
        net = ipaddress.ip_network(network)
    except ValueError:
        return False
    return any(
        net.version == apple.version and net.subnet_of(apple)  # type: ignore[arg-type]
        for apple in APPLE_NETWORKS
    )


@lru_cache(maxsize=4096)
def _is_scanner(agent: str) -> bool:
    # The pattern costs about 0.1 ms a search and a few thousand user agents make
    # most of the traffic: remember the answers.
    return _SCANNERS.search(agent) is not None


def classify(facts: Facts) -> Verdict:
    """The verdict of rules 1 to 7 and 9 for one event (rule 8 needs its neighbours)."""
    agent = (facts.user_agent or "").strip()
    if (facts.method or "GET").upper() == "HEAD":
        return Verdict(Actor.MACHINE, "head_request")
    if not agent:
        return Verdict(Actor.MACHINE, "no_user_agent")
    if _is_scanner(agent):
        return Verdict(Actor.MACHINE, "scanner_user_agent")
    if facts.kind == EventKind.OPEN:
        if agent == APPLE_PROXY_USER_AGENT or _in_apple(facts.network):
            return Verdict(Actor.MACHINE, "apple_mpp")
        if _IMAGE_PROXIES.search(agent):
            return Verdict(Actor.HUMAN, "image_proxy_open")
    if facts.seconds_after is None or facts.seconds_after < 0:
        return Verdict(Actor.MACHINE, "before_delivery")
    if facts.seconds_after < SOON_SECONDS:
        return Verdict(Actor.MACHINE, "within_seconds")
    return HUMAN


@dataclass(frozen=True)
class Fetch:
    """One link fetch of a delivery, for the burst rule."""

    event_id: int
    target: str  # "click:3", "feedback:yes"
    at: datetime


def target_of(kind: EventKind, link_index: int | None, value: str | None) -> str | None:
    """Which link of the message an event followed (None: not a link fetch)."""
    if kind == EventKind.CLICK:
        return f"click:{link_index}"
    if kind == EventKind.FEEDBACK:
        return f"feedback:{value}"
    return None


def in_bursts(fetches: Sequence[Fetch]) -> set[int]:
    """Ids of the fetches that belong to a burst (rule 8) among one delivery's fetches."""
    ordered = sorted(fetches, key=lambda f: f.at)
    burst: set[int] = set()
    start = 0
    for end, fetch in enumerate(ordered):
        while (fetch.at - ordered[start].at).total_seconds() > BURST_SECONDS:
            start += 1
        window = ordered[start : end + 1]
        if len({f.target for f in window}) >= BURST_TARGETS:
            burst.update(f.event_id for f in window)
    return burst


def reapply(session: Session, edition_ids: Iterable[int]) -> int:
    """Re-apply every rule to the stored events of these editions; how many changed."""
    changed = 0
    for edition_id in edition_ids:
        events = session.scalars(
            select(Event).where(Event.edition_id == edition_id, Event.kind.in_(JUDGED))
        ).all()
        verdicts = {
            e.id: classify(Facts(e.kind, e.method, e.user_agent, e.network, e.seconds_after))
            for e in events
        }
        by_delivery: dict[int | None, list[Fetch]] = {}
        for e in events:
            target = target_of(e.kind, e.link_index, e.value)
            if target is not None:
                by_delivery.setdefault(e.delivery_id, []).append(Fetch(e.id, target, e.created_at))
        for fetches in by_delivery.values():
            for event_id in in_bursts(fetches):
                verdicts[event_id] = BURST
        for e in events:
            if e.method is None:
                continue  # recorded before requests were described: nothing to judge by
            verdict = verdicts[e.id]
            if (e.actor, e.actor_rule) != (verdict.actor, verdict.rule):
                e.actor, e.actor_rule = verdict.actor, verdict.rule
                changed += 1
    session.flush()
    return changed
