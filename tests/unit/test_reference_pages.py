"""The reference pages in docs/reference/ are generated from the code (the trial config schema, the component
registry, the typer app), and a committed page that the code no longer generates fails here: the fix is to run
`python scripts/gen_reference.py`. The check itself must see a change (a component registered in a test), the
output must not depend on the environment, and the commands that print the same text must agree with it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field
from typer.testing import CliRunner

from dreamfusion import registry
from dreamfusion.cli import app
from dreamfusion.reference import pages
from dreamfusion.reference.catalogue import catalogue_markdown
from dreamfusion.reference.config_page import config_markdown
from dreamfusion.reference.markdown import prose
from dreamfusion.sds.schedules import Schedule

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "reference"
SCRIPT = ROOT / "scripts" / "gen_reference.py"


class ReversedSchedule(Schedule):
    name = "test-reversed"
    summary = "t rising from t_min to t_max, defined in a test"

    class Options(registry.Options):
        reversed_power: float = Field(1.0, gt=0)
        """Exponent of the rise."""

    def __call__(self, step, generator):
        return self.lo


@pytest.fixture
def extra_schedule():
    """The pages before the schedule above is registered; it is registered for the test and removed after it."""
    before = pages.generate(app)
    registry.register(ReversedSchedule)
    yield before
    registry.unregister("schedule", ReversedSchedule.name)


def test_the_committed_pages_are_what_the_code_generates():
    """In a fresh interpreter, so that components other tests register are not in it, and in a narrow terminal
    with the speed-ups off by the environment: neither may change a page."""
    env = {**os.environ, "COLUMNS": "40", "DF_SWEEP_SPEEDUPS": "off"}
    check = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert check.returncode == 0, check.stderr + "\nregenerate with: python scripts/gen_reference.py"


def test_the_check_names_the_pages_a_new_component_changes(extra_schedule, tmp_path, capsys):
    generated = pages.generate(app)
    assert {name for name, text in generated.items() if text != extra_schedule[name]} == {"components.md", "config.md"}
    assert {"components.md", "config.md"} <= set(pages.stale(DOCS, app))
    assert "[`test-reversed`](#schedule-test-reversed)" in generated["components.md"]
    assert "`sds.timesteps.reversed_power` | float, &gt; 0 | `1.0` | `test-reversed` |" in generated["config.md"]

    for name in ("cli.md", "components.md", "config.md"):
        (tmp_path / name).write_text((DOCS / name).read_text())
    gen_reference = _load_script()
    assert gen_reference.main(["--check", "--docs", str(tmp_path)]) == 1
    assert "components.md: stale" in capsys.readouterr().err
    assert gen_reference.main(["--docs", str(tmp_path)]) == 0
    assert gen_reference.main(["--check", "--docs", str(tmp_path)]) == 0


def test_defaults_are_the_codes_whatever_the_environment(monkeypatch):
    monkeypatch.setenv("DF_SWEEP_SPEEDUPS", "off")
    off = config_markdown()
    assert os.environ["DF_SWEEP_SPEEDUPS"] == "off"  # read around, not changed
    monkeypatch.setenv("DF_SWEEP_SPEEDUPS", "on")
    assert config_markdown() == off
    assert "| `speed.shared_eval_pass` | bool | `true` |" in off


def test_the_commands_print_the_pages_text():
    runner = CliRunner()
    assert runner.invoke(app, ["config", "--markdown"]).output == config_markdown()
    assert runner.invoke(app, ["components", "--markdown"]).output == catalogue_markdown()
    text = runner.invoke(app, ["components", "--kind", "schedule"]).output
    assert text.startswith("schedule (sds.timesteps.schedule: NAME):")
    assert "sds.timesteps.strata" in text and "stable-diffusion" not in text
    unknown = runner.invoke(app, ["components", "--kind", "sampler"])
    assert unknown.exit_code == 2 and "expected one of prior, scorer" in unknown.output


def test_a_cell_stays_one_cell_and_a_code_span_stays_as_written():
    assert prose("|azimuth| ≤ 15°, `a|b`, runs/<prompt>_<time>\n  *x*") == (
        "\\|azimuth\\| ≤ 15°, `a|b`, runs/&lt;prompt&gt;\\_&lt;time&gt; \\*x\\*"
    )
    assert prose("t_min and `t_max`") == "t_min and `t_max`"


def _load_script():
    spec = importlib.util.spec_from_file_location("gen_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
