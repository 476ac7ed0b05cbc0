"""Write tests/MUTANTS.md from mutmut's results under mutants/ (``make mutants`` runs it).

    python tests/mutation_summary.py [--seconds N] [--out tests/MUTANTS.md]

Reads every ``mutants/<source>.meta`` (mutmut 3's per-file results), counts each status per source
file, and lists every surviving mutant with its diff (``mutmut show``'s). Survivors named in
tests/mutants_equivalent.txt (``<mutant name>  # <one-line reason>``) count as equivalent: they
leave the score's denominator. The score is ``killed / (killed + survived)``, timeouts counted as
killed (the mutant hung where the original finished), as mutmut's badge does; "no tests" (no test
of the selection reaches the function) are reported separately, not as kills.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "tests" / "mutants_equivalent.txt"
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # killed, pytest internal error, timeouts, type check
STATUS = {0: "survived", None: "not checked", 5: "no tests", 33: "no tests", 34: "skipped"}


def status(code: int | None) -> str:
    if code in KILLED:
        return "killed"
    return STATUS.get(code, "suspicious")


def equivalents() -> dict[str, str]:
    out = {}
    if EQUIVALENT.is_file():
        for line in EQUIVALENT.read_text().splitlines():
            name, _, reason = line.partition("#")
            if name.strip():
                out[name.strip()] = reason.strip()
    return out


def diff(name: str) -> str:
    done = subprocess.run([str(Path(sys.executable).with_name("mutmut")), "show", name], cwd=ROOT,
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines()[1:] if line.startswith(("+", "-")) and
             not line.startswith(("+++", "---"))]
    return "\n".join(lines) or done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="wall time of the mutmut run")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "MUTANTS.md")
    parser.add_argument("--note", default="", help="a line on what this run covered")
    args = parser.parse_args(argv)

    metas = sorted((ROOT / "mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutants/*.meta: run `make mutants` first", file=sys.stderr)
        return 1
    equivalent = equivalents()
    rows, survivors, totals = [], [], Counter()
    for meta in metas:
        source = str(meta.relative_to(ROOT / "mutants")).removesuffix(".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter()
        for name, code in codes.items():
            s = status(code)
            if s == "survived" and name in equivalent:
                s = "equivalent"
            elif s == "survived":
                survivors.append((source, name))
            counts[s] += 1
        if counts.keys() <= {"not checked"}:
            continue  # not part of this run
        totals.update(counts)
        rows.append((source, counts))

    def score(c: Counter) -> str:
        tested = c["killed"] + c["survived"]
        return f"{100 * c['killed'] / tested:.1f} %" if tested else "n/a"

    columns = ("killed", "survived", "equivalent", "no tests", "not checked", "skipped", "suspicious")
    lines = [
        "# Mutation testing results (mutmut)",
        "",
        "Written by `tests/mutation_summary.py` after `make mutants` (configuration: `[tool.mutmut]` in",
        "pyproject.toml). Score = killed / (killed + survived); equivalent mutants (listed with a reason in",
        "tests/mutants_equivalent.txt) are left out; \"no tests\" = no test of the selection reaches that",
        "function; \"not checked\" = not run in this (partial) run.",
        "",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- run time: {args.seconds / 60:.1f} min" if args.seconds else "- run time: not recorded",
        f"- score: **{score(totals)}** ({totals['killed']} killed, {totals['survived']} survived, "
        f"{totals['equivalent']} equivalent)",
    ]
    if args.note:
        lines.append(f"- covered: {args.note}")
    lines += ["", "| source | score | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for source, c in rows:
        lines.append(f"| {source} | {score(c)} | " + " | ".join(str(c[k]) for k in columns) + " |")
    lines += ["", "## Surviving mutants", ""]
    if not survivors:
        lines.append("None.")
    for source, name in survivors:
        lines += [f"### `{name}`", "", "```diff", diff(name), "```", ""]
    lines += ["", "## Equivalent mutants", ""]
    for name, reason in sorted(equivalent.items()):
        lines.append(f"- `{name}`: {reason}")
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {args.out}: score {score(totals)}, {len(survivors)} survivor(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
