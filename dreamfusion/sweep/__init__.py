"""Sweeps: a YAML spec of many trials (`spec.py`), run on Ray Tune and tracked in MLflow (`launch.py`).

`spec` has no Ray dependency, so `df-sweep validate` and `--dry-run` stay fast; import `launch` only to run.
"""
