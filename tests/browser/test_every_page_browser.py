"""Every page of the app, in headless Chromium: axe-core finds nothing serious, and
nothing scrolls sideways on a 320 px screen.

The pages are not listed here. They are found the way tests/web/test_no_5xx.py finds
routes: every GET rule of the Flask URL map, its path variables filled from a seeded
instance (ids, slugs, signed tokens, and the values the app's own links carry), and a
page is one that answers 200 with HTML for that visitor. A page added later is covered
without touching this file; a rule none of whose real values answers 200 is named.

axe-core is the npm package pinned in tests/browser/axe/package-lock.json (installed by
`make test` with `npm ci`) and injected from its file: no CDN. Runs with the WCAG 2.0/2.1
A and AA rules and axe's best practices; any serious or critical violation fails, listing
the page, the rule and the nodes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, BrowserContext, Route
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.app import create_app
from service.audience import signup
from service.config import Settings
from service.models import EditorRole, Subscriber
from service.team import editors
from service.tools.sink import MaildirSink
from service.web.api.core import OPERATIONS
from tests.support.browser import log_in
from tests.web.test_no_5xx import CSRF, EDITOR, PASSWORD, Seeded, Walker, seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AXE_DIR = Path(__file__).resolve().parent / "axe"
AXE = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
AXE_VERSION = "4.14.1"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
FAILING_IMPACTS = {"serious", "critical"}
# GET rules that answer only with a query string (the seed fills path variables only).
QUERIES = {"/subscribers/export.csv": "newsletter=lettre"}

# Who looks at the pages: a visitor (None), or an account of that role, which the fixture
# creates and the browser logs in with. A new role is one line here.
ROLES: dict[str, EditorRole | None] = {
    "visitor": None,
    "editor": EditorRole.EDITOR,
    "viewer": EditorRole.VIEWER,  # every page to read, no action buttons
    "admin": EditorRole.ADMIN,  # the Team, Audit log and Invite pages open for admins only
}
# GET rules that only answer in a state a seeded site cannot hold, each checked with axe
# and at 320 px where that state is made (tests/browser/test_team_access_browser.py).
STATEFUL = {
    "/setup": "an empty site",
    "/login/code": "a password just typed by an editor with a second factor",
}


def account(role: str) -> tuple[str, str] | None:
    """The address and password `role` logs in with (None for a visitor)."""
    if ROLES[role] is None:
        return None
    return f"{role}@roles.hebdo.example", PASSWORD


def _create_accounts(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for role, kind in ROLES.items():
            login = account(role)
            if login is not None and kind is not None:
                # This editor reads English pages (else: the newsletter's language).
                editors.create(session, login[0], login[1], name=role, role=kind).language = "en"


def _client(app: Flask, role: str) -> FlaskClient:
    """A test client logged in as `role` through the login form (or a visitor's)."""
    client = app.test_client()
    login = account(role)
    if login is not None:
        page = client.get("/login").get_data(as_text=True)
        token = CSRF.search(page)
        assert token, "no CSRF token on the login page"
        form = {"email": login[0], "password": login[1], "csrf_token": token[1]}
        response = client.post("/login", data=form)
        assert response.status_code in (302, 303), f"{role} cannot log in"
    return client


def axe_source() -> str:
    """The pinned axe-core, or a loud failure saying how to install it (never a skip)."""
    if not AXE.exists():
        raise AssertionError(
            f"{AXE} is missing: run `make test` (or `npm ci --prefix {AXE_DIR}`); "
            "node and npm are needed for the accessibility checks (see .ci/run)"
        )
    installed = json.loads((AXE.parent / "package.json").read_text())["version"]
    assert installed == AXE_VERSION, f"axe-core {installed} installed, {AXE_VERSION} pinned"
    return AXE.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Found:
    """What one visitor gets from each GET rule: the pages (rule -> a real path answering
    200 with HTML), the rules answering something else (a redirect, a GIF, JSON, CSV, a raw
    mail: rule -> what), and the rules no seeded value reaches."""

    pages: dict[str, str]
    other: dict[str, str]
    unreached: list[str]


def discover(app: Flask, seeded: Seeded, role: str) -> Found:
    """Walk the URL map's GET rules with the test client as `role`; keep the HTML pages."""
    # The walker only lends its path filling; the client is the role's own.
    walker = Walker(app, _client(app, role), seeded, logged_in=False)
    # The JSON API answers bearer tokens, not cookies: schemathesis walks it
    # (tests/web/test_api_fuzz.py); its docs page and OpenAPI document stay here.
    api = {f"api.{operation.name}" for operation in OPERATIONS}
    rules = sorted(
        (
            r
            for r in app.url_map.iter_rules()
            if "GET" in (r.methods or ()) and r.endpoint != "static" and r.endpoint not in api
        ),
        key=lambda r: r.rule,
    )
    # The app's own links carry values the seed does not know (the Outbox keys).
    walker.harvest_forms([p for r in rules for p in walker.real_paths(r)[:2]])
    found = Found({}, {}, [])
    for rule in rules:
        for path in walker.real_paths(rule)[:400]:
            response = walker.client.get(path)
            kind = response.content_type or ""
            if response.status_code == 200 and kind.startswith("text/html"):
                found.pages[rule.rule] = path
                break
            # A redirect to the login page says nothing of what the rule serves.
            to_login = "/login" in response.headers.get("Location", "")
            if response.status_code < 400 and not to_login and rule.rule not in found.other:
                found.other[rule.rule] = f"{response.status_code} {kind}"
        else:
            if rule.rule not in found.other:
                found.unreached.append(rule.rule)
    # A rule that needs a query string to answer (the CSV export) is tried with one.
    for needy in list(found.unreached):
        query = QUERIES.get(needy)
        if query is not None and walker.client.get(f"{needy}?{query}").status_code == 200:
            found.unreached.remove(needy)
            found.other[needy] = f"200 with ?{query}"
    return found


@pytest.fixture
def seeded_site(
    settings: Settings, sessions: sessionmaker[Session], site: tuple[str, Settings]
) -> tuple[str, dict[str, Found]]:
    """The served app on a seeded instance, and what each role can open."""
    base_url, served = site
    seeded = seed(sessions, served)
    seeded.values["token"] += _data_links(sessions, served)
    app = create_app(served)
    _create_accounts(sessions)
    _real_mail_in_outbox(app, seeded, served)
    found = {role: discover(app, seeded, role) for role in ROLES}
    # A rule that answers nobody (a 404 for every seeded value) would go unchecked:
    # give the seed in tests/web/test_no_5xx.py its real values.
    answered = {rule for f in found.values() for rule in (*f.pages, *f.other)}
    unreached = {rule for f in found.values() for rule in f.unreached}
    missing = sorted(unreached - answered - STATEFUL.keys())
    assert not missing, f"GET rules no seeded value opens for anyone: {missing}"
    return base_url, found


def _real_mail_in_outbox(app: Flask, seeded: Seeded, settings: Settings) -> None:
    """The sink holds a real edition (as a test send would leave it), not the seed's stub.

    /outbox/<key>/html shows a received message's HTML as it came; the seed's one-line
    stub has no <html lang> nor <title>, which no message of ours lacks.
    """
    assert settings.maildir_path is not None
    client = _client(app, "editor")
    edition = seeded.good("edition_id")[0]
    message = client.get(f"/editions/{edition}/preview/message.eml")
    assert message.status_code == 200, message.status_code
    for stub in settings.maildir_path.glob("*/*"):
        stub.unlink()
    MaildirSink(settings.maildir_path).deliver(EDITOR, "r0@example.org", message.get_data())


def _data_links(sessions: sessionmaker[Session], settings: Settings) -> list[str]:
    """The export and erase links of the seeded readers (bound to their addresses)."""
    with sessions() as session:
        readers = session.execute(select(Subscriber.id, Subscriber.email)).all()
    return [
        signup.data_link_token(settings.secret_key, purpose, reader_id, email)
        for purpose in signup.DATA_NOTICES.values()
        for reader_id, email in readers
    ]


def _unsandboxed(route: Route) -> None:
    """Serve a document without its CSP sandbox (the email's own pages have one).

    In a sandboxed document no script runs, and axe, evaluated there, waits forever
    for timers that never fire. The HTML is the same; only the policy header goes.
    """
    if route.request.resource_type != "document" or route.request.method != "GET":
        route.continue_()
        return
    response = route.fetch(max_redirects=0)
    headers = {
        name: value
        for name, value in response.headers.items()
        if not (name.lower() == "content-security-policy" and "sandbox" in value)
    }
    route.fulfill(response=response, headers=headers)


def _context(
    browser: Browser, base_url: str, role: str, width: int, *, scripts: bool = False
) -> BrowserContext:
    context = browser.new_context(viewport={"width": width, "height": 800})
    login = account(role)
    if login is not None:
        page = context.new_page()
        log_in(page, base_url, *login)
        page.close()
    if scripts:
        context.route("**/*", _unsandboxed)
    return context


def _violations(result: dict[str, Any], where: str) -> list[str]:
    lines = []
    for violation in result["violations"]:
        if violation["impact"] not in FAILING_IMPACTS:
            # Shown, not failed: moderate and minor findings are worth a look too.
            print(
                f"{where}: {violation['id']} ({violation['impact']}) on {len(violation['nodes'])}"
            )
            continue
        lines.append(f"{where}: {violation['id']} ({violation['impact']}) {violation['help']}")
        for node in violation["nodes"][:8]:
            summary = " ".join(node.get("failureSummary", "").split())
            lines.append(f"    {' '.join(map(str, node['target']))}: {summary[:300]}")
    return lines


@pytest.mark.parametrize("role", list(ROLES))
def test_axe_finds_no_serious_violation_on_any_page(
    browser: Browser, seeded_site: tuple[str, dict[str, Found]], role: str
) -> None:
    base_url, found = seeded_site
    source = axe_source()
    pages = found[role].pages
    assert pages, f"no page opens for {role}"
    # The email frames of the preview are sandboxed (no script runs in them, so axe's
    # frame messaging would wait for an answer that never comes); each is a GET rule of
    # its own and is checked as a page.
    options = {
        "runOnly": {"type": "tag", "values": AXE_TAGS},
        "resultTypes": ["violations"],
        "iframes": False,
    }
    problems: list[str] = []
    checked = 0
    for width in (1200, 375):
        context = _context(browser, base_url, role, width, scripts=True)
        page = context.new_page()
        page.set_default_timeout(30_000)
        for rule, path in sorted(pages.items()):
            response = page.goto(base_url + path)
            assert response is not None, path
            assert response.ok, f"{path}: {response.status}"
            page.wait_for_load_state("load")
            # The browser sees what the test client saw (no redirect to the login page).
            assert urlsplit(page.url).path == urlsplit(path).path, f"{path} -> {page.url}"
            page.evaluate(source)
            result = page.evaluate("options => axe.run(document, options)", options)
            problems += _violations(result, f"{role} {width}px {path} ({rule})")
            checked += 1
        context.close()
    print(f"axe {AXE_VERSION}: {checked} page views checked as {role}: {sorted(pages)}")
    assert not problems, "\n".join(problems)


OVERFLOW = """() => {
  const width = window.innerWidth;
  // What sticks out past the screen, leaving out what scrolls inside a box of its own.
  const clipped = e => {
    for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
      if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(p).overflowX)) return true;
    }
    return false;
  };
  const wide = [...document.body.querySelectorAll('*')]
    .filter(e => e.getBoundingClientRect().right > width + 1 && !clipped(e))
    .slice(-5)
    .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
      + (typeof e.className === 'string' && e.className
        ? '.' + e.className.split(' ').join('.') : ''));
  return [document.documentElement.scrollWidth, width, wide];
}"""


@pytest.mark.parametrize("role", list(ROLES))
def test_no_page_scrolls_sideways_at_320_px(
    browser: Browser, seeded_site: tuple[str, dict[str, Found]], role: str
) -> None:
    base_url, found = seeded_site
    pages = found[role].pages
    assert pages, f"no page opens for {role}"
    context = _context(browser, base_url, role, 320)
    page = context.new_page()
    wide: list[str] = []
    for rule, path in sorted(pages.items()):
        response = page.goto(base_url + path)
        assert response is not None, path
        assert response.ok, f"{path}: {response.status}"
        page.wait_for_load_state("load")
        scroll_width, inner_width, culprits = page.evaluate(OVERFLOW)
        if scroll_width > inner_width:
            wide.append(f"{path} ({rule}): {scroll_width} > {inner_width} px, past it: {culprits}")
    context.close()
    print(f"{len(pages)} pages at 320 px as {role}: {sorted(pages)}")
    assert not wide, "\n".join(wide)


# Each stop of the Tab key: the focused element, its outline ("auto" for the browser's own
# ring) and border, and the colour behind it (the first ancestor with an opaque background).
FOCUS_STOP = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const s = getComputedStyle(e);
  let behind = 'rgb(255, 255, 255)';
  for (let p = e.parentElement; p; p = p.parentElement) {
    const c = getComputedStyle(p).backgroundColor;
    if (c && c !== 'transparent' && !c.startsWith('rgba(0, 0, 0, 0')) { behind = c; break; }
  }
  const field = e.matches('input:not([type=checkbox]):not([type=radio]):not([type=hidden]),'
    + ' select, textarea');
  const ring = s.outlineStyle === 'auto' ? 'auto'
    : s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2 ? s.outlineColor : null;
  return {
    name: e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.name ? `[name=${e.name}]` : '')
      + (e.getAttribute('href') ? `[href=${e.getAttribute('href').slice(0, 60)}]` : ''),
    key: e.outerHTML.slice(0, 300) + (e.textContent || '').slice(0, 80),
    ring,
    border: field && parseFloat(s.borderTopWidth) > 0 ? s.borderTopColor : null,
    behind,
  };
}"""
TAB_STOPS = 40


def _luminance(colour: str) -> float:
    red, green, blue = (int(float(v)) / 255 for v in re.findall(r"[\d.]+", colour)[:3])

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)


def contrast(one: str, other: str) -> float:
    """WCAG's contrast ratio of two CSS rgb() colours."""
    light, dark = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("role", list(ROLES))
def test_every_focus_ring_and_field_border_reaches_3_to_1(
    browser: Browser, seeded_site: tuple[str, dict[str, Found]], role: str
) -> None:
    """WCAG 1.4.11 by keyboard: each Tab stop shows a ring, rings and field borders at 3:1."""
    base_url, found = seeded_site
    context = _context(browser, base_url, role, 1200)
    page = context.new_page()
    weak: list[str] = []
    stops = 0
    for rule, path in sorted(found[role].pages.items()):
        page.goto(base_url + path)
        page.wait_for_load_state("load")
        seen: set[str] = set()
        for _ in range(TAB_STOPS):
            page.keyboard.press("Tab")
            stop = page.evaluate(FOCUS_STOP)
            if stop is None or page.evaluate("() => document.activeElement.tagName") == "IFRAME":
                break
            if stop["key"] in seen:  # round the page once: focus is back where it started
                break
            seen.add(stop["key"])
            stops += 1
            where = f"{path} ({rule}) {stop['name']}"
            if stop["ring"] is None:
                weak.append(f"{where}: no visible focus ring")
            # "auto" is Chromium's own two-colour ring (the email's pages keep it), made
            # to show on any background.
            elif stop["ring"] != "auto" and contrast(stop["ring"], stop["behind"]) < 3:
                weak.append(f"{where}: ring {stop['ring']} on {stop['behind']}")
            if stop["border"] and contrast(stop["border"], stop["behind"]) < 3:
                weak.append(f"{where}: border {stop['border']} on {stop['behind']}")
    context.close()
    print(f"{stops} focus stops checked as {role}")
    assert stops > 0
    assert not weak, "\n".join(weak)
