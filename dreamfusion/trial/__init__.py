"""One SDS trial, split by job: its state and checkpoints (`state.py`), the SDS step (`step.py`), evaluation
(`evaluation.py`), and the loop that runs them and reports through callbacks (`loop.py`). It knows nothing of Ray
or MLflow: the sweep and tracking layers plug in as callbacks."""
