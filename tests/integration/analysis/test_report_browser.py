"""report.html as a person sees it: opened from disk in Debian's headless Chromium (Python Playwright drives
/usr/bin/chromium; no browser is downloaded), with every request that is not a local file refused. The plots must
render, the turntables load, the filter narrow the trials, and the console stay free of errors."""

from __future__ import annotations

import pytest
from browser_helpers import chromium, needs_chromium

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def opened(report):
    out, _ = report
    errors: list[str] = []
    refused: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        def offline(route):
            if route.request.url.startswith(("file:", "data:")):
                return route.continue_()
            refused.append(route.request.url)
            return route.abort()

        page.route("**/*", offline)
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        page.wait_for_timeout(1500)  # plotly draws after load
        yield page, errors, refused


def test_the_page_asks_for_nothing_outside_and_logs_no_error(opened):
    _, errors, refused = opened
    assert refused == [] and errors == []


def test_every_plot_renders(opened):
    page, _, _ = opened
    plots = page.locator(".js-plotly-plot")
    assert plots.count() >= 6  # comparisons, importance, parallel coordinates, trials by level, curves, compute
    for i in range(plots.count()):
        assert plots.nth(i).locator(".main-svg").count() >= 1, f"plot {i} drew nothing"
    # the parallel coordinates have one axis per varied key and the metric
    assert page.locator(".js-plotly-plot .parcoords .y-axis").count() == 4


def test_turntables_load(opened):
    page, _, _ = opened
    widths = page.eval_on_selector_all(".gallery img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
    assert len(widths) == 8 and all(w > 0 for w in widths)


def test_the_filter_narrows_trials_and_turntables(opened):
    page, _, _ = opened
    rows = page.locator("#trials tbody tr")
    visible = lambda: sum(rows.nth(i).is_visible() for i in range(rows.count()))
    assert visible() == 8
    page.fill("#filter", "red cube 30")
    assert visible() == 2  # a red cube at guidance 30, seeds 0 and 1
    assert sum(f.is_visible() for f in page.locator(".gallery figure").all()) == 2
    page.fill("#filter", "")
    assert visible() == 8
