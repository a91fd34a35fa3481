"""Headless Chromium for the tests that open pages as a person sees them (report.html, the documentation site):
Debian's /usr/bin/chromium driven by Python Playwright, which downloads no browser. Where Chromium is not installed
the tests are skipped (scripts/install_chromium.sh installs it; CI does)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage"]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/install_chromium.sh installs it)"
)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium browser, closed at the end whatever happened."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()
