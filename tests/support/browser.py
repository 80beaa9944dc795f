"""Pages in a real headless Chromium (Debian's), against the app served on a free port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from service.app import create_app
from service.config import Settings
from tests.support import free_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts,
# which this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@contextmanager
def serve(settings: Settings) -> Iterator[tuple[str, Settings]]:
    """Serve the app on a free port whose address is its BASE_URL (links in mail work)."""
    server: BaseWSGIServer | None = None
    served = settings
    for _ in range(5):  # another process may take the free port before we bind it
        port = free_port()
        served = replace(settings, base_url=f"http://127.0.0.1:{port}")
        try:
            app = create_app(served)
            server = make_server("127.0.0.1", port, app, threaded=True)
            break
        except OSError:
            continue
    assert server is not None, "no free port to serve the app on"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served.base_url, served
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["hebdo.events"].close()  # write the last batch of tracking events


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless; fails loudly when it is not installed."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page: Page, base_url: str, email: str, password: str, next_path: str = "") -> None:
    """Log an editor in through the login form."""
    page.goto(f"{base_url}/login" + (f"?next={next_path}" if next_path else ""))
    page.fill("#email", email)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/login" not in page.url, "login failed"
