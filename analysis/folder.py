"""The report's folder, replaced whole: a report is written into a new sibling folder and swapped in for the old
one when it is complete.

Why a swap rather than clearing the files a report writes: a report that fails or is interrupted half-way leaves
the previous report whole, and no half-written one, behind; and clearing by name would need the names every
version of the report ever wrote (plot names follow the swept axes, and older versions wrote other files), so a
stale plot of another sweep could sit beside the new report. A swap removes everything the old folder held, so
only a folder that holds nothing else is replaced: an empty one, or a previous report's (a `report.html` or
`report.md` among files of the kinds a report writes). Any other folder is refused in one line, untouched.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from analysis.media import MEDIA_DIR
from dreamfusion.errors import ConfigError

REPORT_PAGES = ("report.html", "report.md")
#: The kinds of file a report writes at its top level (and the media folder below it); what a file manager leaves.
REPORT_SUFFIXES = (".html", ".md", ".csv", ".png")
LEFT_BY_FILE_MANAGERS = (".DS_Store", "Thumbs.db")


def check_out(out: Path) -> None:
    """Raise ConfigError unless `out` is new, an empty folder, or a previous report's."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file, not a folder; name a new folder or a previous report's")
    if not out.is_dir():
        return
    entries = list(out.iterdir())
    foreign = sorted(p.name for p in entries if not _written_by_a_report(p))
    if entries and (foreign or not any((out / page).is_file() for page in REPORT_PAGES)):
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(
            f"--out {out}: holds files that are not a previous report's ({shown or 'no report.html'}); "
            "a report replaces its folder whole, so name an empty or new folder, or a previous report's"
        )


def _written_by_a_report(path: Path) -> bool:
    if path.is_dir():
        return path.name == MEDIA_DIR
    return path.suffix in REPORT_SUFFIXES or path.name in LEFT_BY_FILE_MANAGERS


@contextmanager
def replaced(out: Path) -> Iterator[Path]:
    """A new folder beside `out` to write the report into; when the block ends without an error, `out` is that
    folder (the previous one removed); on an error the new folder is removed and `out` is as it was."""
    check_out(out)
    staging = out.absolute().with_name(f".{out.name}.new-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write beside it ({exc.strerror or exc})") from None
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap(staging, out)


def _swap(staging: Path, out: Path) -> None:
    """`staging` becomes `out`. Two renames, so between them `out` is briefly absent, with the old report at
    `.NAME.old-…` beside it; the old one is deleted only once the new one is in place."""
    if not out.exists():
        staging.rename(out)
        return
    old = staging.with_name(staging.name.replace(".new-", ".old-", 1))
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
