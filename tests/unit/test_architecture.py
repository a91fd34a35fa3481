"""The layout tells the architecture, and these checks keep it so: no import cycle anywhere (imports inside
functions count), no module over 380 lines, and each layer imports only what it may. The field knows nothing of
SDS; the trial nothing of Ray or MLflow; the sweep spec and its search space (`dreamfusion.sweep`) nothing of them
either, so that `validate` and `--dry-run` stay fast, nor the console output that `df-sweep run` and sweeps share:
what talks to Ray is `dreamfusion.tune`, and of the shared prior only its actors (`serving.service`). Neither the
trial nor a sweep knows the toy world, and analysis reads MLflow, not the trial code."""

from __future__ import annotations

import copy
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("dreamfusion", "analysis")
MAX_LINES = 380


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over every import, lazy ones included."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, []):
            if w not in index and w in edges:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    """The check above would pass vacuously if it could not see a cycle; here is one it must see."""
    g = grimp.ImportGraph()
    for m in ("dreamfusion", "dreamfusion.a", "dreamfusion.b", "dreamfusion.c"):
        g.add_module(m)
    g.add_import(importer="dreamfusion.a", imported="dreamfusion.b")
    g.add_import(importer="dreamfusion.b", imported="dreamfusion.c")
    g.add_import(importer="dreamfusion.c", imported="dreamfusion.a")
    assert _cycles(g) == [["dreamfusion.a", "dreamfusion.b", "dreamfusion.c"]]


@pytest.mark.parametrize(
    "path", sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_module_over_the_size_limit(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


#: (importer package, imported package or external distribution): imports that would break the layering.
FORBIDDEN = [
    *[
        (layer, "dreamfusion.toyworld")
        for layer in (
            "dreamfusion.trial",
            "dreamfusion.sweep",
            "dreamfusion.tune",
            "dreamfusion.console",
            "dreamfusion.serving",
            "dreamfusion.tracking",
            "dreamfusion.sds",
            "dreamfusion.scoring",
            "dreamfusion.evaluators",
            "dreamfusion.priors",
            "dreamfusion.config",
            "dreamfusion.nerf",
        )
    ],
    *[
        (layer, external)
        for layer in (
            "dreamfusion.trial",
            "dreamfusion.sds",
            "dreamfusion.priors",
            "dreamfusion.scoring",
            "dreamfusion.evaluators",
            "dreamfusion.nerf",
            "dreamfusion.config",
            "dreamfusion.toyworld",
            "dreamfusion.interrupts",
            "dreamfusion.sweep",
            "dreamfusion.console",
            "dreamfusion.serving.served",
            "dreamfusion.serving.batching",
        )
        for external in ("ray", "mlflow")
    ],
    *[
        ("dreamfusion.nerf", inner)
        for inner in (
            "dreamfusion.sds",
            "dreamfusion.priors",
            "dreamfusion.scoring",
            "dreamfusion.trial",
            "dreamfusion.config.files",
        )
    ],
    *[
        ("dreamfusion.trial", outer)
        for outer in (
            "dreamfusion.sweep",
            "dreamfusion.tune",
            "dreamfusion.console",
            "dreamfusion.serving.service",
            "dreamfusion.tracking",
            "dreamfusion.cli",
        )
    ],
    *[("dreamfusion.sds", outer) for outer in ("dreamfusion.trial", "dreamfusion.tracking", "dreamfusion.scoring")],
    *[
        ("analysis", inner)
        for inner in (
            "dreamfusion.trial",
            "dreamfusion.sweep",
            "dreamfusion.tune",
            "dreamfusion.console",
            "dreamfusion.serving",
            "dreamfusion.priors",
            "dreamfusion.sds",
            "dreamfusion.nerf",
            "torch",
        )
    ],
]


@pytest.mark.parametrize("importer, imported", FORBIDDEN, ids=lambda x: x)
def test_layers_import_only_downwards(graph, importer, imported):
    chain = graph.find_shortest_chain(importer=importer, imported=imported, as_packages=True)
    assert chain is None, " → ".join(chain)


def test_the_layer_check_sees_an_import_inside_a_function_two_modules_away(graph):
    """The sweep spec may not reach Ray even through a lazy import in a module it imports: were `search.py` to
    import the searchers of `dreamfusion.tune` (whose Ray imports sit inside functions), the check must see it."""
    g = copy.deepcopy(graph)
    g.add_import(importer="dreamfusion.sweep.search", imported="dreamfusion.tune.searchers")
    chain = g.find_shortest_chain(importer="dreamfusion.sweep", imported="ray", as_packages=True)
    assert chain is not None and chain[0] == "dreamfusion.sweep.search" and chain[-1].startswith("ray")


def test_analysis_reads_names_from_the_tracking_schema_only(graph):
    """Of df-sweep, analysis reads the names runs are written by (`tracking.schema`) and how a trial's params are
    read back by the trial schema (`tracking.params`), nothing else."""
    used = set(graph.find_modules_that_directly_import("dreamfusion.tracking.schema"))
    assert {"analysis.load", "analysis.media"} <= used
    reached = {
        m
        for module in graph.find_children("analysis")
        for m in graph.find_modules_directly_imported_by(module)
        if m.startswith("dreamfusion")
    }
    assert reached <= {"dreamfusion.tracking.schema", "dreamfusion.tracking.params", "dreamfusion.errors"}
