"""The driver's console says what failed in one line: Tune's log of a failed trial keeps its message and the
trial's own exception, and loses the traceback (which Tune keeps in the trial's error.txt); Tune's own loop failing
ends the launch in one line that says whether resume continues it."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from dreamfusion.errors import ConfigError, RunError
from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tune.launch import TUNE_LOGGERS, errors_in_one_line, fit_tuner
from dreamfusion.tune.storage import Launch


class WrappedError(Exception):
    """Like Ray's RayTaskError: a long message, and the trial's exception as `cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n  File ...\n  File ...")
        self.cause = cause


def _logged(exception: BaseException) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    log = logging.getLogger(TUNE_LOGGERS[0])
    log.addHandler(handler)
    try:
        with errors_in_one_line():
            try:
                raise exception
            except BaseException as exc:
                log.error("Trial task failed for trial %s", "abc_00001", exc_info=exc)
    finally:
        log.removeHandler(handler)
    return out.getvalue()


def test_a_failed_trial_is_one_line_with_its_own_reason():
    text = _logged(WrappedError(RuntimeError("attempt to write a readonly database\nSQL: ...")))
    assert text == "Trial task failed for trial abc_00001: RuntimeError: attempt to write a readonly database\n"


def test_outside_the_block_tune_logs_as_it_does():
    log = logging.getLogger(TUNE_LOGGERS[0])
    assert not log.filters


class UnexpectedInTune:
    """A Tuner whose own loop fails. Ray 2.60's controller raises `RuntimeError("Caught unexpected exception: ...")`
    when Ray's memory monitor kills a trial's actor while it starts, which the soak met on this shared machine
    (others filled its memory); running a node out of memory on purpose is not something a test may do here, so
    this stands in for the Tuner."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def fit(self) -> None:
        raise self.error


OOM = RuntimeError("Caught unexpected exception: 2 worker(s) were killed due to the node running low on memory.\n...")


def _launch(folder: Path) -> Launch:
    spec = {"name": "oom", "space": {"seed": {"grid": [0]}}}
    return Launch(spec, str(folder), TrialTracker("sqlite:///unused.db", "1", "parent"))


def test_tune_failing_in_its_own_loop_is_one_line_that_says_how_to_go_on(tmp_path, monkeypatch):
    with pytest.raises(RunError) as raised:
        fit_tuner(_launch(tmp_path), UnexpectedInTune(OOM))
    reason = "Caught unexpected exception: 2 worker(s) were killed due to the node running low on memory."
    assert str(raised.value) == f"oom: Ray Tune stopped ({reason}); nothing to resume: launch it again"
    monkeypatch.setattr(Launch, "resumable", lambda self: True)  # once Tune has saved its trials, resume continues
    with pytest.raises(RunError, match=r"; df-sweep resume oom continues it$"):
        fit_tuner(_launch(tmp_path), UnexpectedInTune(OOM))


def test_a_ctrl_c_and_a_user_mistake_inside_fit_go_on_as_they_are(tmp_path):
    for error in (KeyboardInterrupt(), ConfigError("spec.yaml: tune.metric: expected ...")):
        with pytest.raises(type(error)):
            fit_tuner(_launch(tmp_path), UnexpectedInTune(error))
