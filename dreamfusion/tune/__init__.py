"""Running a sweep on Ray Tune, tracked in MLflow, kept apart from the spec (`dreamfusion/sweep/`) because all of
it needs Ray, MLflow or both: the Ray a sweep runs on (`session.py`; an embedded one in `embedded.py`, cleaned up
by `reaper.py`; the private Ray it needs, in `ray_private.py` alone), the spec as a Tuner (`tuner.py`, with
`domains.py`, `searchers.py` and `pbt.py`), a trial on a worker (`worker.py`), launch and resume (`launch.py`), the
driver's progress callback (`monitor.py`), where a launch lives (`storage.py`), and what it left (`results.py`,
`retention.py`). The shared prior's actors are `dreamfusion/serving/service.py`."""
