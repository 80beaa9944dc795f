"""Fixtures of the browser tests: the served app and a headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from service.config import Settings
from tests.support.browser import chromium, serve


@pytest.fixture
def site(settings: Settings) -> Iterator[tuple[str, Settings]]:
    """The app on a free port, and its settings with BASE_URL set to that address."""
    with serve(settings) as served:
        yield served


@pytest.fixture
def base_url(site: tuple[str, Settings]) -> str:
    """The served app's address."""
    return site[0]


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    with chromium() as launched:
        yield launched
