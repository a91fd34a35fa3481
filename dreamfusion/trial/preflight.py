"""What can be checked about a trial config before anything is loaded: is the prior installed, does the scorer
pair with it, and can both condition on the prompt. `df-sweep run` checks its trial, a sweep every trial it can
produce."""

from __future__ import annotations

from dreamfusion import registry
from dreamfusion.config.base import selecting_blocks
from dreamfusion.config.schema import TrialConfig
from dreamfusion.errors import ConfigError, shorten
from dreamfusion.scoring.metrics import check_pairing, scorer_class
from dreamfusion.scoring.none import NO_SCORER


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
    for name in cfg.eval.evaluators or ():
        if not registry.find("evaluator", name).applies(cfg) and cfg.scoring.model == NO_SCORER:
            raise ConfigError(
                f"{label}: eval.evaluators: {name} computes its metrics with the scorer, and scoring.model is "
                f"{NO_SCORER}; expected evaluators that need no scorer, or a scorer"
            )
    for component in (prior, scorer):
        vocabulary = component.needs.vocabulary
        if vocabulary is not None and not vocabulary.knows(cfg.prompt):
            raise ConfigError(
                f"{label}: prompt: {shorten(cfg.prompt)} is not known to the {component.name} "
                f"{component.kind}; expected {vocabulary.describe()} (see df-sweep priors)"
            )
    check_prompt_options(cfg, prior, label)


def check_prompt_options(cfg: TrialConfig, prior: type[registry.Component], label: str) -> None:
    """A chosen component's option that is a prompt (`registry.Prompt`: NFSD's negative prompt, say) is one the
    prior conditions on, so it must know the words ("" it always knows)."""
    vocabulary = prior.needs.vocabulary
    if vocabulary is None:
        return
    for block in selecting_blocks(cfg):
        for component in block.chosen():
            options = block.options_for(component)
            for key, info in type(options).model_fields.items():
                value = getattr(options, key)
                if registry.is_prompt(info) and value and not vocabulary.knows(value):
                    raise ConfigError(
                        f"{label}: {registry.block(component.kind)}.{key}: {value!r} is not known to the "
                        f'{prior.name} prior; expected "" or {vocabulary.describe()}'
                    )
