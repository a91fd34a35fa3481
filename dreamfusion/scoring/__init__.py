"""How a trial is judged: the `Scorer` interface and the metrics over it (`metrics.py`), and CLIP (`clip.py`)."""
