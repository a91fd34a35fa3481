"""The component registry: every prior, scorer, timestep schedule, weighting, SDS loss and evaluator is one class
that registers itself under a name, and everything else reads this registry.

Config validation, `df-sweep priors` / `df-sweep config`, the loaders, the sweep spec's checks and the MLflow tags
all ask the registry, so a new variant is one `@register`ed class in one file and nothing else is edited:

    @register
    class Sqrt(Schedule):
        name, version, summary = "my_sqrt", "1", "t = t_max·(1 − √progress)"
        def __call__(self, step, generator): ...

Components register when their module is imported: the built-ins below always (imported by name on first use,
so that this module imports none of them and nothing here can form an import cycle), third-party packages through
the `df_sweep.components` entry point group, and any other module named in a trial config's `plugins` list.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, TypeVar

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

#: Modules of the components that ship with df-sweep, imported by name the first time the registry is read.
BUILTINS: tuple[str, ...] = (
    "dreamfusion.sds.weighting",
    "dreamfusion.sds.schedules",
    "dreamfusion.sds.sds",
    "dreamfusion.sds.csd",
    "dreamfusion.sds.nfsd",
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


class Component:
    """Base of every registered class: its kind (set by the kind's base class), name, version and catalogue line."""

    kind: ClassVar[str]
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    """Changes whenever the algorithm changes, so runs made before and after can be told apart."""
    summary: ClassVar[str] = ""
    """One line for `df-sweep priors` / `df-sweep config`: what it is, with its reference."""
    needs: ClassVar[Needs] = Needs()
    options: ClassVar[tuple[str, ...]] = ()
    """Dotted trial-config keys that only this component reads (a sweep varying one must select it somewhere)."""

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


def owners(key: str) -> list[type[Component]]:
    """The components that declare `key` as one of their own options."""
    return [c for kind in KINDS for c in components(kind) if key in c.options]


def load_plugins(modules: Iterable[str]) -> None:
    """Import the modules a config names in `plugins`, so the components they define register."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"plugins: cannot import {module!r} ({first_line(exc)})") from None


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
