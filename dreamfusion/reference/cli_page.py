"""The command-line reference as Markdown, from the typer app itself: every command and sub-command with its usage
line, help text, arguments and options (type, default, help), in name order.

It reads the command objects rather than `--help`'s output, so nothing depends on the terminal's width, and it
writes a default that is a path inside the installation relative to it, so the page is the same on every machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

import dreamfusion
from dreamfusion.reference.markdown import anchor, code, paragraphs, prose, table

#: The folder that holds the `dreamfusion` package: the checkout, or site-packages.
_INSTALL_ROOT = Path(dreamfusion.__file__).resolve().parent.parent


def cli_markdown(app: typer.Typer, program: str) -> str:
    """The whole page for `app` run as `program`."""
    root = typer.main.get_command(app)
    lines = [
        "# Command line",
        "",
        prose(f"Every `{program}` command with its arguments and options. Every command also takes `--help`."),
    ]
    for command, ctx in _walk(root, typer.Context(root, info_name=program)):
        lines += ["", f"## {ctx.command_path} {{#{anchor(ctx.command_path)}}}", ""]
        lines += ["```text", " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)]), "```", ""]
        lines += paragraphs(_portable(command.help or ""))
        lines += _subcommands(command, ctx)
        for kind, title in (("argument", "argument"), ("option", "option")):
            rows = [_param_row(p, ctx) for p in command.params if p.param_type_name == kind and not _hidden(p)]
            if rows:
                lines += ["", *table((title, "type", "default", "meaning"), rows)]
    return "\n".join(lines) + "\n"


def _walk(command: Any, ctx: typer.Context) -> Iterator[tuple[Any, typer.Context]]:
    """The command, then each visible sub-command (recursively), by name."""
    yield command, ctx
    if not hasattr(command, "list_commands"):
        return
    for name in sorted(command.list_commands(ctx)):
        sub = command.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            yield from _walk(sub, typer.Context(sub, info_name=name, parent=ctx))


def _subcommands(group: Any, ctx: typer.Context) -> list[str]:
    if not hasattr(group, "list_commands"):
        return []
    rows = []
    for name in sorted(group.list_commands(ctx)):
        sub = group.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            path = f"{ctx.command_path} {name}"
            summary = (paragraphs(_portable(sub.help or "")) or [""])[0]
            rows.append([f"[{code(name)}](#{anchor(path)})", summary])
    return ["", *table(("command", "what it does"), rows)]


def _param_row(param: Any, ctx: typer.Context) -> list[str]:
    if param.param_type_name == "argument":
        names = code(param.metavar or param.name)
    else:
        names = ", ".join(code(opt) for opt in [*param.opts, *param.secondary_opts])
    meaning = _portable(getattr(param, "help", None) or "")
    if param.envvar:
        meaning += f" Read from `{param.envvar}` when not given."
    return [names, prose(_type(param, ctx)), _default(param), prose(meaning)]


def _type(param: Any, ctx: typer.Context) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    shown = param.display_type(ctx).strip("<>").removesuffix(" range")
    if param.multiple and shown.startswith("list["):
        shown = shown.removeprefix("list[").removesuffix("]") + ", repeatable"
    limits = (("≥", getattr(param, "min", None)), ("≤", getattr(param, "max", None)))
    return ", ".join([shown, *(f"{sign} {v}" for sign, v in limits if v is not None)])


def _default(param: Any) -> str:
    """What a parameter takes when not given: `required`, nothing (none), or its value as it would be typed."""
    value = param.default
    if param.required:
        return "required"
    if value is None or value == [] or value == ():
        return ""
    if isinstance(value, bool):
        return code(str(value).lower())
    return code(_portable(value.as_posix() if isinstance(value, Path) else str(value)))


def _portable(text: str) -> str:
    """`text` with this machine's installation folder left out of any path in it (`dreamfusion/toyworld/weights`)."""
    return text.replace(f"{_INSTALL_ROOT}{os.sep}", "")


def _hidden(param: Any) -> bool:
    return bool(getattr(param, "hidden", False))
