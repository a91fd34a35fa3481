"""What `df-sweep run` and a sweep print, in one place so that both read alike: trial lines, the sweep's progress
and ETA (`progress.py`), one trial's progress bar (`trial_progress.py`), the dry-run, validate and status tables
and the names of trials (`table.py`), and what a sweep will cost before it runs (`cost.py`). Presentation only: no
Ray, no MLflow."""
