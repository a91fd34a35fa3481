"""Score distillation: the loss (`sds.py`, the equation itself), classifier-free guidance, the weighting w(t) and
the timestep schedules. Each loss, weighting and schedule is a registered component; none of them knows which
prior, renderer or tracker it runs with."""
