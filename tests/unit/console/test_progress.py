"""Progress lines: the step rate and ETA of a trial, the done/running/pending count and ETA of a sweep (checked
against the arithmetic written out by hand), and `df-sweep run`'s console progress in a log."""

from __future__ import annotations

import pytest

from dreamfusion.console.progress import StepRate, SweepClock, duration, eval_line
from dreamfusion.console.trial_progress import ConsoleProgress
from dreamfusion.trial.loop import TrialInfo


@pytest.mark.parametrize(
    "seconds, text", [(0.4, "0s"), (59.4, "59s"), (60, "1m00s"), (725, "12m05s"), (3600 * 3 + 7 * 60 + 5, "3h07m")]
)
def test_durations_read_as_a_person_says_them(seconds, text):
    assert duration(seconds) == text


def test_a_trial_bar_shows_the_rate_since_it_started_and_the_time_left():
    rate = StepRate(total=400, start_step=100, started=10.0)  # resumed at step 100
    # 50 steps in 20 s: 2.5 steps/s; 250 steps left: 100 s
    assert rate.bar(150, now=30.0) == "step 150/400 [#######-------------]  37%  2.5 steps/s  ETA 1m40s"


def test_the_sweep_eta_spreads_the_work_left_over_the_trials_that_run_at_once():
    clock = SweepClock(total=6, started=0.0)
    clock.trial_started("a", 0.0)
    clock.trial_started("b", 0.0)
    clock.trial_stopped("a", 30.0, finished=True)
    clock.trial_stopped("b", 50.0, finished=True)  # mean duration 40 s, two at once
    clock.trial_started("c", 50.0)
    clock.trial_started("d", 60.0)
    # at t=70: c has 40-20=20 s left, d 40-10=30 s, two pending trials 40 s each: 130 s of work over 2 slots
    assert clock.line(done=2, now=70.0) == "trials: 2/6 done, 2 running, 2 pending; elapsed 1m10s; ETA 1m05s"


def test_a_paused_trial_is_not_counted_as_finished():
    clock = SweepClock(total=2, started=0.0)
    clock.trial_started("a", 0.0)
    clock.trial_stopped("a", 10.0, finished=False)  # paused by HyperBand
    assert clock.durations == [] and clock.line(0, 10.0).endswith("ETA after the first trial finishes")


def test_run_progress_in_a_log_prints_the_bar_at_the_end_and_each_eval():
    lines: list[str] = []
    progress = ConsoleProgress(3, lines.append, tty=False)
    parts = {"loss": "sds@2", "schedule": "dreamtime@2", "weighting": "dreamfusion@1"}
    progress.on_start(None, 0, TrialInfo("toy prior", "toy clip", parts))  # type: ignore[arg-type]
    for step in (1, 2, 3):
        progress.on_step(step, {"loss": 0.5, "t": 500.0})
    progress.on_eval(3, {"clip_score": 0.25}, None, None)  # type: ignore[arg-type]
    assert lines[:3] == [
        "prior: toy prior",
        "scorer: toy clip",
        "sds: loss sds@2, schedule dreamtime@2, weighting dreamfusion@1",
    ]
    assert lines[3].startswith("step 3/3 [####################] 100%") and "steps/s  ETA 0s  loss 0.5000" in lines[3]
    assert lines[4].startswith("step 3/3 [") and lines[4].endswith("clip_score 0.250")
    assert len(lines) == 5  # steps 1 and 2 came within LOG_EVERY_S of the start: no line for them
    assert eval_line(100, 400, 12.4, {"gt_iou": 0.8}) == "step 100/400 [12s]  gt_iou 0.800"
