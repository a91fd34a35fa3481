"""The report's folder is replaced whole: nothing of a previous report stays, a failed report leaves the previous
one as it was, and a folder that is not a report's is refused untouched."""

from __future__ import annotations

import pytest

from analysis.folder import replaced
from dreamfusion.errors import ConfigError


def _previous_report(out):
    (out / "turntables").mkdir(parents=True)
    (out / "turntables" / "run.gif").write_bytes(b"GIF89a")
    for name in ("report.html", "report.md", "trials.csv", "metric_vs_old_axis.png"):
        (out / name).write_text("old")


def test_the_new_report_replaces_the_old_one_whole(tmp_path):
    out = tmp_path / "report"
    _previous_report(out)
    with replaced(out) as staging:
        (staging / "report.md").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    assert (out / "report.md").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no staging or old folder left beside it


def test_a_report_that_fails_leaves_the_previous_one_as_it_was(tmp_path):
    out = tmp_path / "report"
    _previous_report(out)
    with pytest.raises(RuntimeError), replaced(out) as staging:
        (staging / "report.md").write_text("half")
        raise RuntimeError("a plot failed")
    assert (out / "report.md").read_text() == "old" and (out / "metric_vs_old_axis.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


@pytest.mark.parametrize("foreign", ["notes.txt", ".git", "data.csv"])
def test_a_folder_that_is_not_a_reports_is_refused_untouched(tmp_path, foreign):
    """A swap would delete whatever else the folder holds: `.git`, notes, or CSVs without a report beside them."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / foreign).mkdir() if foreign == ".git" else (out / foreign).write_text("keep")
    with pytest.raises(ConfigError, match="not a previous report's"), replaced(out):
        pass
    assert [p.name for p in out.iterdir()] == [foreign]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_file_as_the_folder_is_a_one_line_error(tmp_path):
    out = tmp_path / "report"
    out.write_text("")
    with pytest.raises(ConfigError, match="a file, not a folder"), replaced(out):
        pass


def test_a_new_or_empty_folder_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new" / "report"):
        with replaced(out) as staging:
            (staging / "report.md").write_text("new")
        assert (out / "report.md").read_text() == "new"
