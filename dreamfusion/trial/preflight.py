"""What can be checked about a trial config before anything is loaded: is the prior installed, does the scorer
pair with it, and can both condition on the prompt. `df-sweep run` checks its trial, a sweep every trial it can
produce."""

from __future__ import annotations

from dreamfusion import registry
from dreamfusion.config.schema import TrialConfig
from dreamfusion.errors import ConfigError
from dreamfusion.scoring.metrics import check_pairing, scorer_class


def check_trial(cfg: TrialConfig, label: str) -> None:
    """What the schema alone cannot see, checked without loading any model: is the prior there, can it (and its
    scorer) condition on the prompt? `label` says which file and which trial of the space the config came from."""
    prior = registry.find("prior", cfg.prior.kind)
    try:
        prior.check(cfg.prior)
        scorer, _ = scorer_class(cfg.scoring, prior)
        check_pairing(scorer, prior)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    for component in (prior, scorer):
        vocabulary = component.needs.vocabulary
        if vocabulary is not None and not vocabulary.knows(cfg.prompt):
            raise ConfigError(
                f"{label}: prompt: {cfg.prompt!r} is not known to the {component.name} "
                f"{component.kind}; expected {vocabulary.describe()} (see df-sweep priors)"
            )
    check_negative_prompt(cfg, prior, label)


def check_negative_prompt(cfg: TrialConfig, prior: type[registry.Component], label: str) -> None:
    """A loss that conditions on `sds.negative_prompt` needs a prior that knows the words ("" it always knows)."""
    negative, vocabulary = cfg.sds.negative_prompt, prior.needs.vocabulary
    reads = "sds.negative_prompt" in registry.find("loss", cfg.sds.loss).options
    if reads and negative and vocabulary is not None and not vocabulary.knows(negative):
        raise ConfigError(
            f'{label}: sds.negative_prompt: {negative!r} is not known to the {prior.name} prior; expected "" '
            f"or {vocabulary.describe()}"
        )
