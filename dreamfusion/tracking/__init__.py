"""MLflow tracking: one experiment per sweep, a parent run per launch, a child run per trial. The names of tags and
metrics (`schema.py`, which `analysis/` reads too), the store (`store.py`), run lifecycle (`runs.py`), the trial's
logging callback (`callback.py`) and the local UI server (`server.py`)."""
