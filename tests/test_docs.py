"""The docs cannot drift: docs/cli.md is the generator's output, every flag is in it, README.md stays
short, relative links resolve, and every "DESIGN §N" the code cites is a section of
docs/architecture.md."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from flipnet_rt.cli import reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 150


@pytest.fixture(scope="module")
def commands() -> list[reference.Command]:
    return reference.commands()


@pytest.fixture(scope="module")
def cli_md() -> str:
    return (DOCS / "cli.md").read_text(encoding="utf-8")


def test_cli_md_is_the_generator_output(commands, cli_md):
    expected = reference.render(commands)
    if cli_md != expected:
        old, new = cli_md.splitlines(), expected.splitlines()
        first = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        pytest.fail(
            f"docs/cli.md differs from the parsers (first at line {first + 1}: "
            f"{old[first] if first < len(old) else '<end>'!r} vs {new[first] if first < len(new) else '<end>'!r}); "
            f"run `{reference.REGENERATE}`"
        )


def test_the_generator_documents_both_commands(commands):
    assert [c.name for c in commands][:1] == ["flipnet-rt"]
    assert "flipnet-train" in [c.name for c in commands]


def test_every_subcommand_and_flag_is_in_cli_md(commands, cli_md):
    missing = []
    for cmd in commands:
        for action in reference.arguments(cmd.parser):
            missing += [f"{cmd.name} {s}" for s in action.option_strings if f"`{s}`" not in cli_md]
        subs = reference.subcommands(cmd.parser)
        assert subs, f"{cmd.name} has no subcommands"
        for name, _, sub in subs:
            section = _section(cli_md, f"### {cmd.name} {name}")
            if section is None:
                missing.append(f"{cmd.name} {name} (section)")
                continue
            for action in reference.arguments(sub):
                missing += [f"{cmd.name} {name} {s}" for s in action.option_strings if f"`{s}`" not in section]
    assert not missing, f"not in docs/cli.md: {missing}; run `{reference.REGENERATE}`"


def _section(text: str, heading: str) -> str | None:
    lines = text.splitlines()
    if heading not in lines:
        return None
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(("## ", "### "))), len(lines))
    return "\n".join(lines[start:end])


def test_the_generator_does_not_depend_on_the_terminal_or_the_environment(monkeypatch, commands):
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.setenv("FLIPNET_MODEL", "/somewhere/else")
    assert reference.render(reference.commands()) == reference.render(commands)


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}): move detail into docs/"


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_docs_pages_exist():
    for page in (
        "photos",
        "video",
        "serving",
        "engines",
        "benchmarks",
        "training",
        "python-api",
        "architecture",
        "cli",
    ):
        assert (DOCS / f"{page}.md").is_file(), f"docs/{page}.md is missing"


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", _without_code_blocks(md.read_text(encoding="utf-8")), re.M):
        slug = "".join(c for c in heading.strip().lower() if c.isalnum() or c in " -_").replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def test_relative_links_resolve():
    broken = []
    for md in _markdown_files():
        for target in _LINK.findall(_without_code_blocks(md.read_text(encoding="utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # a URL
            path, _, anchor = target.partition("#")
            file = (md.parent / path) if path else md
            if not file.exists():
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, f"broken relative links: {broken}"


def test_the_link_finder_finds_links():
    assert _LINK.findall("see [a](docs/a.md#x), ![img](i.png) and [b](https://x.y/z)") == [
        "docs/a.md#x",
        "https://x.y/z",
    ]


def _python_files() -> list[Path]:
    """The repository's .py files, without virtual environments, build trees and hidden folders."""
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "build", "__pycache__", "outputs")))
        out += [Path(folder) / f for f in sorted(files) if f.endswith(".py")]
    return out


def test_every_cited_design_section_is_in_architecture_md():
    cited: dict[str, set[str]] = {}
    for py in _python_files():
        text = py.read_text(encoding="utf-8", errors="replace")
        for match in re.finditer(r"DESIGN\s+((?:§\s*\d+[,\s]*)+)", text):
            for n in re.findall(r"§\s*(\d+)", match.group(1)):
                cited.setdefault(n, set()).add(str(py.relative_to(ROOT)))
    assert cited, "no DESIGN §N citation found: has the search gone wrong?"
    headings = set(re.findall(r"^## (\d+)\. ", (DOCS / "architecture.md").read_text(encoding="utf-8"), re.M))
    missing = {n: sorted(files) for n, files in cited.items() if n not in headings}
    assert not missing, f"DESIGN §N cited in code but no '## N. ' heading in docs/architecture.md: {missing}"


def test_the_readme_tour_parses():
    from flipnet_rt.cli.main import build_parser

    parser = build_parser()
    tour = re.search(r"## A tour\n+```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert tour, "README.md has no '## A tour' bash block"
    lines = [line.split("#")[0].split() for line in tour.group(1).splitlines()]
    runs = [words[1:] for words in lines if words and words[0].endswith("flipnet-rt")]
    assert len(runs) >= 5
    for argv in runs:
        parser.parse_args(argv)  # exits (SystemExit 2) on a flag the parser does not take
