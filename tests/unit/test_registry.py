"""A new variant is one class: a prior and a schedule defined here, and nowhere else, are valid config, listed by
`df-sweep priors` / `config`, run by `df-sweep run`, and recorded (name@version) on the run. Plugins also arrive
by an import path in the config or an installed entry point."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from sweep_helpers import TINY_RUN, set_args
from torch import Tensor
from typer.testing import CliRunner

from dreamfusion import registry
from dreamfusion.cli import app
from dreamfusion.config.files import flatten, load_trial_config
from dreamfusion.config.schema import PriorConfig
from dreamfusion.errors import ConfigError
from dreamfusion.nerf.render import resize
from dreamfusion.priors.base import Prior
from dreamfusion.sds.loss import make_loss
from dreamfusion.sds.schedules import Schedule, make_schedule
from dreamfusion.toyworld import world

T = 100  # a noise schedule of another length than the built-in priors' 1000


class FlatColourPrior(Prior):
    """Every image of a prompt is one flat colour, the prompt's toy-world colour (white for a shape-only prompt,
    grey unconditionally): its data is a point mass, so ε̂(z_t) = (z_t − α_t·x*)/σ_t exactly."""

    name = "test-flat-colour"
    summary = "a point-mass prior defined in a test"
    scorer = "toyworld"

    @classmethod
    def load(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype) -> FlatColourPrior:
        return cls(device)

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device, self.dtype = device, torch.float32
        self.alphas_cumprod = torch.linspace(0.9999, 0.01, T)  # [T]

    def encode_text(self, prompts: list[str]) -> Tensor:
        def colour(prompt: str) -> tuple[float, float, float]:
            caption = world.parse_prompt(prompt)
            if caption is None:
                return (0.5, 0.5, 0.5)
            return world.WHITE if caption.colour is None else world.COLOURS[caption.colour]

        return torch.tensor([colour(p) for p in prompts], device=self.device)  # [B, 3]

    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return resize(rgb, 8) * 2 - 1  # [B, 3, 8, 8]

    def from_model_space(self, z: Tensor) -> Tensor:
        return ((z + 1) / 2).clamp(0, 1)

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        x0 = emb.view(-1, 3, 1, 1) * 2 - 1
        return (z_t - ab.sqrt() * x0) / (1 - ab).sqrt()


class MidpointSchedule(Schedule):
    name = "test-midpoint"
    summary = "t fixed at the middle of [t_min, t_max]"

    def __call__(self, step: int, generator: torch.Generator) -> int:
        return (self.lo + self.hi) // 2


@pytest.fixture
def registered():
    """The two classes above, registered for one test and removed after it."""
    for cls in (FlatColourPrior, MidpointSchedule):
        registry.register(cls)
    yield
    registry.unregister("prior", FlatColourPrior.name)
    registry.unregister("schedule", MidpointSchedule.name)


def test_a_prior_and_a_schedule_defined_in_a_test_run_through_df_sweep_run(registered, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    args = [
        "run",
        "--prompt",
        "a red cube",
        "--steps",
        "20",
        "--out",
        str(tmp_path / "run"),
        "--tracking-uri",
        uri,
        *TINY_RUN,
        *set_args(
            prior__kind="test-flat-colour",
            sds__timesteps__schedule="test-midpoint",
            eval__every=10,
            checkpoint_every=10,
        ),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("df-sweep-run").experiment_id])[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["prior.kind"] == "test-flat-colour"
    assert run.data.tags["df.component.prior"] == "test-flat-colour@1"
    assert run.data.tags["df.component.schedule"] == "test-midpoint@1"
    assert run.data.tags["df.component.scorer"] == "toyworld@1"  # the scorer the new prior declares it pairs with
    lo, hi = int(0.02 * T), int(0.98 * T)  # [2, 98]: both ends of U(0.02, 0.98) included, as threestudio draws
    assert {m.value for m in client.get_metric_history(run.info.run_id, "t")} == {float((lo + hi) // 2)}
    assert "gt_iou" in run.data.metrics  # the toy world's evaluator applies to the prompt, whatever the prior


def test_registered_components_are_listed_where_users_look(registered):
    priors = CliRunner().invoke(app, ["priors"]).output
    assert "test-flat-colour" in priors and "a point-mass prior defined in a test" in priors
    reference = CliRunner().invoke(app, ["config"]).output
    schedule_line = next(line for line in reference.splitlines() if line.strip().startswith("schedule:"))
    assert "test-midpoint" in schedule_line and "dreamtime" in schedule_line


def test_an_unknown_component_is_a_one_line_error_that_lists_the_known_ones():
    known = "csd, ism, nfsd, sdi, sds, vsd"
    with pytest.raises(ConfigError, match=rf"^--set: sds.loss: unknown loss 'sdss'; expected one of {known}$"):
        load_trial_config(None, ["sds.loss=sdss"])


def test_a_second_class_under_a_taken_name_is_refused(registered):
    class Impostor(Schedule):
        name = "test-midpoint"

        def __call__(self, step: int, generator: torch.Generator) -> int:
            return 0

    with pytest.raises(TypeError, match="registered twice"):
        registry.register(Impostor)
    assert registry.find("schedule", "test-midpoint") is MidpointSchedule
    registry.register(MidpointSchedule)  # the same class again is not a conflict (a module imported twice)


PLUGIN = """
    import torch
    from dreamfusion import registry
    from dreamfusion.sds.weighting import Weighting

    @registry.register
    class Halved(Weighting):
        name = "{name}"
        version = "3"

        def __call__(self, alpha_bar):
            return (1 - alpha_bar) / 2
"""


def _plugin_module(folder: Path, module: str, name: str) -> None:
    (folder / f"{module}.py").write_text(textwrap.dedent(PLUGIN.format(name=name)))


def test_a_plugin_named_in_the_config_is_imported_before_the_config_is_read(tmp_path, monkeypatch):
    _plugin_module(tmp_path, "df_test_plugin_cfg", "test-halved")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cfg = load_trial_config(None, ["plugins=[df_test_plugin_cfg]", "sds.weighting=test-halved"])
        assert cfg.sds.weighting == "test-halved" and registry.find("weighting", "test-halved").version == "3"
    finally:
        registry.unregister("weighting", "test-halved")
        sys.modules.pop("df_test_plugin_cfg", None)
    with pytest.raises(ConfigError, match="plugins: cannot import 'no_such_plugin_module'"):
        load_trial_config(None, ["plugins=[no_such_plugin_module]"])


@pytest.mark.parametrize(
    ("module", "source", "said"),
    [
        (".df_relative", None, r"cannot import '\.df_relative' \(TypeError: "),
        (
            "df_test_plugin_raises",
            "raise RuntimeError('boom')",
            r"cannot import 'df_test_plugin_raises' \(RuntimeError: boom\)",
        ),
        ("df_test_plugin_exits", "import sys\nsys.exit(0)", r"importing 'df_test_plugin_exits' called sys.exit\(0\)"),
    ],
)
def test_a_plugin_that_fails_to_import_is_one_line_and_a_failure(tmp_path, monkeypatch, module, source, said):
    """A relative name, a plugin that raises, and one that calls sys.exit(0): each a one-line error through the
    CLI with a non-zero exit (sys.exit(0) used to end `validate` with 0, having checked nothing)."""
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: p\nbase:\n  prompt: a red cube\n  plugins: ['{module}']\nspace:\n  seed: {{grid: [0, 1]}}\n"
    )
    try:
        result = CliRunner().invoke(app, ["validate", str(spec)])
    finally:
        sys.modules.pop(module, None)
    assert result.exit_code == 2, result.output  # the CLI's exit code for a bad config
    assert re.search(said, result.output) and "Traceback" not in result.output, result.output


def test_an_installed_entry_point_registers_its_components(tmp_path, monkeypatch):
    """A real distribution on sys.path (a dist-info folder with entry_points.txt), as pip would install it."""
    _plugin_module(tmp_path, "df_test_plugin_ep", "test-halved-ep")
    info = tmp_path / "df_test_plugin_ep-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: df-test-plugin-ep\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nhalved = df_test_plugin_ep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry.load_entry_points()
        assert "test-halved-ep" in registry.names("weighting")
    finally:
        registry.unregister("weighting", "test-halved-ep")
        sys.modules.pop("df_test_plugin_ep", None)


def test_every_builtin_declares_what_the_catalogue_shows():
    for kind in registry.KINDS:
        for cls in registry.components(kind):
            assert cls.kind == kind and cls.summary and cls.version, cls
            assert issubclass(cls.Options, registry.Options), cls
            assert all(info.description for info in cls.Options.model_fields.values()), cls


OPTION_PLUGIN = """
    import torch
    from pydantic import Field

    from dreamfusion import registry
    from dreamfusion.sds.schedules import Schedule
    from dreamfusion.sds.sds import SDS
    from dreamfusion.toyworld.prior import ToyWorldPrior


    @registry.register
    class Fixed(Schedule):
        name, summary = "test-fixed", "t fixed at a chosen fraction of T"

        class Options(registry.Options):
            at: float = Field(0.5, gt=0, lt=1)
            \"\"\"The fraction of T every step takes.\"\"\"

        def __call__(self, step, generator):
            return int(self.options.at * self.T)


    @registry.register
    class Scaled(SDS):
        name, version, summary = "test-scaled", "1", "SDS with its gradient multiplied by a factor"

        class Options(registry.Options):
            factor: float = Field(1.0, ge=0)
            \"\"\"What the SDS gradient is multiplied by.\"\"\"
            label: str = "x"
            \"\"\"A string option.\"\"\"

        def gradient(self, x, residual, alpha_bar, eps_hat):
            return super().gradient(x, self.options.factor * residual, alpha_bar, eps_hat)


    @registry.register
    class Dimmed(ToyWorldPrior):
        name, summary = "test-dimmed", "the toy prior under another name, with an option of its own"

        class Options(registry.Options):
            dim: float = Field(1.0, gt=0, le=1)
            \"\"\"A number only this prior reads.\"\"\"
"""


@pytest.fixture
def option_plugin(tmp_path, monkeypatch):
    """A schedule, a loss and a prior, each with an option of its own, in one file that nothing else names."""
    (tmp_path / "df_test_options.py").write_text(textwrap.dedent(OPTION_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield ["plugins=[df_test_options]"]
    for kind, name in (("schedule", "test-fixed"), ("loss", "test-scaled"), ("prior", "test-dimmed")):
        registry.unregister(kind, name)
    sys.modules.pop("df_test_options", None)


def test_a_plugins_options_are_config_keys_of_the_block_that_chooses_it(option_plugin):
    chosen = [*option_plugin, "sds.timesteps.schedule=test-fixed", "sds.loss=test-scaled", "prior=test-dimmed"]
    cfg = load_trial_config(None, [*chosen, "sds.timesteps.at=0.25", "sds.factor=3", "prior.dim=0.5"])
    flat = flatten(cfg)
    assert (flat["sds.timesteps.at"], flat["sds.factor"], flat["sds.label"], flat["prior.dim"]) == (0.25, 3.0, "x", 0.5)
    defaults = flatten(load_trial_config(None, chosen))  # the chosen classes' defaults fill the config
    assert (defaults["sds.timesteps.at"], defaults["sds.factor"], defaults["prior.dim"]) == (0.5, 1.0, 1.0)
    assert "sds.timesteps.anneal_to" not in defaults  # the options of a component not chosen stay out
    schedule = make_schedule(cfg.sds.timesteps, 10, torch.ones(1000), seed=0)
    assert schedule(0, torch.Generator()) == 250  # the class reads its own typed option
    loss = make_loss(cfg.sds)
    assert loss.options.factor == 3.0 and cfg.prior.options_for(registry.find("prior", "test-dimmed")).dim == 0.5


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("sds.timesteps.at=1.5", "--set: sds.timesteps.at: Input should be less than 1"),
        ("sds.factor=much", "--set: sds.factor: Input should be a valid number, unable to parse string as a number"),
        ("prior.dim=0", "--set: prior.dim: Input should be greater than 0"),
        ("sds.timesteps.att=0.3", "--set: sds.timesteps.att: unknown key"),
        ("prior.factor=2", "--set: prior.factor: unknown key"),
    ],
)
def test_a_bad_option_is_a_one_line_error_naming_its_key(option_plugin, override, error):
    chosen = [*option_plugin, "sds.timesteps.schedule=test-fixed", "sds.loss=test-scaled", "prior=test-dimmed"]
    with pytest.raises(ConfigError) as caught:
        load_trial_config(None, [*chosen, override])
    assert str(caught.value) == error


def test_a_plugins_options_are_listed_by_df_sweep_config(option_plugin, tmp_path):
    (tmp_path / "trial.yaml").write_text("plugins: [df_test_options]\n")
    load_trial_config(tmp_path / "trial.yaml")  # imports the plugin, as any config naming it does
    reference = CliRunner().invoke(app, ["config"]).output
    assert "at: 0.5  # schedule test-fixed only: The fraction of T every step takes." in reference
    assert "factor: 1.0  # loss test-scaled only: What the SDS gradient is multiplied by." in reference
    assert "dim: 1.0  # prior test-dimmed only: A number only this prior reads." in reference


def test_a_plugins_options_reach_the_mlflow_params_of_a_run(option_plugin, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    sets = set_args(sds__timesteps__schedule="test-fixed", sds__loss="test-scaled", eval__every=5)
    sets += ["--set", option_plugin[0], "--set", "sds.timesteps.at=0.3", "--set", "sds.factor=2"]
    sets += set_args(checkpoint_every=5)
    args = ["run", "--prompt", "a red cube", "--steps", "5", "--out", str(tmp_path / "run"), "--tracking-uri", uri]
    result = CliRunner().invoke(app, [*args, *TINY_RUN, *sets])
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("df-sweep-run").experiment_id])[0]
    assert (run.data.params["sds.timesteps.at"], run.data.params["sds.factor"]) == ("0.3", "2.0")
    assert run.data.tags["df.component.loss"] == "test-scaled@1"
    assert {m.value for m in client.get_metric_history(run.info.run_id, "t")} == {300.0}


def test_an_evaluators_options_are_filled_where_every_evaluator_runs():
    """`eval.evaluators: null` runs every evaluator that applies, so each one's options are in the config; a list
    fills only the options of the evaluators it names."""
    from dreamfusion.evaluators.base import Evaluator, Metric

    @registry.register
    class Counting(Evaluator):
        name, summary = "test-counting", "how many views an evaluation rendered"
        metrics = {"view_count": Metric("max", "views rendered")}

        class Options(registry.Options):
            scale: float = 1.0
            """What the count is multiplied by."""

        def evaluate(self, views):
            return {"view_count": self.options.scale * 8}

    try:
        assert flatten(load_trial_config(None, ["eval.scale=2"]))["eval.scale"] == 2.0
        assert flatten(load_trial_config(None, []))["eval.scale"] == 1.0
        assert "eval.scale" not in flatten(load_trial_config(None, ["eval.evaluators=[clip]"]))
        with pytest.raises(ConfigError, match=r"^--set: eval.scale: Input should be a valid number"):
            load_trial_config(None, ["eval.scale=many"])
    finally:
        registry.unregister("evaluator", "test-counting")
