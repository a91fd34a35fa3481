"""A launch's trial states from the grid `Tuner.fit` returned, through Tune's public ResultGrid (each trial's error,
and how many trials ended each way): trusted where every trial ended and the errors found are the ones counted."""

from __future__ import annotations

from types import SimpleNamespace

from dreamfusion.tune.results import ended_states


class Grid(list):
    """A ResultGrid as `ended_states` reads it: its results, and Tune's counts of terminated and errored trials."""

    def __init__(self, errors: dict[str, bool], num_terminated: int, num_errors: int) -> None:
        super().__init__(
            SimpleNamespace(path=f"/storage/sweep/launch/{trial_id}", error=RuntimeError() if failed else None)
            for trial_id, failed in errors.items()
        )
        self.num_terminated, self.num_errors = num_terminated, num_errors


def test_every_trial_ended_each_state_from_its_error():
    grid = Grid({"a": False, "b": True, "c": False}, num_terminated=2, num_errors=1)
    assert ended_states(grid) == {"a": "TERMINATED", "b": "ERROR", "c": "TERMINATED"}


def test_an_interrupted_fit_says_nothing_of_each_trial():
    """A trial still pending or paused has no error, yet did not finish."""
    assert ended_states(Grid({"a": False, "b": False}, num_terminated=1, num_errors=0)) is None


def test_an_error_not_read_back_says_nothing_of_each_trial():
    """An errored trial whose error file Tune could not read would pass for a finished one."""
    assert ended_states(Grid({"a": False, "b": False}, num_terminated=1, num_errors=1)) is None
