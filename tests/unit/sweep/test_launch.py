"""The driver's console says what failed in one line: Tune's log of a failed trial keeps its message and the
trial's own exception, and loses the traceback (which Tune keeps in the trial's error.txt)."""

from __future__ import annotations

import io
import logging

from dreamfusion.sweep.launch import TUNE_LOGGERS, errors_in_one_line


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
