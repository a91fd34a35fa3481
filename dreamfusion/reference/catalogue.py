"""The component catalogue: every registered prior, scorer, schedule, weighting, loss and evaluator with its
version, summary, needs and options (an evaluator's metrics too), as a plain-text table for `df-sweep components`
and as the Markdown page of the docs. It lists what is registered when it runs, so a plugin's components appear."""

from __future__ import annotations

import json
from typing import Any

from dreamfusion import registry
from dreamfusion.errors import ConfigError
from dreamfusion.reference.fields import documented_default, option_row, type_text
from dreamfusion.reference.markdown import anchor, code, prose, table

INTRO = (
    "Every registered component, by kind. A trial picks one by its name under the config key of its kind, and "
    "sets its options as keys of the same block (`sds.timesteps.strata` beside `sds.timesteps.schedule`). "
    "`df-sweep components` prints this catalogue; a plugin's components (an installed package's "
    "`df_sweep.components` entry point, or a module in a config's `plugins`) are listed once they are imported."
)


def kinds(kind: str | None = None) -> list[str]:
    """The kinds to list: all, or the one asked for (an unknown one is a one-line error naming the known)."""
    if kind is None:
        return list(registry.KINDS)
    if kind not in registry.KINDS:
        raise ConfigError(f"unknown component kind {kind!r}; expected one of {', '.join(registry.KINDS)}")
    return [kind]


def needs_notes(needs: registry.Needs) -> list[str]:
    """What a component needs, in a few words each: where it runs, which prompts it knows, which prior it pairs with."""
    notes = [
        "GPU" if needs.gpu else "CPU",
        f"only {needs.vocabulary.label}" if needs.vocabulary else "",
        f"prior {needs.prior} only" if needs.prior else "",
    ]
    return [n for n in notes if n]


def catalogue_text(kind: str | None = None) -> list[str]:
    """The catalogue as aligned plain text: a line per component, its options and metrics indented below it."""
    lines: list[str] = []
    for k in kinds(kind):
        found = registry.components(k)
        lines.append(f"{k} ({registry.KINDS[k]}: NAME):")
        name_w = max((len(c.name) for c in found), default=0)
        needs_w = max((len("; ".join(needs_notes(c.needs))) for c in found), default=0)
        for c in found:
            needs = "; ".join(needs_notes(c.needs))
            lines.append(f"  {c.name:{name_w}}  v{c.version:3} {needs:{needs_w}}  {c.summary}")
            lines += _indented([_option_cells(key, info) for key, info in _options(c)])
            lines += _indented([[name, *_metric_cells(m)] for name, m in _metrics(c)])
        lines.append("")
    return lines[:-1]


def catalogue_markdown(kind: str | None = None) -> str:
    """The catalogue page: an overview table per kind, then a section per component."""
    lines = ["# Components", "", prose(INTRO)]
    for k in kinds(kind):
        found = registry.components(k)
        lines += ["", f"## {k} {{#{anchor(k)}}}", ""]
        lines += [f"Selected by {code(registry.KINDS[k])}; its options are keys of {code(registry.block(k))}.", ""]
        rows = [
            [f"[{code(c.name)}](#{anchor(k, c.name)})", code(c.version), _needs(c), prose(c.summary)] for c in found
        ]
        lines += table(("name", "version", "needs", "summary"), rows)
        for c in found:
            lines += _component_markdown(c)
    return "\n".join(lines) + "\n"


def _component_markdown(c: Any) -> list[str]:
    lines = ["", f"### {c.kind} {code(c.name)} {{#{anchor(c.kind, c.name)}}}", "", prose(c.summary), ""]
    lines += [f"Version {code(c.version)}; needs: {_needs(c)}.", ""]
    options = _options(c)
    if options:
        lines += table(("option", "type", "default", "meaning"), [option_row(key, info) for key, info in options])
    else:
        lines.append("No options.")
    metrics = _metrics(c)
    if metrics:
        rows = [[code(name), *(prose(cell) for cell in _metric_cells(m))] for name, m in metrics]
        lines += ["", *table(("metric", "better", "computed", "meaning"), rows)]
    return lines


def _needs(c: Any) -> str:
    return prose("; ".join(needs_notes(c.needs)))


def _options(c: Any) -> list[tuple[str, Any]]:
    """(dotted key, field) of each of the component's options, in declaration order."""
    return list(zip(registry.option_keys(c), c.Options.model_fields.values()))


def _metrics(c: Any) -> list[tuple[str, Any]]:
    """An evaluator's declared metrics by name; other kinds declare none."""
    return sorted(getattr(c, "metrics", {}).items())


def _metric_cells(metric: Any) -> list[str]:
    """better, computed, meaning of a declared metric."""
    better = {"max": "higher", "min": "lower"}[metric.mode] if metric.ranked else "neither (a reading)"
    when = "once, at the end" if metric.final_only else "at every evaluation"
    return [better, when + (", by the scorer" if metric.scored else ""), metric.doc]


def _option_cells(key: str, info: Any) -> list[str]:
    default = documented_default(info)
    return [
        key,
        type_text(info),
        f"default {json.dumps(default, ensure_ascii=False)}",
        " ".join((info.description or "").split()),
    ]


def _indented(rows: list[list[str]]) -> list[str]:
    """Rows as columns aligned to their widest cell, indented under their component; the last column runs on."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["      " + "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]) for row in rows]
