"""Which launch `NAME@SELECTOR` names, on a table of parent runs like the one `mlflow.search_runs` returns."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.load import SweepNotFound, _select_launch
from dreamfusion.tracking.schema import LAUNCH_TAG

PARENTS = pd.DataFrame(
    {
        "run_id": ["7f3e1c", "87499189aa", "2b0d44"],  # oldest first; MLflow's ids are hex, so may be all digits
        f"tags.{LAUNCH_TAG}": ["2026-01-01_00-00-00", "2026-01-02_00-00-00", "2026-01-03_00-00-00"],
    }
)


@pytest.mark.parametrize(
    "selector, run_id",
    [
        ("1", "7f3e1c"),
        ("3", "2b0d44"),
        ("-1", "2b0d44"),
        ("-3", "7f3e1c"),
        ("2", "87499189aa"),
        ("87499", "87499189aa"),  # more digits than a place has: a run id prefix
        ("7f", "7f3e1c"),
        ("2026-01-02_00-00-00", "87499189aa"),
    ],
)
def test_a_selector_names_one_launch(selector, run_id):
    assert _select_launch(PARENTS, selector, "sched")["run_id"].tolist() == [run_id]


def test_a_number_within_the_count_is_a_place_even_where_a_run_id_starts_with_it():
    parents = PARENTS.assign(run_id=["2abc", "1def", "3fed"])
    assert _select_launch(parents, "2", "sched")["run_id"].tolist() == ["1def"]


@pytest.mark.parametrize("selector", ["4", "-4", "0", "99", "7", "8749", "ffff"])
def test_nothing_named_lists_the_launches(selector):
    with pytest.raises(SweepNotFound, match="launches, oldest first: 2026-01-01_00-00-00, 2026-01-02"):
        _select_launch(PARENTS, selector, "sched")
