"""One prior shared by the trials placed on a node or GPU (`prior.placement: shared`), its three sides together:
the trial's (`served.py`, a `Prior` whose text encoder and denoiser answer from elsewhere), the denoiser's, which
stacks the trials' requests (`batching.py`), and the Ray actors that carry them in a sweep (`service.py`). Only
`service.py` touches Ray, so what a trial imports stays free of it."""
