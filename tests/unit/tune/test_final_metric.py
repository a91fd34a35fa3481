"""A sweep ranked by a metric computed once at a trial's end (gt_janus): Tune's per-result metric check is off for
the fit, and only then (seen: `sweeps/phenomena/janus.yaml` stopped at its first evaluation). Ray Tune's error
whose message is a traceback is reported by its last line, the error itself."""

import os

import pytest

from dreamfusion.errors import first_line
from dreamfusion.tune.launch import STRICT_METRIC_ENV, _final_metric_allowed


@pytest.fixture(autouse=True)
def _no_switch(monkeypatch):
    monkeypatch.delenv(STRICT_METRIC_ENV, raising=False)


@pytest.mark.parametrize("metric", ["gt_janus", "gt_chamfer"])
def test_a_final_only_metric_turns_the_check_off_for_the_fit_only(metric):
    with _final_metric_allowed(metric):
        assert os.environ[STRICT_METRIC_ENV] == "1"
    assert STRICT_METRIC_ENV not in os.environ


def test_a_metric_of_every_evaluation_keeps_the_check(monkeypatch):
    with _final_metric_allowed("gt_iou"):
        assert STRICT_METRIC_ENV not in os.environ
    monkeypatch.setenv(STRICT_METRIC_ENV, "0")
    with _final_metric_allowed("gt_janus"):
        assert os.environ[STRICT_METRIC_ENV] == "1"
    assert os.environ[STRICT_METRIC_ENV] == "0"  # the user's own setting comes back


def test_a_traceback_message_is_reported_by_its_error_line():
    message = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n    raise ValueError(\n'
        "ValueError: Trial returned a result which did not include the specified metric(s) `gt_janus`\n"
    )
    assert first_line(ValueError(message)).startswith("ValueError: Trial returned a result")
    assert first_line(RuntimeError("no cluster\nmore detail")) == "no cluster"
    assert first_line(RuntimeError()) == "RuntimeError"
