"""The command-line reference (``docs/cli.md``), generated from the parsers the commands use.

    python -m flipnet_rt.cli.reference > docs/cli.md

Every console script in ``pyproject.toml``'s ``[project.scripts]`` (``flipnet-rt``, ``flipnet-train``)
whose module has a ``build_parser()`` is documented: its options, then each subcommand's usage line
and a table of its arguments, group by group, with their help text as ``--help`` prints it. The
parsers are imported, never restated, so the reference cannot drift from ``--help``
(``tests/test_docs.py`` fails when the committed file differs from this output).

The output does not depend on the terminal or the shell: usage lines are wrapped at a fixed width
and the parsers are built with the ``FLIPNET_*`` variables unset (``--model`` defaults to
``$FLIPNET_MODEL``). ``flipnet-train``'s parser imports torch (the ``torch`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

WIDTH = 100
REGENERATE = "python -m flipnet_rt.cli.reference > docs/cli.md"
_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@dataclass(frozen=True)
class Command:
    """One console script: its name, its ``module:function`` entry point and its parser."""

    name: str
    entry: str
    parser: argparse.ArgumentParser


def _fixed_formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=WIDTH, max_help_position=32)


def console_scripts(pyproject: Path = _PYPROJECT) -> dict[str, str]:
    """``[project.scripts]``: script name -> ``module:function``, from the checkout's pyproject.toml
    (else from the installed distribution's entry points)."""
    if pyproject.is_file():
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            tomllib = None  # type: ignore[assignment]
        if tomllib is not None:
            with pyproject.open("rb") as f:
                return dict(tomllib.load(f)["project"]["scripts"])
    from importlib.metadata import distribution

    eps = distribution("flipnet-rt").entry_points
    return {ep.name: ep.value for ep in eps if ep.group == "console_scripts"}


@contextlib.contextmanager
def _fixed_environment() -> Iterator[None]:
    """COLUMNS fixed and every FLIPNET_* variable unset while the parsers are built."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("FLIPNET_")]:
            del os.environ[key]
        os.environ["COLUMNS"] = str(WIDTH)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def commands() -> list[Command]:
    """Every documented command, in ``[project.scripts]``' order, with its parser built."""
    out = []
    for name, entry in console_scripts().items():
        module_name = entry.partition(":")[0]
        module = importlib.import_module(module_name)
        build = getattr(module, "build_parser", None)
        if build is None:
            continue
        with _fixed_environment():
            parser = build()
        out.append(Command(name, entry, parser))
    return out


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order they were added."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases map to the same parser
                    seen.add(id(sub))
                    out.append((name, helps.get(name, ""), sub))
    return out


def nested(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, str, argparse.ArgumentParser]]:
    """Every subcommand at any depth as ``(name, one-line help, parser)``, each before its own
    (``cluster``, then ``cluster restore``...)."""
    out = []
    for name, text, sub in subcommands(parser):
        out.append((prefix + name, text, sub))
        out += nested(sub, f"{prefix}{name} ")
    return out


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The documented arguments of one parser: everything but -h/--help and the subcommand slot."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and a.help is not argparse.SUPPRESS
    ]


def _show(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return ",".join(_show(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%" in text:
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params["prog"] = parser.prog
        if action.choices is not None:
            params["choices"] = ", ".join(_show(c) for c in action.choices)
        text = text % params
    return text


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None and action.metavar is None:
        return "`" + "\\|".join(_show(c) for c in action.choices) + "`"
    metavar = action.metavar if action.metavar is not None else action.dest.upper()
    text = " ".join(metavar) if isinstance(metavar, tuple) else metavar
    if action.nargs in ("+", "*"):
        text += " ..."
    return "`" + text.replace("|", "\\|") + "`"


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.default == []:
        return ""
    return "`" + _show(action.default).replace("|", "\\|") + "`"


def _name(action: argparse.Action) -> str:
    if action.option_strings:
        return ", ".join(f"`{s}`" for s in action.option_strings)
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    return f"`{metavar}`"


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = _fixed_formatter(parser.prog)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _tables(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    documented = set(map(id, arguments(parser)))
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if id(a) in documented]
        if not actions:
            continue
        lines += ["", f"*{_cell(group.title or '')}*", "", "| argument | value | default | |", "|---|---|---|---|"]
        for a in actions:
            lines.append(f"| {_name(a)} | {_value(a)} | {_default(a)} | {_cell(_help(parser, a))} |")
    return lines


def _anchor(title: str) -> str:
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return keep.replace(" ", "-")


def render(cmds: list[Command] | None = None) -> str:
    """docs/cli.md's text."""
    cmds = commands() if cmds is None else cmds
    lines = [
        "# Command-line reference",
        "",
        f"Generated from the parsers by `{REGENERATE}`; do not edit by hand",
        "(`tests/test_docs.py` fails when this file and the parsers disagree). The other pages say",
        "what the commands are for: [photos](photos.md), [video](video.md), [serving](serving.md),",
        "[engines](engines.md), [benchmarks](benchmarks.md), [training](training.md).",
        "",
    ]
    index: dict[str, dict[str, list[str]]] = {}
    for cmd in cmds:
        subs = subcommands(cmd.parser)
        links = ", ".join(f"[{name}](#{_anchor(f'{cmd.name} {name}')})" for name, _, _ in subs)
        lines.append(f"- [`{cmd.name}`](#{_anchor(cmd.name)}): {links}")
        for name, _, sub in nested(cmd.parser):
            for a in arguments(sub):
                for s in a.option_strings:
                    index.setdefault(s, {}).setdefault(cmd.name, []).append(name)
    for cmd in cmds:
        lines += ["", f"## {cmd.name}", ""]
        if cmd.parser.description:
            lines.append(_cell(cmd.parser.description) + f" (`{cmd.entry}`).")
        lines += ["", "```text", _usage(cmd.parser), "```"]
        lines += _tables(cmd.parser)
        for name, text, sub in nested(cmd.parser):
            lines += ["", f"{'#' * (3 + name.count(' '))} {cmd.name} {name}", ""]
            if text:
                lines += [_cell(text)[:1].upper() + _cell(text)[1:] + ".", ""]
            lines += ["```text", _usage(sub), "```"]
            lines += _tables(sub)
    lines += [
        "",
        "## Flag index",
        "",
        "Each flag and the subcommands that take it (check the tables above: a flag's meaning can",
        "differ between commands).",
        "",
        "| flag | " + " | ".join(cmd.name for cmd in cmds) + " |",
        "|---|" + "---|" * len(cmds),
    ]
    for flag in sorted(index, key=lambda s: (s.lstrip("-").lower(), s)):
        cells = [", ".join(index[flag].get(cmd.name, [])) for cmd in cmds]
        lines.append(f"| `{flag}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
