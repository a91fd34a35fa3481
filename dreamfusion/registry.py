"""The component registry: every prior, scorer, timestep schedule, weighting, SDS loss and evaluator is one class
that registers itself under a name, and everything else reads this registry.

Config validation, `df-sweep priors` / `df-sweep config`, the loaders, the sweep spec's checks and the MLflow tags
all ask the registry, so a new variant is one `@register`ed class in one file and nothing else is edited:

    @register
    class Sqrt(Schedule):
        name, version, summary = "my_sqrt", "1", "t = t_max·(1 − progress^p)"

        class Options(registry.Options):
            power: float = Field(0.5, gt=0)  # a docstring below a field is its reference entry

        def __call__(self, step, generator): ...

A component's options are keys of the config block that selects it (`sds.timesteps.power` above, beside
`sds.timesteps.schedule`): specs address them by the same dotted keys, the block validates them against the chosen
class's `Options`, and `df-sweep config`, the docs and the MLflow params list them.

Components register when their module is imported: the built-ins below always (imported by name on first use,
so that this module imports none of them and nothing here can form an import cycle), third-party packages through
the `df_sweep.components` entry point group, and any other module named in a trial config's `plugins` list.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Annotated, Any, ClassVar, Protocol, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from dreamfusion.errors import ConfigError, first_line

#: The kinds of component, and the config key that picks one (what `df-sweep config` and errors point at).
KINDS: dict[str, str] = {
    "prior": "prior.kind",
    "scorer": "scoring.model",
    "schedule": "sds.timesteps.schedule",
    "weighting": "sds.weighting",
    "loss": "sds.loss",
    "evaluator": "eval.evaluators",
}


def block(kind: str) -> str:
    """The config block that selects a component of this kind and holds its options: `sds.timesteps`."""
    return KINDS[kind].rpartition(".")[0]


#: Modules of the components that ship with df-sweep, imported by name the first time the registry is read.
BUILTINS: tuple[str, ...] = (
    "dreamfusion.sds.weighting",
    "dreamfusion.sds.schedules",
    "dreamfusion.sds.sds",
    "dreamfusion.sds.csd",
    "dreamfusion.sds.nfsd",
    "dreamfusion.sds.vsd",
    "dreamfusion.sds.ism",
    "dreamfusion.sds.sdi",
    "dreamfusion.scoring.clip",
    "dreamfusion.scoring.none",
    "dreamfusion.evaluators.clip",
    "dreamfusion.priors.diffusers_sd",
    "dreamfusion.priors.diffusers_if",
    "dreamfusion.toyworld.prior",
    "dreamfusion.toyworld.scorer",
    "dreamfusion.toyworld.analytic",
    "dreamfusion.toyworld.ground_truth",
    "dreamfusion.toyworld.detectors",
    "dreamfusion.toyworld.mesh_truth",
)
#: The entry point group through which an installed package adds components.
ENTRY_POINT_GROUP = "df_sweep.components"


class Vocabulary(Protocol):
    """A closed set of prompts a component can condition on (the toy world's 84 captions, say)."""

    label: str
    """A few words for catalogues: "the toy world's 84 captions"."""

    def knows(self, prompt: str) -> bool: ...

    def describe(self) -> str:
        """What a known prompt looks like, for an error message: "'a <colour> <shape>' such as 'a red cube'"."""
        ...


@dataclass(frozen=True)
class Needs:
    """What a component needs to be usable, checked before anything is loaded."""

    vocabulary: Vocabulary | None = None
    """Only prompts this vocabulary knows can be used with it."""
    gpu: bool = False
    """Practical only on a GPU (it runs on a CPU, slowly: the tests do)."""
    prior: str | None = None
    """Works only with this prior (a scorer that reads the prior's own data, say)."""


#: What every config block and every component's options obey: unknown keys are errors, assignments are validated,
#: floats are finite, and a field's docstring is its reference entry.
STRICT = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True, allow_inf_nan=False)


class Options(BaseModel):
    """Base of a component's own typed options (a nested `class Options(registry.Options)` on the component)."""

    model_config = STRICT


#: The type of an option that is a prompt: checked against the prior's vocabulary before anything is loaded.
Prompt = Annotated[str, Field(json_schema_extra={"prompt": True})]


def is_prompt(info: FieldInfo) -> bool:
    """Whether an option's type is `Prompt`, alone or in a union (`Prompt | None`)."""

    def marked(annotation: Any) -> bool:
        extras = [getattr(m, "json_schema_extra", None) for m in getattr(annotation, "__metadata__", ())]
        return any(isinstance(e, dict) and e.get("prompt") for e in extras) or any(map(marked, get_args(annotation)))

    extra = info.json_schema_extra
    return (isinstance(extra, dict) and bool(extra.get("prompt"))) or marked(info.annotation)


class Component:
    """Base of every registered class: its kind (set by the kind's base class), name, version, catalogue line and
    options."""

    kind: ClassVar[str]
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    """Changes whenever the algorithm changes, so runs made before and after can be told apart."""
    summary: ClassVar[str] = ""
    """One line for `df-sweep priors` / `df-sweep config`: what it is, with its reference."""
    needs: ClassVar[Needs] = Needs()
    Options: ClassVar[type[Options]] = Options
    """The component's own settings; a subclass declares a nested `class Options(registry.Options)`."""

    @classmethod
    def label(cls) -> str:
        """`name@version`: how runs record which component they used."""
        return f"{cls.name}@{cls.version}"


C = TypeVar("C", bound=type[Component])

_registered: dict[str, dict[str, type[Component]]] = {kind: {} for kind in KINDS}
_builtins_loaded = False


def register(cls: C) -> C:
    """Class decorator: make `cls` findable under its kind and name. Registering a second, different class under a
    taken name is an error (two plugins would otherwise silently shadow each other)."""
    kind, name = getattr(cls, "kind", None), getattr(cls, "name", None)
    if kind not in KINDS:
        raise TypeError(f"{cls.__qualname__}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__}: a registered component needs a non-empty `name`")
    taken = _registered[kind].get(name)
    if taken is not None and _identity(taken) != _identity(cls):
        raise TypeError(f"{kind} {name!r} is registered twice: {_identity(taken)} and {_identity(cls)}")
    _registered[kind][name] = cls
    return cls


def unregister(kind: str, name: str) -> None:
    """Remove a component: for tests that register classes of their own."""
    _registered[kind].pop(name, None)


def find(kind: str, name: str) -> type[Any]:
    """The class registered as `name`; an unknown name is a one-line ConfigError that lists the known ones."""
    _load_builtins()
    found = _registered[kind].get(name)
    if found is None:
        raise ConfigError(f"unknown {kind} {name!r}; expected one of {', '.join(names(kind))}")
    return found


def names(kind: str) -> list[str]:
    _load_builtins()
    return sorted(_registered[kind])


def components(kind: str) -> list[type[Any]]:
    """Every registered class of a kind, by name."""
    return [_registered[kind][n] for n in names(kind)]


def option_keys(cls: type[Component]) -> list[str]:
    """The dotted trial-config keys of a component's options: `sds.timesteps.strata`."""
    return [f"{block(cls.kind)}.{name}" for name in cls.Options.model_fields]


def owners(key: str) -> list[type[Component]]:
    """The components that declare `key` as one of their own options."""
    return [c for kind in KINDS for c in components(kind) if key in option_keys(c)]


def load_plugins(modules: Iterable[str]) -> None:
    """Import the modules a config names in `plugins`, so the components they define register. A plugin is code
    from elsewhere: whatever its import raises, and a `sys.exit` in it (which would end `validate` with 0 having
    checked nothing), is a one-line error naming the module."""
    for module in modules:
        try:
            importlib.import_module(module)
        except SystemExit as exc:
            raise ConfigError(f"plugins: importing {module!r} called sys.exit({exc.code!r})") from None
        except Exception as exc:
            raise ConfigError(f"plugins: cannot import {module!r} ({type(exc).__name__}: {first_line(exc)})") from None


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True  # first, so that a module reading the registry while it is imported does not recurse
    try:
        for module in BUILTINS:
            importlib.import_module(module)
        load_entry_points()
    except BaseException:
        _builtins_loaded = False
        raise


def load_entry_points() -> None:
    """Import every installed package's `df_sweep.components` entry point (each names a module)."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except ImportError as exc:
            raise ConfigError(
                f"{ENTRY_POINT_GROUP} entry point {entry.name!r} ({entry.value}) cannot be imported: {first_line(exc)}"
            ) from None


def _identity(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
