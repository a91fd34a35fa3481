"""Frozen text-to-image priors behind one interface (`base.py`): the diffusers adapters for Stable Diffusion and
DeepFloyd IF live here; the toy world's priors live with the toy world. `base.load_prior` loads any of them."""
