"""Evaluators: the metric producers a trial runs at each evaluation (`base.py`); the CLIP metrics (`clip.py`).
Others register from where their knowledge lives (the toy world's exact ground truth, in `toyworld/`)."""
