"""Write tests/MUTANTS.md from the per-group mutmut results of tests/mutation_run.py.

    python tests/mutation_summary.py [--dir build-mutants] [--out tests/MUTANTS.md]

Reads ``<dir>/<group>/mutants/**/*.py.meta`` (mutmut 3's per-file results) for every group of
tests/mutation_run.py that has run, counting only the modules that group mutates, and
``<dir>/<group>/runs.json`` (when, how long, which tests, which commit). Every mutant that no test
killed is listed with its diff (``mutmut show``'s) unless tests/mutants_equivalent.txt lists it
(``<mutant name>  # <one-line reason>``): those leave the score. Score = killed / (killed +
survived + no tests): a mutant that no test of the group's selection reaches counts as not killed.
Timeouts count as killed (the mutant hung where the original finished), as in mutmut.

A mutant that survives with its only change inside a ``help=``, ``description=`` or ``metavar=``
argument or an argument group's title (what ``--help`` prints; found by comparing the mutated
function's syntax tree with the original's once those are dropped) is counted as "help text": left
out of the score like an equivalent one, and counted rather than listed. So is "GPU only": a mutant of
code whose effect shows only on a GPU (``mutation_run.GPU_ONLY``) that no test here kills.

Each group's counts, survivors (with their diffs), equivalents and runs are also written to
tests/mutants_results.json, which is committed: build-mutants/ is not, so a fresh checkout that re-runs
one group still summarises the others from that record (marked "recorded" in the runs table).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation_run import BUILD, GPU_ONLY, GROUPS, help_text_mutants  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "tests" / "mutants_equivalent.txt"
BY_HAND = ROOT / "tests" / "mutants_killed_by_hand.txt"
NOTES = ROOT / "tests" / "mutants_notes.md"  # hand-written notes on the runs, copied in when present
RESULTS = ROOT / "tests" / "mutants_results.json"  # each group's last summarised results (see the docstring)
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # killed, pytest internal error, timeouts, type check
STATUS = {0: "survived", None: "not checked", 5: "no tests", 33: "no tests", 34: "skipped"}
COLUMNS = (
    "killed",
    "by hand",
    "survived",
    "no tests",
    "equivalent",
    "help text",
    "GPU only",
    "not checked",
    "skipped",
    "suspicious",
)


def status(code: int | None) -> str:
    if code in KILLED:
        return "killed"
    return STATUS.get(code, "suspicious")


def equivalents(path: Path = EQUIVALENT) -> dict[str, str]:
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, _, reason = line.partition("#")
            if name.strip():
                out[name.strip()] = reason.strip()
    return out


def diff(name: str, cwd: Path) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("mutmut")), "show", name], cwd=cwd, capture_output=True, text=True
    )
    lines = [
        line
        for line in done.stdout.splitlines()[1:]
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    return "\n".join(lines) or done.stdout.strip()


def from_copy(
    folder: Path, modules: list[str], equivalent: dict[str, str], by_hand: dict[str, str], diffs: bool
) -> dict | None:
    """A group's results from its mutmut copy (None when it has not run there), in the record's form:
    its runs, per-module counts, survivors (with their diffs) and the equivalents among its mutants."""
    metas = sorted((folder / "mutants").rglob("*.py.meta"))
    if not metas:
        return None
    log = folder / "runs.json"
    rows, survivors, used = [], [], set()
    for meta in metas:
        source = str(meta.relative_to(folder / "mutants")).removesuffix(".meta")
        if not any(fnmatch.fnmatch(source, pattern) for pattern in modules):
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        help_text = help_text_mutants(meta.with_suffix(""), source.removesuffix(".py").replace("/", "."))
        counts = Counter()
        for name, code in sorted(codes.items(), key=lambda kv: (kv[0].rsplit("_", 1)[0], int(kv[0].rsplit("_", 1)[1]))):
            s = status(code)
            if s in ("survived", "no tests", "not checked") and any(fnmatch.fnmatch(name, p) for p in GPU_ONLY):
                s = "GPU only"
            elif s in ("survived", "no tests") and name in by_hand:
                s = "by hand"
            elif s == "survived" and name in help_text:
                s = "help text"
            elif s in ("survived", "no tests") and name in equivalent:
                s = "equivalent"
                used.add(name)
            elif s in ("survived", "no tests"):
                survivors.append({"name": name, "status": s, "diff": diff(name, folder) if diffs else ""})
            counts[s] += 1
        rows.append([source, dict(counts)])
    return {
        "runs": json.loads(log.read_text()) if log.is_file() else [],
        "rows": rows,
        "survivors": survivors,
        "equivalent": sorted(used),
    }


def recorded(entry: dict, equivalent: dict[str, str]) -> dict:
    """A group's recorded results with today's judgement applied: a recorded survivor since listed in
    tests/mutants_equivalent.txt counts as equivalent. (A recorded equivalent taken off that list needs
    the group run again: the record does not say whether it survived or no test reached it.)"""
    rows = [(source, Counter(counts)) for source, counts in entry["rows"]]
    dropped = [s for s in entry["survivors"] if s["name"] in equivalent]
    for source, counts in rows:
        module = source.removesuffix(".py").replace("/", ".") + "."
        for s in dropped:
            if s["name"].startswith(module):
                counts[s["status"]] -= 1
                counts["equivalent"] += 1
    return {
        "rows": rows,
        "survivors": [s for s in entry["survivors"] if s["name"] not in equivalent],
        "equivalent": entry["equivalent"] + [s["name"] for s in dropped],
        "runs": entry["runs"],
    }


def score(c: Counter) -> str:
    killed = c["killed"] + c["by hand"]
    tested = killed + c["survived"] + c["no tests"]
    return f"{100 * killed / tested:.1f} %" if tested else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=BUILD, help="where tests/mutation_run.py put the groups")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "MUTANTS.md")
    parser.add_argument("--no-diffs", action="store_true", help="list survivors without their diffs (fast)")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="the groups' recorded results, read and rewritten"
    )
    args = parser.parse_args(argv)

    equivalent, by_hand = equivalents(), equivalents(BY_HAND)
    record = json.loads(args.results.read_text()) if args.results.is_file() else {}
    rows, survivors, totals, runs, not_run, used_equivalents = [], [], Counter(), {}, [], set()
    from_record = []
    for group, (modules, _tests) in GROUPS.items():
        entry = from_copy(args.dir / group, modules, equivalent, by_hand, diffs=not args.no_diffs)
        if entry is not None:
            record[group] = entry
        elif group in record:
            from_record.append(group)
        else:
            not_run.append(group)
            continue
        found = recorded(record[group], equivalent)
        rows += [(group, source, counts) for source, counts in found["rows"]]
        survivors += [(group, s["name"], s["status"], s["diff"]) for s in found["survivors"]]
        used_equivalents.update(found["equivalent"])
        for _source, counts in found["rows"]:
            totals.update(counts)
        runs[group] = found["runs"]

    lines = [
        "# Mutation testing results (mutmut)",
        "",
        "Written by `tests/mutation_summary.py` from the runs of `make mutants` (tests/mutation_run.py:",
        "mutmut 3 at `nice -n 19`, one or two children (`--children`), one group of core modules at a time,",
        "each with the fast tests that exercise it, in a copy of the working tree). Score = killed / (killed",
        '+ survived + no tests); "no tests" = no test of the group\'s selection reaches that function, counted as not',
        'killed; "equivalent" = listed in tests/mutants_equivalent.txt with the reason it cannot change',
        'behaviour, left out of the score (as is "help text": a survivor whose only change is inside an argparse',
        "help=, description= or metavar= argument or a group's title, i.e. what --help prints, found by comparing",
        'syntax trees without them); "by hand" = a mutant mutmut cannot switch on (its function runs',
        "at import, before mutmut activates the mutant) that was applied to the source text instead, where",
        'the named tests fail (tests/mutants_killed_by_hand.txt): counted as killed; "GPU only" = a mutant',
        "of code whose effect shows only on a GPU (tests/mutation_run.py GPU_ONLY) not killed here, left out.",
        "",
        f"- written: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- score over the groups run: **{score(totals)}** ({totals['killed']} killed, {totals['by hand']} killed "
        f"by hand, {totals['survived']} "
        f"survived, {totals['no tests']} no tests, {totals['equivalent']} equivalent"
        + (f", {totals['help text']} help text" if totals["help text"] else "")
        + (f", {totals['GPU only']} GPU only" if totals["GPU only"] else "")
        + ")",
    ]
    if not_run:
        lines.append(f"- groups not run: {', '.join(not_run)}")
    if from_record:
        lines.append(
            f"- from tests/mutants_results.json (their copies under build-mutants/ were not in this checkout): "
            f"{', '.join(from_record)}"
        )
    if NOTES.is_file():
        lines += ["", NOTES.read_text().strip()]
    lines += [
        "",
        "## Runs",
        "",
        '| group | modules | tests (`-m "not slow and not gpu and not tensorrt"`) | '
        "runs: date, commit, minutes, mutants |",
        "|---|---|---|---|",
    ]
    for group, group_runs in runs.items():
        modules, tests = GROUPS[group]
        if group_runs:
            tests = [t for t in group_runs[-1]["tests"][2:]]  # what the last run used, less the -m filter
        done = "; ".join(
            f"{r['date']}, {r['commit']}, {r['seconds'] / 60:.1f} min, "
            f"{r['mutants'] if isinstance(r['mutants'], str) else len(r['mutants'])}"
            + (f" (stopped, exit {r['exit_code']})" if r["exit_code"] else "")
            for r in group_runs
        )
        if group in from_record:
            done += " (recorded)"
        lines.append(f"| {group} | {', '.join(modules)} | {', '.join(tests)} | {done} |")
    total_minutes = sum(r["seconds"] for rs in runs.values() for r in rs) / 60
    lines += [
        "",
        f"Run time, all runs above together: {total_minutes:.1f} min.",
        "",
        "## Score per module",
        "",
        "| group | source | score | " + " | ".join(COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for group, source, c in rows:
        lines.append(f"| {group} | {source} | {score(c)} | " + " | ".join(str(c[k]) for k in COLUMNS) + " |")
    lines.append(f"| **all** | | **{score(totals)}** | " + " | ".join(str(totals[k]) for k in COLUMNS) + " |")
    lines += ["", "## Mutants not killed", ""]
    if not survivors:
        lines.append("None.")
    for _group, name, s, change in survivors:
        if change:
            lines += [f"### `{name}` ({s})", "", "```diff", change, "```", ""]
        else:
            lines.append(f"- `{name}` ({s})")
    lines += [
        "",
        "## Equivalent mutants",
        "",
        "Each cannot change behaviour, for the reason given (tests/mutants_equivalent.txt).",
        "",
    ]
    for name, reason in sorted(equivalent.items()):
        if name in used_equivalents:
            lines.append(f"- `{name}`: {reason}")
    unlisted = sorted(used_equivalents - set(equivalent))
    if unlisted:
        lines += [
            "",
            "Recorded as equivalent but no longer in tests/mutants_equivalent.txt (run their groups again): "
            + ", ".join(f"`{n}`" for n in unlisted),
        ]
    stale = sorted(set(equivalent) - used_equivalents)
    if stale:
        lines += [
            "",
            "Listed as equivalent but not a surviving mutant of the runs above (killed, or its "
            "group not run): " + ", ".join(f"`{n}`" for n in stale),
        ]
    lines += ["", "## Killed by hand", ""]
    lines += [f"- `{name}`: {how}" for name, how in sorted(by_hand.items())] or ["None."]
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    if not args.no_diffs:  # a record without diffs would lose them for the next summary
        args.results.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}: score {score(totals)}, {len(survivors)} not killed, {len(used_equivalents)} equivalent")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
