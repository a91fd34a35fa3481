"""Every results page but the overview names the script that writes it (an existing file of the repository that
writes through `benchmarks/results_page.py`), the command that measures it and the prior it was measured on, so
that the site can say when it is stale."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[3]
RESULTS = ROOT / "docs" / "results"
PAGES = sorted(p for p in RESULTS.glob("*.md") if p.name != "index.md")


def front_matter(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n"), f"{path.name} has no front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_there_are_results_pages():
    assert len(PAGES) >= 10


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_a_results_page_names_its_script_its_command_and_its_prior(path):
    meta = front_matter(path)
    script = ROOT / meta["generated_by"]
    assert script.is_file(), meta["generated_by"]
    assert "ResultsPage" in script.read_text(), f"{meta['generated_by']} does not write its page"
    assert meta["command"], "no command"
    assert "prior" in meta and "prior_sha256" in meta
    sha = meta["prior_sha256"]
    assert sha is None or all(len(h) == 64 for h in str(sha).split(", "))


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_a_page_its_script_wrote_carries_the_whole_provenance(path):
    meta = front_matter(path)
    if meta.get("written_by_script") is False:
        pytest.skip("moved by hand, not yet written by its script")
    assert meta["command"].startswith(f"python {meta['generated_by']}")
    assert {"commit", "load_average", "peak_memory_mb", "wall_s"} <= meta.keys()
    assert set(meta["load_average"]) == {"before", "after"}
