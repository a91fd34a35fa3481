"""Where launches live: two launches of one sweep started in the same second get a directory each (real processes
racing on a real directory), and a launch is resumable only once Tune has saved a state that lists trials, as Tune's
public API reads it (`Tuner.can_restore` alone would take a Tuner with no trial state)."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tune.storage import LAUNCH_FILE, Launch, new_launch


def _claim_at(sweep_dir: str, start: float, names) -> None:
    time.sleep(max(0.0, start - time.time()))
    names.put(new_launch(sweep_dir))


def test_launches_started_in_the_same_second_get_a_directory_each(tmp_path):
    """The launch directory used to be named by checking that it did not exist yet, and created only later: two
    launches in one second then shared it, and Tune's state and checkpoints with it."""
    context = multiprocessing.get_context("fork")  # the children need no imports of their own: they start at once
    names = context.Queue()
    start = time.time() + 0.5  # after every process has started, and within one wall-clock second for all
    racers = [context.Process(target=_claim_at, args=(str(tmp_path), start, names)) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    claimed = [names.get(timeout=10) for _ in racers]
    assert len(set(claimed)) == 4, claimed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(claimed)


def _launch(folder: Path) -> Launch:
    return Launch({}, str(folder), TrialTracker("sqlite:///unused.db", "1", "parent"))


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"tuner.pkl": b"x"},  # Tune built its Tuner, and was stopped before its first save
        {"tuner.pkl": b"x", "experiment_state-2026-01-01_00-00-00.json": b'{"trial_data": []}'},
        {"tuner.pkl": b"x", "experiment_state-2026-01-01_00-00-00.json": b'{"trial_data": [[{}'},
        {
            "tuner.pkl": b"x",
            "experiment_state-2026-01-01_00-00-00.json": b'{"trial_data": []}',
            "experiment_state-2026-01-01_00-00-09.json": b'{"trial_data": [',  # the newest is what Tune reads
        },
        {"experiment_state-2026-01-01_00-00-00.json": b'{"trial_data": []}'},  # no Tuner to restore them with
    ],
    ids=["nothing", "tuner only", "no trials", "cut short", "newest cut short", "state only"],
)
def test_a_launch_is_not_resumable_before_tune_saved_its_trials(tmp_path, files):
    """Tune's files as a launch stopped early leaves them. A launch with saved trials (Tune's own state, which only a
    real fit writes) is resumed by the integration tests (tests/integration/sweep/test_resume.py,
    test_interrupts.py)."""
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert _launch(tmp_path).resumable() is False


def test_a_missing_launch_directory_is_not_resumable(tmp_path):
    assert _launch(tmp_path / "gone").resumable() is False


def test_a_launch_record_is_written_whole_or_not_at_all(tmp_path):
    """A write stopped half-way (here: a spec JSON cannot encode; in the field, a Ctrl-C) leaves no record rather
    than an empty one that `resume` and `status` cannot read."""
    with pytest.raises(TypeError):
        Launch({"bad": object()}, str(tmp_path), TrialTracker("sqlite:///unused.db", "1", "parent")).save()
    assert not (tmp_path / LAUNCH_FILE).exists()
    saved = _launch(tmp_path)
    saved.save()
    assert Launch.load(str(tmp_path)) == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAUNCH_FILE]
