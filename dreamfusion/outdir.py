"""The `--out` of a command that writes a new set of files (`export`): `run`'s rule, that a non-empty directory it
did not make is never written into, and no debris: a command that fails removes what it wrote."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dreamfusion.errors import ConfigError


def check_fresh(out: Path, hint: str = "pass another --out, or empty it") -> None:
    """`out` is a directory that does not exist yet or is empty; a file or a directory holding files is refused."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; expected a directory")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: holds files already, which this command would overwrite or mix with; {hint}")


@contextmanager
def fresh_out(out: Path) -> Iterator[Path]:
    """`out`, checked fresh and created; if the body fails (an error or Ctrl-C), what it wrote is removed again:
    the directory itself where this call made it, else its contents."""
    check_fresh(out)
    made = not out.exists()
    writable_dir(out)
    try:
        yield out
    except BaseException:
        if made:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for child in out.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        raise


@contextmanager
def kept_if_written(out: Path, made: bool) -> Iterator[Path]:
    """A directory this command `made` and then failed before writing in: removed, so a failed command leaves no
    empty run directory. One holding anything (a checkpoint to continue from) stays."""
    try:
        yield out
    except BaseException:
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def writable_dir(out: Path) -> Path:
    """`out` made if needed, and writable: a file there, or a folder this process cannot make or write in, is one
    line (`--out`), not an OSError traceback from deep in the command."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; expected a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return out
