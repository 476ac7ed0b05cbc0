"""Flags and the option fields behind them, in one place.

Choices come from the library's enums and registries (never restated as string tuples); a renamed
flag keeps its old spelling as a deprecated alias (one warning line); and a library error, which
names the option's field (``batch_size: 0; ...``), is shown with the flag the user typed
(``--batch-size: 0; ...``) by :func:`usage_message`, the one place fields become flags.
See docs/architecture.md §10 for the names and meanings every subcommand shares.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from enum import Enum
from typing import Any

#: ``--device``: where a backend runs (auto: a CUDA GPU when the backend can use one).
DEVICES = ("auto", "cpu", "cuda")

#: Option fields whose flag is not ``--`` + the field with dashes.
_FLAG_OF_FIELD = {
    "t_cond": "--cond-t",
    "encoder_threads": "--encoder-threads",
    "threads": "--encoder-threads",  # EncoderOptions.threads
    "exit_timeout_s": "--exit-timeout",
    "idle_timeout_s": "--idle-timeout",
    "request_timeout_s": "--request-timeout",
    "stabilise": "--no-stabilise",
    "thresholds": "--detect-thresholds",  # the detectors' (load_detector)
}


def choices(enum: type[Enum]) -> list[str]:
    """The values of ``enum``, in its order: a flag's ``choices``."""
    return [e.value for e in enum]


def flag_of(field: str) -> str:
    """The flag that sets option field ``field`` (``batch_size`` -> ``--batch-size``)."""
    return _FLAG_OF_FIELD.get(field, "--" + field.replace("_", "-"))


def usage_message(exc: BaseException, fields: Iterable[str]) -> str:
    """``exc``'s message with its leading field name (one of ``fields``) written as its flag.

    Library errors start with the field they are about (``"steps: 0; use 1 or more"``); the command
    line shows the flag instead (``"--steps: 0; use 1 or more"``). Other messages pass unchanged.
    """
    text = str(exc)
    for sep in (":", " "):
        head, found, rest = text.partition(sep)
        if found and head in set(fields):
            return f"{flag_of(head)}{found}{rest}"
    return text


class _DeprecatedAlias(argparse.Action):
    """An old spelling of a flag: warns on stderr (one line), then stores as the new flag does."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"warning: {option_string} is deprecated; use {self.new} (same meaning)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated_alias(parser: argparse._ActionsContainer, old: str, new: argparse.Action) -> None:
    """Keep ``old`` working as a hidden alias of the flag ``new`` (the action add_argument returned)."""
    parser.add_argument(
        old,
        action=_DeprecatedAlias,
        new=new.option_strings[-1],
        dest=new.dest,
        type=new.type,  # type: ignore[arg-type]  # None is argparse's default; typeshed omits it
        choices=new.choices,
        metavar=new.metavar,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
