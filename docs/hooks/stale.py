"""mkdocs hook: a results page says at its top when its numbers are stale, read from its front matter at every build.

Each page in `docs/results/` (but the overview) is written by the script that measures it
(`benchmarks/results_page.py`), with front matter naming the prior it measured (`prior`) and the sha256 of that
prior's weights as loaded (`prior_sha256`, what the trials' `df.prior.sha256` tag holds). A page measured on the
toy-world prior whose sha256 is not the shipped one's, or not recorded, gets a warning that its numbers are stale until
its command runs again. The shipped prior's sha256 is read from the file kept beside its weights
(`dreamfusion/toyworld/weights/prior_sha256.txt`), so the build needs no torch. Pages measured on no prior or on
another kind (`analytic`, seeded random weights) do not depend on the shipped weights and get no warning; a page
whose text was moved by hand and not yet written by its script (`written_by_script: false`) gets a note saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_SHA256 = ROOT / "dreamfusion" / "toyworld" / "weights" / "prior_sha256.txt"
#: The prior kind whose shipped weights can make a result stale.
TOY_PRIOR = "toyworld"
RESULTS = "results/"
OVERVIEW = "results/index.md"


def shipped_sha256(path: Path = SHIPPED_SHA256) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def _short(sha: str | None) -> str:
    return f"`{sha[:12]}…`" if sha else "not recorded"


def _admonition(kind: str, title: str, text: str) -> str:
    return f'!!! {kind} "{title}"\n    {text}\n'


def banner(meta: dict[str, Any], shipped: str | None) -> str | None:
    """The admonition a results page with this front matter needs, or None."""
    command = meta.get("command") or "its script"
    measured = meta.get("prior_sha256")
    kinds = str(meta.get("prior", TOY_PRIOR)).split(", ")  # a page may pool trials of several priors
    if TOY_PRIOR in kinds and (measured is None or measured != shipped):
        return _admonition(
            "warning",
            "Stale: measured on another prior than the shipped one",
            f"Measured on another prior than the shipped one (sha256 {_short(measured)}; the shipped prior's is "
            f"{_short(shipped)}): the numbers are stale until `{command}` is run again.",
        )
    if meta.get("written_by_script") is False:
        return _admonition(
            "note",
            "Not yet written by its script",
            f"This page was moved by hand from an earlier document; `{command}` measures it again and writes it.",
        )
    return None


def insert(markdown: str, admonition: str) -> str:
    """The admonition after the page's title (its first `# ` line), or first where it has none."""
    lines = markdown.splitlines(keepends=True)
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    return "".join(lines[:at]) + ("\n" if at else "") + admonition + "\n" + "".join(lines[at:])


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    path = page.file.src_uri
    if not path.startswith(RESULTS) or path == OVERVIEW:
        return markdown
    found = banner(page.meta or {}, shipped_sha256())
    return insert(markdown, found) if found else markdown
