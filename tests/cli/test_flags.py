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
