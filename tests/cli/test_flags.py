"""The flags are derived from the library's definitions (issue 28): choices from the enums and the
backend registry, each flag defined once, renamed flags kept as deprecated aliases, and library
errors (which name fields) shown with the flag."""

from __future__ import annotations

import argparse

import pytest

from flipnet_rt.backends.registry import KINDS
from flipnet_rt.cli.main import build_parser
from flipnet_rt.faces.detectors import DetectorKind
from flipnet_rt.faces.types import FramePath
from flipnet_rt.sampling import SamplerKind, Spacing
from flipnet_rt.video.pipeline import SeedMode, Tracking


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


SUB = _subparsers(build_parser())


@pytest.mark.parametrize(
    "command, flag, values",
    [
        ("restore", "--sampler", [e.value for e in SamplerKind]),
        ("video", "--spacing", [e.value for e in Spacing]),
        ("restore", "--backend", list(KINDS)),
        ("serve", "--backend", list(KINDS)),
        ("restore", "--detector", [e.value for e in DetectorKind]),
        ("video", "--tracking", [e.value for e in Tracking]),
        ("video", "--seed-mode", [e.value for e in SeedMode]),
        ("video", "--frame-path", [e.value for e in FramePath]),
    ],
)
def test_choices_come_from_the_library(command, flag, values):
    assert list(_action(SUB[command], flag).choices) == values


def test_no_keep_detail_is_one_definition():
    helps = {_action(SUB[c], "--no-keep-detail").help for c in ("restore", "video", "eval")}
    assert len(helps) == 1


@pytest.mark.parametrize(
    "command, old, new, dest, value",
    [
        (["export", "-o", "e"], "--max-batch", "--profile-max-batch", "profile_max_batch", "2"),
        (["build", "e"], "--batch", "--profile-batch", "profile_batch", "1:2:4"),
        (["build", "e"], "--resolution", "--profile-resolution", "profile_resolution", "64:64:128"),
    ],
)
def test_renamed_flags_keep_their_old_spelling_with_one_warning(capsys, command, old, new, dest, value):
    parser = build_parser()
    assert getattr(parser.parse_args([*command, new, value]), dest) == (int(value) if value.isdigit() else value)
    assert capsys.readouterr().err == ""
    assert getattr(parser.parse_args([*command, old, value]), dest) == (int(value) if value.isdigit() else value)
    assert capsys.readouterr().err == f"warning: {old} is deprecated; use {new} (same meaning)\n"


def test_renamed_flags_keep_their_defaults():
    args = build_parser().parse_args(["export", "-o", "e"])
    assert args.profile_max_batch == 4 and args.resolution is None
    args = build_parser().parse_args(["build", "e"])
    assert args.profile_batch is None and args.profile_resolution is None


def test_library_errors_name_fields_and_the_cli_shows_flags():
    from flipnet_rt.cli.flags import usage_message
    from flipnet_rt.serve.server import ServeConfig

    fields = ("batch_size", "t_cond", "idle_timeout_s", "max_batch")
    assert usage_message(ValueError("batch_size: 0; must be 1 or more"), fields) == "--batch-size: 0; must be 1 or more"
    assert usage_message(ValueError("t_cond: 5 is outside [0, 4]"), fields) == "--cond-t: 5 is outside [0, 4]"
    assert usage_message(ValueError("seeds: 2 given for 3 images"), fields) == "seeds: 2 given for 3 images"
    with pytest.raises(ValueError) as exc:
        ServeConfig(model="m", idle_timeout_s=0)
    assert str(exc.value) == "idle_timeout_s: 0; use a number of seconds > 0"
    assert usage_message(exc.value, fields) == "--idle-timeout: 0; use a number of seconds > 0"
    with pytest.raises(ValueError, match=r"^max_batch: 0; use 1 or more$"):
        ServeConfig(model="m", max_batch=0)
