"""Tiers: a test's folder is its marker (tests/unit → `unit`, tests/integration → `integration`, tests/cluster →
`cluster`); tests/slow and anything marked `slow` run only with --slow. The fast tier is `-m unit`."""

import os
from pathlib import Path

import pytest

from dreamfusion.console.progress import TRIAL_LINE_REGEX

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# As `df-sweep` has it (dreamfusion.tune.session), before any test imports Ray: every trial's eval lines come through.
os.environ.setdefault("RAY_DEDUP_LOGS_ALLOW_REGEX", TRIAL_LINE_REGEX)

TESTS = Path(__file__).parent
TIERS = ("unit", "integration", "cluster", "slow")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the slow tier (mutation testing, full-size models)")
    parser.addoption(
        "--speedups",
        choices=("on", "off"),
        default=None,
        help="run with every `speed.*` switch at its default (on) or off: sets DF_SWEEP_SPEEDUPS for the tests and "
        "every process they start (Ray workers, the CLI)",
    )


def pytest_configure(config):
    if config.getoption("--speedups"):
        os.environ["DF_SWEEP_SPEEDUPS"] = config.getoption("--speedups")


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory):
    """The two-node Ray cluster and the MLflow server that the cluster tests share: started once, every process
    stopped by its PID at the end, whatever happened."""
    from cluster_helpers import running_stack

    with running_stack(tmp_path_factory.mktemp("stack")) as started:
        yield started


@pytest.fixture
def stack(shared_stack):
    """The shared stack, with any `df-sweep` driver a test started stopped after it, even if the test failed."""
    yield shared_stack
    shared_stack.stop_drivers()


def pytest_collection_modifyitems(config, items):
    """Mark each test with its folder's tier; skip the slow tier unless asked; run the tests on the shared stack
    last (in their own order), so that its processes stop with them instead of idling through the rest."""
    run_slow = config.getoption("--slow") or "slow" in (config.getoption("-m") or "")
    for item in items:
        tier = Path(item.fspath).relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
        if item.get_closest_marker("slow") and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow tier: run with --slow"))
    items.sort(key=lambda item: "shared_stack" in getattr(item, "fixturenames", ()))
