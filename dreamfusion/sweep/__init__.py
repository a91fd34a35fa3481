"""Sweeps: a YAML spec of many trials run on Ray Tune and tracked in MLflow. The spec (`spec.py`) and its
validation (`validate.py`) import no Ray, so `df-sweep validate` and `--dry-run` stay fast; storage (`storage.py`),
the Ray session (`session.py`), the worker's trainable (`worker.py`), the Tuner (`tuner.py`), results
(`results.py`) and launch/resume (`launch.py`) run a sweep; `table.py` is how it reads on a terminal."""
