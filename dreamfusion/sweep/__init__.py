"""Sweeps as a researcher writes them: the YAML spec (`spec.py`), its search space (`space.py`), what the chosen
searcher and scheduler cannot do with it (`search.py`), and the whole check (`validate.py`). Nothing here imports
Ray or MLflow, so `df-sweep validate` and `--dry-run` stay fast; running a sweep is `dreamfusion/tune/`, and how
one reads on a terminal is `dreamfusion/console/`."""
