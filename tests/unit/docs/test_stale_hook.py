"""The documentation site's hook (`docs/hooks/stale.py`) marks a results page stale from its front matter at every
build: measured on the toy-world prior with another sha256 than the shipped one's, or none recorded, it gets the
warning; on the shipped weights, on no prior or on another kind of prior, none."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

from dreamfusion.toyworld.assets import SHIPPED_SHA256, shipped_sha256

ROOT = Path(__file__).parents[3]
SHIPPED = "12" * 32
OTHER = "ab" * 32
COMMAND = "python benchmarks/trial_cost.py --prompts 3"
PAGE = "---\nprior: toyworld\n---\n# Trial cost\n\nThe numbers.\n"


def _load():
    spec = importlib.util.spec_from_file_location("stale", ROOT / "docs" / "hooks" / "stale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stale = _load()


def meta(**fields) -> dict:
    return {"generated_by": "benchmarks/trial_cost.py", "command": COMMAND, "prior": "toyworld", **fields}


def test_another_sha256_gets_the_warning_with_the_command_that_measures_it_again():
    found = stale.banner(meta(prior_sha256=OTHER), SHIPPED)
    assert found.startswith('!!! warning "Stale: measured on another prior than the shipped one"')
    assert "Measured on another prior than the shipped one" in found
    assert f"stale until `{COMMAND}` is run again" in found and f"`{OTHER[:12]}…`" in found


def test_the_shipped_sha256_gets_none():
    assert stale.banner(meta(prior_sha256=SHIPPED), SHIPPED) is None


def test_a_missing_sha256_or_missing_front_matter_gets_the_warning():
    assert "sha256 not recorded" in stale.banner(meta(prior_sha256=None), SHIPPED)
    assert "sha256 not recorded" in stale.banner(meta(), SHIPPED)
    assert stale.banner({}, SHIPPED).startswith("!!! warning")


def test_a_page_that_pools_the_toy_prior_with_another_is_stale_unless_on_the_shipped_weights():
    assert stale.banner(meta(prior="analytic, toyworld", prior_sha256=f"{OTHER}, {SHIPPED}"), SHIPPED) is not None
    assert stale.banner(meta(prior="analytic, toyworld", prior_sha256=SHIPPED), SHIPPED) is None


def test_no_prior_or_another_kind_of_prior_does_not_depend_on_the_shipped_weights():
    assert stale.banner(meta(prior="none", prior_sha256=None), SHIPPED) is None
    assert stale.banner(meta(prior="analytic", prior_sha256=OTHER), SHIPPED) is None


def test_a_page_not_yet_written_by_its_script_says_so():
    found = stale.banner(meta(prior="none", prior_sha256=None, written_by_script=False), SHIPPED)
    assert found.startswith('!!! note "Not yet written by its script"') and f"`{COMMAND}`" in found


def page(src_uri: str, fields: dict) -> SimpleNamespace:
    return SimpleNamespace(file=SimpleNamespace(src_uri=src_uri), meta=fields)


def test_the_warning_goes_under_the_title_of_results_pages_only(monkeypatch):
    monkeypatch.setattr(stale, "shipped_sha256", lambda: SHIPPED)
    markdown = "# Trial cost\n\nThe numbers.\n"
    marked = stale.on_page_markdown(markdown, page("results/trial-cost.md", meta(prior_sha256=OTHER)), None, None)
    title, rest = marked.split("\n", 1)
    assert title == "# Trial cost" and rest.lstrip("\n").startswith("!!! warning") and rest.endswith("The numbers.\n")
    assert stale.on_page_markdown(markdown, page("results/trial-cost.md", meta(prior_sha256=SHIPPED)), 0, 0) == markdown
    assert stale.on_page_markdown(markdown, page("results/index.md", {}), None, None) == markdown
    assert stale.on_page_markdown(markdown, page("guide/benchmarks.md", {}), None, None) == markdown


def test_the_hook_reads_the_shipped_sha256_the_package_records():
    assert stale.SHIPPED_SHA256 == SHIPPED_SHA256
    assert stale.shipped_sha256() == shipped_sha256()
