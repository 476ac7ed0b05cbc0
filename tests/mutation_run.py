"""Run mutmut on the core, one group of modules at a time, each with the fast tests that exercise it.

    python tests/mutation_run.py [GROUP...] [--fresh] [--list]

``make mutants`` runs it (``make mutants MUTANTS="imaging engine"`` runs only those groups), then
tests/mutation_summary.py writes tests/MUTANTS.md from every group's results.

Why groups: mutmut 3 first runs the whole test selection once under tracing ("stats") to learn which
tests reach which mutated function, and any change to the selection resets every result. One wide
selection over the whole core took hours on 2 cores (most of it in tests that reach only one
module). So each group below mutates a few modules and runs only the tests that exercise them; its
``only_mutate`` and test selection replace those of ``[tool.mutmut]`` (pyproject.toml) in a copy of
the working tree under build-mutants/<group>/ (the other keys, such as the pytest arguments and the
timeout, are kept). A group's copy is reused on the next run, where mutmut keeps every earlier verdict (a
change of the group's test list resets them all); ``--again`` re-runs the mutants left alive, e.g.
after adding tests; ``--fresh`` deletes the copy first.

Every run is at ``nice -n 19`` with one child (the machine is shared; ``--children 2`` on a quiet
machine). The wall time of each group's run is appended to build-mutants/<group>/runs.json for the summary.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build-mutants"
FAST = ["-m", "not slow and not gpu and not tensorrt"]

# group -> (modules mutated, tests run on each mutant). Keep the test lists to tests that run in
# seconds: mutmut runs every test that reaches a mutated function once per mutant.
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "sampling": (
        ["flipnet_rt/sampling/*", "flipnet_rt/config/options.py"],
        ["tests/sampling", "tests/test_restorer_reference.py", "tests/test_config.py", "tests/test_options.py"],
    ),
    "imaging": (  # the image primitives; scene.py/examples.py (demo pictures) and native.py (tests/native) are not
        [
            "flipnet_rt/imaging/colour.py",
            "flipnet_rt/imaging/geometry.py",
            "flipnet_rt/imaging/io.py",
            "flipnet_rt/imaging/tensor.py",
        ],
        ["tests/imaging"],
    ),
    "engine": (
        ["flipnet_rt/engine/*"],
        # tests that export random:tiny (tiny_engine, ~1 min) are left out: a forked mutant re-exports
        [
            "tests/engine",
            "tests/backends/test_select.py",
            "-k",
            "not test_an_engine_directory_is_opened_and_checked and not test_every_part_is_checked_with_a_fix",
        ],
    ),
    "restorer": (
        ["flipnet_rt/runtime/restorer.py", "flipnet_rt/runtime/core.py"],
        ["tests/test_restorer.py", "tests/test_restorer_reference.py", "tests/test_restorer_contracts.py"],
    ),
    "device": (  # the device frame path: flow and host kernels; the CUDA classes' Python over stand-ins
        ["flipnet_rt/faces/device.py"],
        # the two detection tests export random:tiny (tiny_engine, ~1 min per mutant): left to `make test`
        [
            "tests/faces/test_device.py",
            "tests/faces/test_device_standin.py",
            "-k",
            "not test_detection_on_the_device_path_runs_on_the_uploaded_frames"
            " and not test_video_searches_on_the_device_and_restores_from_the_same_uploads",
        ],
    ),
    "batchio": (
        ["flipnet_rt/jobs/batchio.py"],
        ["tests/test_batchio.py", "tests/test_batchio_contracts.py"],
    ),
    "evaluation": (
        ["flipnet_rt/evaluation/scoring.py"],
        # the end-to-end eval tests (~40 s each under mutmut; eval --levels ~20 s) are left to `make test`:
        # tests/test_evaluation_contracts.py and test_evaluation_levels_contracts.py drive evaluate() and
        # evaluate_levels() with stand-in restorers instead
        [
            "tests/test_evaluation.py",
            "tests/test_evaluation_contracts.py",
            "tests/test_evaluation_levels.py",
            "tests/test_evaluation_levels_contracts.py",
            "-k",
            "not test_eval_command_scores_every_readable_face and not test_eval_scores_at_the_faces_own_size"
            " and not test_eval_scores_are_those_of_the_images_it_writes"
            " and not test_eval_levels_scores_the_three_variants",
        ],
    ),
    "verify": (
        ["flipnet_rt/export/verify.py"],
        ["tests/export/test_verify.py", "tests/export/test_verify_helpers.py", "tests/export/test_verify_flow.py"],
    ),
    "cli": (
        ["flipnet_rt/cli/jobs.py", "flipnet_rt/cli/main.py"],
        # the end-to-end tests of tests/cli/test_cli.py (0.3-4 s each, all reaching main()) are left to
        # `make test`: tests/cli/test_plumbing.py checks the same plumbing in ~5 s for the whole file
        ["tests/cli/test_plumbing.py"],
    ),
}


# mutants of code whose effect shows only on a GPU (tests/faces/test_device_gpu.py): no test here can
# tell them apart; tests/mutation_summary.py counts those not killed in a "GPU only" column, out of the score
GPU_ONLY = [
    "flipnet_rt.faces.device.x__cuda_kernels__mutmut_*",
    "flipnet_rt.faces.device.xǁTorchKernelsǁ_stream__*",
    # the device a torch array is made on: CPU tensors everywhere but on a GPU
    "flipnet_rt.faces.device.xǁTorchKernelsǁ_empty__mutmut_3",
    "flipnet_rt.faces.device.xǁTorchKernelsǁ_empty__mutmut_6",
    "flipnet_rt.faces.device.xǁTorchKernelsǁupload__mutmut_1",
    "flipnet_rt.faces.device.xǁTorchKernelsǁupload__mutmut_3",
    "flipnet_rt.faces.device.xǁTorchKernelsǁ_upload_resize__mutmut_2",  # the resize matrices' device
    "flipnet_rt.faces.device.xǁTorchKernelsǁ_upload_resize__mutmut_4",
    "flipnet_rt.faces.device.xǁTorchKernelsǁdetector_input__mutmut_45",  # the mean's device
    "flipnet_rt.faces.device.xǁTorchKernelsǁdetector_input__mutmut_54",  # the padded input's device
    "flipnet_rt.faces.device.xǁTorchKernelsǁdetector_input__mutmut_57",
    "flipnet_rt.faces.device.xǁTorchKernelsǁblend__mutmut_5",  # np.asarray of a CUDA tensor fails; of a CPU one, not
    "flipnet_rt.faces.device.xǁTorchKernelsǁblend__mutmut_20",  # the weights' device
    "flipnet_rt.faces.device.xǁTorchKernelsǁblend__mutmut_22",
    "flipnet_rt.faces.device.xǁTorchKernelsǁblend__mutmut_3",  # a tensor through np.asarray, as mutant 5
    "flipnet_rt.faces.device.xǁDeviceFramesǁrestore__mutmut_190",  # the weights through np.asarray, as above
    # to_faces without the NaN flag list checks for NaN at once, i.e. waits there for the device: the
    # same error (input crops of uint8 frames hold none), raised sooner; only a GPU's overlap differs
    "flipnet_rt.faces.device.xǁDeviceFramesǁrestore__mutmut_62",
    "flipnet_rt.faces.device.xǁDeviceFramesǁrestore__mutmut_64",
    "flipnet_rt.faces.device.xǁDeviceFramesǁrestore__mutmut_124",
    "flipnet_rt.faces.device.xǁDeviceFramesǁrestore__mutmut_126",
    "flipnet_rt.faces.device.xǁDeviceFramesǁrestore__mutmut_153",
    "flipnet_rt.faces.device.xǁDeviceFramesǁrestore__mutmut_155",
]

TEXT_ARGUMENTS = ("help", "description", "metavar")  # argparse arguments that only change what --help prints


def _without_text(function: ast.AST) -> str:
    """The function's syntax tree without its name and without any help/description/metavar argument
    (so a mutant that changes or drops one of them compares equal to the original)."""
    function = copy.deepcopy(function)
    function.name = "f"
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            node.keywords = [k for k in node.keywords if k.arg not in TEXT_ARGUMENTS]
            if isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument_group":
                node.args = []  # a group's title and description are only printed by --help
    return ast.dump(function)


def help_text_mutants(mutated_file: Path, module: str) -> set[str]:
    """Names of the mutants of ``mutated_file`` (mutmut's copy, holding every mutant function beside
    its ``__mutmut_orig``) that differ from the original only in help text."""
    functions = {
        node.name: node
        for node in ast.walk(ast.parse(mutated_file.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name
    }
    found = set()
    for name, function in functions.items():
        base, _, index = name.rpartition("__mutmut_")
        original = functions.get(f"{base}__mutmut_orig")
        if index.isdigit() and original is not None and _without_text(function) == _without_text(original):
            found.add(f"{module}.{name}")
    return found


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def group_pyproject(text: str, modules: list[str], tests: list[str]) -> str:
    """pyproject.toml with [tool.mutmut]'s only_mutate and test selection replaced."""
    start = text.index("[tool.mutmut]\n") + len("[tool.mutmut]\n")
    end = re.search(r"(?m)^\[", text[start:])
    end = start + end.start() if end else len(text)
    body = text[start:end]
    for key in ("only_mutate", "pytest_add_cli_args_test_selection"):
        body = re.sub(rf"(?ms)^{key} = \[.*?\]\n", "", body)  # no "]" inside the values
    body = (
        f"only_mutate = {toml_list(modules)}\npytest_add_cli_args_test_selection = {toml_list(FAST + tests)}\n" + body
    )
    return text[:start] + body + text[end:]


#: Folders of the repository copied to where they install (pyproject.toml's wheel.packages): mutmut
#: names a mutant by its file's path, so that path must be the module's import name.
INSTALLED_AS = {"export/": "flipnet_rt/export/", "train/": "flipnet_rt/train/"}


def sync(dest: Path) -> None:
    """Copy the working tree's tracked and untracked-but-not-ignored files into dest (export/ and
    train/ as flipnet_rt/export/ and flipnet_rt/train/, their import names)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in files.decode().split("\0"):
        src = ROOT / name
        for folder, installed in INSTALLED_AS.items():
            if name.startswith(folder):
                name = installed + name[len(folder) :]
        dst = dest / name
        if not name or not src.is_file() or src.is_symlink():
            continue
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    venv = dest / ".venv"
    if not venv.exists():
        venv.symlink_to(ROOT / ".venv")


def not_killed(dest: Path) -> list[str]:
    """Names of the mutants of an earlier run that survived (but for help text), that no test reached,
    that timed out (re-judged: a timeout may be a starved run), or that are still unchecked (a stopped run)."""
    names = []
    for meta in sorted((dest / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = str(meta.relative_to(dest / "mutants")).removesuffix(".py.meta").replace("/", ".")
        text = help_text_mutants(meta.with_suffix(""), module)  # what --help prints: no test is meant to pin it
        names += [
            key
            for key, code in codes.items()
            if code in (0, 5, 33, None, 36, 24, -24, 152, 255) and not (code == 0 and key in text)
        ]
    return names


def run_group(
    name: str, fresh: bool, names: list[str], build: Path = BUILD, again: bool = False, children: int = 1
) -> int:
    modules, tests = GROUPS[name]
    dest = build / name
    if fresh and dest.exists():
        shutil.rmtree(dest)
    if again:  # mutmut keeps every earlier verdict unless a mutant is named
        names = names + not_killed(dest)
        if not names:
            print(f"== {name}: no surviving mutant to re-run", flush=True)
            return 0
    sync(dest)
    pyproject = dest / "pyproject.toml"
    pyproject.write_text(group_pyproject((ROOT / "pyproject.toml").read_text(), modules, tests))
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    print(f"== {name}: mutating {' '.join(modules)}; tests {' '.join(tests)}", flush=True)
    start = time.time()
    run = ["nice", "-n", "19", mutmut, "run", "--max-children", str(children)]
    # the cores shared out among the children: torch's OpenMP threads in forked children spin-wait, and
    # two children of two threads each on two cores ran the torch-heavy device mutants ~4x slower
    # (some timing out at 215 s where their tests take 13 s)
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // children)), **os.environ}
    code = subprocess.run([*run, *names], cwd=dest, env=env).returncode
    if again and code == 0:  # mutants of functions changed since the last run were made by that run, unchecked
        new = [n for n in not_killed(dest) if n not in names]
        if new:
            print(f"== {name}: {len(new)} mutants of changed functions, not checked yet", flush=True)
            code = subprocess.run([*run, *new], cwd=dest, env=env).returncode
            names = names + new
    seconds = time.time() - start
    log = dest / "runs.json"
    runs = json.loads(log.read_text()) if log.is_file() else []
    runs.append(
        {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": round(seconds),
            "exit_code": code,
            "mutants": f"{len(names)} not killed before" if again else names or "all",
            "modules": modules,
            "tests": FAST + tests,
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip(),
        }
    )
    log.write_text(json.dumps(runs, indent=1) + "\n")
    print(f"== {name}: mutmut exit {code} after {seconds / 60:.1f} min", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"groups to run (default all: {', '.join(GROUPS)})")
    parser.add_argument("--fresh", action="store_true", help="delete each group's copy first")
    parser.add_argument("--dir", type=Path, default=BUILD, help="where the copies go (build-mutants/)")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    parser.add_argument(
        "--again", action="store_true", help="re-run the mutants an earlier run left alive (after adding tests)"
    )
    parser.add_argument(
        "--children",
        type=int,
        default=1,
        help="mutants run at once (default 1; one group at a time: torch's threads slow badly when oversubscribed)",
    )
    parser.add_argument(
        "--mutant",
        action="append",
        default=[],
        help="re-run only these mutant names (mutmut patterns); needs one group",
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, (modules, tests) in GROUPS.items():
            print(f"{name}: {' '.join(modules)} <- {' '.join(tests)}")
        return 0
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; groups: {', '.join(GROUPS)}")
    if args.mutant and len(args.groups) != 1:
        parser.error("--mutant needs exactly one group")
    failed = [
        g
        for g in args.groups or list(GROUPS)
        if run_group(g, args.fresh, args.mutant, args.dir, args.again, args.children)
    ]
    if failed:
        print(f"mutmut failed in: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
