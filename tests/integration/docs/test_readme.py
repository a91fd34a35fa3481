"""README.md is the front door: short, and every relative link and image in it points at a file of the repository
(the rest of the documentation is the site under docs/, checked by test_site.py)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
# [text](target) and ![alt](target "title"); the target ends at whitespace or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")


def relative_targets(text: str) -> list[str]:
    targets = (match.group(1) for match in LINK.finditer(text))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_readme_is_at_most_250_lines():
    assert len(README.read_text().splitlines()) <= 250


def test_every_relative_link_and_image_of_the_readme_exists():
    targets = relative_targets(README.read_text())
    assert any(t.endswith(".png") for t in targets) and any(t.startswith("docs/") for t in targets)
    missing = [t for t in targets if not (ROOT / t.split("#", 1)[0]).exists()]
    assert missing == []


def test_the_link_pattern_finds_links_images_and_skips_urls():
    text = '![a](img/x.png "t") [b](docs/y.md#z) [c](https://example.org) [d](#top) [`e`](e.md)'
    assert relative_targets(text) == ["img/x.png", "docs/y.md#z", "e.md"]
