"""The documentation site as a reader sees it: built by mkdocs (strict: a missing page or anchor fails the build),
served on 127.0.0.1, and every page opened in Debian's headless Chromium with every request outside the server
refused. No internal link may answer 404, no link may point to an anchor its page lacks, every image must load, and
no page may ask the network for anything (fonts, scripts) or throw a script error."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag

import pytest
from browser_helpers import chromium, needs_chromium

pytestmark = needs_chromium

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Visited:
    """What the browser found on every page: its links (resolved, fragment kept), images and element ids."""

    pages: list[str]
    links: dict[str, list[str]] = field(default_factory=dict)
    images: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    ids: dict[str, set[str]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return out


@pytest.fixture(scope="module")
def served(site) -> Iterator[str]:
    """The built site over HTTP on a free port of 127.0.0.1, stopped at the end."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def page_urls(site: Path, base: str) -> list[str]:
    """Every page the build wrote (directory URLs: one index.html per page), the 404 page aside."""
    pages = sorted(p.relative_to(site) for p in site.rglob("index.html"))
    return [base + (str(p.parent) + "/" if str(p.parent) != "." else "") for p in pages]


@pytest.fixture(scope="module")
def visited(site, served) -> Visited:
    seen = Visited(pages=page_urls(site, served))
    with chromium() as browser:
        page = browser.new_page()
        page.on("console", lambda m: seen.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: seen.errors.append(f"{page.url}: {e}"))

        def local_only(route):
            if route.request.url.startswith((served, "data:", "blob:")):
                return route.continue_()
            seen.refused.append(route.request.url)
            return route.abort()

        page.route("**/*", local_only)
        for url in seen.pages:
            response = page.goto(url)
            assert response is not None and response.ok, f"{url}: {response and response.status}"
            page.wait_for_load_state("load")
            seen.links[url] = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
            seen.images[url] = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.currentSrc || e.src, e.complete ? e.naturalWidth : 0])"
            )
            seen.ids[url] = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
    return seen


def test_every_markdown_page_is_built(visited):
    assert len(set(visited.pages)) == len(list(DOCS.rglob("*.md")))


def test_no_page_asks_the_network_or_throws(visited):
    assert visited.refused == [] and visited.errors == []


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_no_internal_link_is_broken(visited, served):
    targets: dict[str, str] = {}
    for page, links in visited.links.items():
        for link in links:
            if link.startswith(served):
                targets.setdefault(urldefrag(link).url, page)
    assert set(visited.pages) <= set(targets)  # the nav links every page
    assert status(served + "no/such/page/") == 404  # the check can fail
    broken = [f"{page} → {target}: {code}" for target, page in targets.items() if (code := status(target)) != 200]
    assert broken == []


def test_every_link_to_an_anchor_finds_it(visited, served):
    missing = []
    for page, links in visited.links.items():
        for link in links:
            target, fragment = urldefrag(link)
            if not link.startswith(served) or not fragment or target not in visited.ids:
                continue
            if unquote(fragment) not in visited.ids[target]:
                missing.append(f"{page} → {link}")
    assert missing == []


def test_every_image_loads(visited):
    images = [(page, src, width) for page, found in visited.images.items() for src, width in found]
    assert images, "no page shows an image"
    assert [f"{page}: {src}" for page, src, width in images if width == 0] == []
