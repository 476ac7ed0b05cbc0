"""The GPU check (benchmarks/gpu_check.sh, issue 26) as far as a machine without a GPU can check it.

- its plan (``GPU_CHECK_PLAN=1``) lists every step, in the order that gets the most evidence first,
  with limits that add up to no more than the 580 s the script gives itself inside the device
  tool's 600 s command;
- the preflight stops at once, with one line naming what is missing and the fix, and a non-zero
  exit (here: no GPU, so it must stop);
- benchmarks/gpu_parity.py reads the commit without git or .git (the tree copied to the GPU
  machine has no .git, and the machine may have no git).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed here")

# The order that gets the most evidence first (issue 26 item 5); the build runs in the background.
STEPS = [
    "preflight",
    "native_cuda_build",
    "gpu_tests",
    "native_cuda_tests",
    "device_pipeline",
    "parity_bench",
    "gpu_detect",
    "gpu_video",
]
BACKGROUND = "native_cuda_build"


def _load_parity():
    pytest.importorskip("torch", reason="benchmarks/gpu_parity.py imports torch")
    spec = importlib.util.spec_from_file_location("gpu_parity_under_test", ROOT / "benchmarks" / "gpu_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bash(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@needs_bash
def test_script_parses():
    result = _bash("-n", str(SCRIPT), env=dict(os.environ))
    assert result.returncode == 0, result.stderr


@needs_bash
def test_plan_lists_every_step_within_the_budget(tmp_path):
    env = {**os.environ, "GPU_CHECK_PLAN": "1", "OUT": str(tmp_path / "out")}
    result = _bash(str(SCRIPT), env=env)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\s*(\S+)\s+(\d+) s\b", result.stdout, re.M)
    steps = [name for name, _ in rows if name != "total"]
    limits = {name: int(limit) for name, limit in rows}
    assert steps == STEPS, result.stdout
    serial = [s for s in STEPS if s != BACKGROUND]
    assert sum(limits[s] for s in serial) == limits["total"], result.stdout
    assert limits["total"] <= 580, result.stdout
    # the background build is over before the native tests could start, whatever the steps before take
    assert limits[BACKGROUND] <= limits["preflight"] + limits["gpu_tests"], result.stdout
    assert "background" in next(line for line in result.stdout.splitlines() if BACKGROUND in line)
    assert not (tmp_path / "out").exists(), "the plan must run nothing and write nothing"


@needs_bash
def test_plan_runs_nothing_even_without_python(tmp_path):
    """The plan is bash alone: no python3, nvidia-smi, git or pip on the PATH, and it still prints."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("date", "dirname", "cat", "printf"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "GPU_CHECK_PLAN": "1", "HOME": str(tmp_path)}
    result = _bash(str(SCRIPT), env=env)
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and "gpu_tests" in result.stdout


@needs_bash
def test_preflight_stops_at_once_with_one_line(tmp_path):
    """No GPU here (or no CUDA torch, no diffusers, no nvcc...): the preflight names the first thing
    missing on one line, exits non-zero, and runs no step."""
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_PREFLIGHT_ONLY": "1", "TMPDIR": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    result = _bash(str(SCRIPT), env=env, timeout=120)
    if result.returncode == 0:
        pytest.skip("everything the GPU check needs is here (a GPU machine): nothing to stop for")
    lines = [line for line in result.stderr.splitlines() if line.startswith("gpu_check: preflight")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gpu_check: preflight failed: "), lines[0]
    assert re.search(r"not importable|not found|has no CUDA device|sees no device|did not install", lines[0]), lines[0]
    summary = (out / "summary.txt").read_text()
    assert "preflight: FAILED" in summary
    assert not (out / "log.txt").exists() or "== gpu_tests" not in (out / "log.txt").read_text()


@needs_bash
def test_preflight_names_missing_diffusers_and_the_fix(tmp_path):
    """With a python3 where diffusers does not import, the line names diffusers and `make gpu-wheels`."""
    blocked = tmp_path / "blocked" / "diffusers"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('blocked by the test: no diffusers here')\n")
    venv_bin = Path(sys.executable).parent  # a python3 beside this interpreter, as on the GPU machine
    path = f"{venv_bin}:{os.environ.get('PATH', '')}" if (venv_bin / "python3").exists() else os.environ.get("PATH", "")
    env = {
        **os.environ,
        "PATH": path,
        "PYTHONPATH": str(blocked.parent),
        "OUT": str(tmp_path / "out"),
        "GPU_CHECK_PREFLIGHT_ONLY": "1",
        "TMPDIR": str(tmp_path),
    }
    result = _bash(str(SCRIPT), env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gpu_check: preflight")]
    assert len(lines) == 1, result.stderr
    assert "diffusers not importable" in lines[0], lines[0]
    assert 'run `make gpu-wheels` here and pass carry: [".whl"]' in lines[0], lines[0]
    assert (tmp_path / "out" / "summary.txt").is_file()
    assert (tmp_path / "out" / "gpu_check.tar.gz").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu_check.tar.gz", "summary.txt"]


def _dry_run(tmp_path, **env: str) -> tuple:
    """benchmarks/gpu_check.sh with GPU_CHECK_DRY=1 and ``env``; exit 0 asserted. -> ($OUT, summary.txt)."""
    out = tmp_path / "out"
    result = _bash(
        str(SCRIPT), env={**os.environ, "GPU_CHECK_DRY": "1", "OUT": str(out), "TMPDIR": str(tmp_path), **env}
    )
    assert result.returncode == 0, result.stderr
    return out, (out / "summary.txt").read_text()


@needs_bash
def test_dry_run_guard_skips_what_does_not_fit_and_packs_two_files(tmp_path):
    """GPU_CHECK_DRY echoes each step; with 150 s of budget the 175 s step is skipped (and says so),
    the others run in the plan's order, and $OUT holds summary.txt and one archive (issue 26 item 11)."""
    out, summary = _dry_run(tmp_path, GPU_CHECK_BUDGET="150")
    assert re.search(r"^parity_bench: skipped: its limit 175s exceeds the \d+s left of 150s$", summary, re.M), summary
    ran = re.findall(r"^(\w+): exit 0 in", summary, re.M)
    assert ran == [
        "gpu_tests",
        "native_cuda_build",
        "native_cuda_tests",
        "device_pipeline",
        "gpu_detect",
        "gpu_video",
    ], summary
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.tar.gz", "summary.txt"]
    with tarfile.open(out / "gpu_check.tar.gz") as archive:
        names = set(archive.getnames())
        packed = archive.extractfile("gpu_check/summary.txt").read().decode()
    assert {"gpu_check/summary.txt", "gpu_check/log.txt", "gpu_check/native_build.log"} <= names
    assert packed == summary


@needs_bash
def test_dry_run_a_failed_build_skips_what_needs_it(tmp_path):
    """When the native CUDA build fails, the steps that need its kernels are skipped, saying why, and
    the time goes to parity_bench."""
    _, summary = _dry_run(tmp_path, GPU_CHECK_DRY_BUILD_STATUS="1")
    assert "native_cuda_build: exit 1" in summary
    for name in ("native_cuda_tests", "device_pipeline", "gpu_video"):
        assert re.search(rf"^{name}: skipped: the native CUDA build failed \(exit 1", summary, re.M), summary
    assert re.findall(r"^(\w+): exit 0 in", summary, re.M) == ["gpu_tests", "parity_bench", "gpu_detect"], summary


@needs_bash
def test_dry_run_commands_name_existing_scripts_and_tests(tmp_path):
    """Every path a step runs exists in this tree (a renamed test file would waste the GPU window)."""
    env = {**os.environ, "GPU_CHECK_DRY": "1", "OUT": str(tmp_path / "out"), "TMPDIR": str(tmp_path)}
    result = _bash(str(SCRIPT), env=env)
    assert result.returncode == 0, result.stderr
    commands = re.findall(r"^dry run: (.*)$", result.stdout, re.M)
    assert len(commands) == 6, result.stdout
    paths = {
        word
        for command in commands
        for word in command.split()
        if word.startswith(("tests/", "benchmarks/")) and "=" not in word
    }
    assert paths and all((ROOT / path).exists() for path in paths), paths


def _fake_cuda(monkeypatch, parity):
    props = types.SimpleNamespace(name="Fake GPU")
    monkeypatch.setattr(parity.torch.cuda, "get_device_properties", lambda index=0: props)


def test_parity_environment_without_git_on_the_path(tmp_path, monkeypatch):
    """Issue 26 item 4: the GPU machine may have no git at all; the commit is then 'unknown'."""
    parity = _load_parity()
    _fake_cuda(monkeypatch, parity)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("GPU_CHECK_COMMIT", raising=False)
    env = parity.environment()
    assert env["commit"] == "unknown"
    assert env["gpu"] == "Fake GPU" and env["driver"] == "unknown"


def test_parity_environment_in_a_tree_without_git_dir(tmp_path, monkeypatch):
    """The copied tree has no .git: the commit is 'unknown', not that of some enclosing repository."""
    parity = _load_parity()
    _fake_cuda(monkeypatch, parity)
    copy = tmp_path / "copy"
    (copy / "benchmarks").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "gpu_parity.py", copy / "benchmarks" / "gpu_parity.py")
    monkeypatch.setattr(parity, "ROOT", copy, raising=False)
    monkeypatch.delenv("GPU_CHECK_COMMIT", raising=False)
    monkeypatch.chdir(copy)
    assert parity.environment()["commit"] == "unknown"


def test_parity_environment_takes_the_commit_given_by_the_caller(monkeypatch):
    """gpu_check.sh passes GPU_CHECK_COMMIT (the commit named where the call was made) through."""
    parity = _load_parity()
    _fake_cuda(monkeypatch, parity)
    monkeypatch.setenv("GPU_CHECK_COMMIT", "abc1234")
    assert parity.environment()["commit"] == "abc1234"


def test_parity_environment_reads_the_commit_here(monkeypatch):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("no git or no .git here")
    parity = _load_parity()
    _fake_cuda(monkeypatch, parity)
    monkeypatch.delenv("GPU_CHECK_COMMIT", raising=False)
    expected = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert parity.environment()["commit"].startswith(expected)


@pytest.mark.slow
def test_parity_and_bench_share_one_model_on_the_cpu(tmp_path, monkeypatch, capsys):
    """Issue 26 item 5: (c) and (d) in one process build the model once; --device cpu runs the same
    flow as the GPU check's parity_bench step (CUDA graphs left out) on random:tiny."""
    parity = _load_parity()
    import flipnet_rt.models as models

    loads = []
    real_load = models.load_model

    def counting_load(spec, *args, **kwargs):
        loads.append(spec)
        return real_load(spec, *args, **kwargs)

    monkeypatch.setattr(models, "load_model", counting_load)
    monkeypatch.setenv("GPU_CHECK_COMMIT", "abc1234")
    parity_json, bench_json, bench_csv = tmp_path / "parity.json", tmp_path / "bench.json", tmp_path / "bench.csv"
    status = parity.main(
        [
            "--json",
            str(parity_json),
            "--model",
            "random:tiny",
            "--device",
            "cpu",
            "--steps",
            "1",
            "--batch",
            "1",
            "--",
            "--device",
            "cpu",
            "--backend",
            "torch",
            "--precision",
            "fp32",
            "--steps",
            "1",
            "--batch",
            "1",
            "--cond-cache",
            "on",
            "--warmup",
            "0",
            "--iters",
            "1",
            "--baseline",
            "--json",
            str(bench_json),
            "--csv",
            str(bench_csv),
        ]
    )
    assert status == 0, capsys.readouterr()
    assert loads == ["random:tiny"]
    records = json.loads(parity_json.read_text())
    assert [r["label"] for r in records][:2] == ["fp32 eager cache=off (reference)", "fp16 eager cache=on"]
    assert all(r["nan"] == 0 and r["environment"]["commit"] == "abc1234" for r in records)
    bench = json.loads(bench_json.read_text())
    assert bench["baseline"] and bench["results"][0]["model"] == "random:tiny"
    assert bench_csv.is_file()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
