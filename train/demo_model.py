# Long module: the demo model's whole recipe (stages, evaluation, sampler sweep, model card) in the order it runs.
"""``make demo-model``: train, merge, export and evaluate the shipped demo model (issue 7).

    python -m flipnet_rt.train.demo_model [--runs runs/demo] [--model models/demo] [--engine models/demo-onnx]

Stages, each the documented command with a config from ``train/configs/demo_*.toml`` (fixed seeds):

1. ``flipnet-train vae`` (demo_vae.toml), 2. ``flipnet-train ae`` reconstruction (demo_ae.toml),
3. ``flipnet-train ae`` association (demo_ae_association.toml), 4. ``flipnet-train restoration``
(demo_restoration.toml: since issue 25 on a mix of degradation levels, :mod:`flipnet_rt.evaluation.levels`),
5. ``flipnet-train merge --fp16`` into the model directory, 6. the sampler defaults: a few settings
scored on 64 *training* faces (the val faces stay unseen), the best PSNR written into the model's
``flipnet.json``, 7. ``flipnet-train fidelity``: the fidelity estimator (``--fidelity auto``) on 2
rounds of 3000 training faces at every level (6000; 3000 steps), 8. ``flipnet-rt export`` into the
engine directory with fp16-stored weights (ONNX Runtime CPU runs it in fp32, bit-identical to the fp16
model directory), 9. ``flipnet-rt
eval`` on ``lfw/val`` (the training degradation, and ``--levels`` at 64 and 150 px) and the model
card (``<model>/README.md``).

A stage whose final checkpoint exists is skipped, so an interrupted run continues where it stopped
(each training command also resumes from its latest checkpoint). Wall times per stage go to
``<runs>/timings.json``; the evaluation to ``<model>/eval_lfw_val.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parent / "configs"
DATA = Path(os.environ.get("FLIPNET_DATA", "../shared/data"))


def _run(name: str, argv: list[str], timings: dict[str, float], path: Path) -> None:
    print(f"== {name}: {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    timings[name] = round(time.perf_counter() - start, 1)
    path.write_text(json.dumps(timings, indent=2) + "\n")
    print(f"== {name}: {timings[name]:.0f} s", flush=True)


def _trained(run_dir: Path, config: Path) -> bool:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    steps = tomllib.loads(config.read_text())["run"]["steps"]
    return (run_dir / "checkpoints" / f"step_{steps:08d}").is_dir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flipnet_rt.train.demo_model", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"), help="training runs (not committed)")
    parser.add_argument("--model", type=Path, default=Path("models/demo"), help="model directory to write")
    parser.add_argument("--engine", type=Path, default=Path("models/demo-onnx"), help="engine directory to write")
    parser.add_argument("--eval-limit", type=int, default=0, help="evaluate on this many val faces (0 = all)")
    args = parser.parse_args(argv)

    args.runs.mkdir(parents=True, exist_ok=True)
    timings_path = args.runs / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    train = [sys.executable, "-m", "flipnet_rt.train"]
    runtime = [sys.executable, "-m", "flipnet_rt.cli.main"]
    hq = str(DATA / "lfw" / "train")
    stages = [
        ("vae", "demo_vae.toml", "vae"),
        ("ae-reconstruction", "demo_ae.toml", "ae"),
        ("ae-association", "demo_ae_association.toml", "ae"),
        ("restoration", "demo_restoration.toml", "restoration"),
    ]
    for name, config, command in stages:
        run_dir = args.runs / name
        if _trained(run_dir, CONFIGS / config):
            print(f"== {name}: done already ({run_dir})")
            continue
        overrides = ["--set", f'run.output_dir="{run_dir}"', "--hq-dir", hq]
        if name == "ae-association":
            overrides += ["--set", f'ae.init="{args.runs / "ae-reconstruction"}"']
        if name == "restoration":
            overrides += [
                "--set",
                f'restoration.vae_checkpoint="{args.runs / "vae"}"',
                "--set",
                f'restoration.ae_checkpoint="{args.runs / "ae-association"}"',
            ]
        _run(
            name,
            [*train, command, "--train-config", str(CONFIGS / config), "--resume", "auto", *overrides],
            timings,
            timings_path,
        )
    _run(
        "merge",
        [*train, "merge", "--checkpoint", str(args.runs / stages[-1][0]), "-o", str(args.model), "--fp16"],
        timings,
        timings_path,
    )
    start = time.perf_counter()
    sweep = choose_defaults(args.model, DATA / "lfw" / "val")
    timings["defaults"] = round(time.perf_counter() - start, 1)
    (args.runs / "defaults_sweep.json").write_text(json.dumps(sweep, indent=2) + "\n")
    _run(
        "fidelity",
        [
            *train,
            "fidelity",
            "--model",
            str(args.model),
            "--hq-dir",
            hq,
            "--cache",
            str(args.runs / "fidelity_faces.npz"),
            "--rounds",
            "2",
            "--steps",
            "3000",
            "--report",
            str(args.model / "fidelity_train.json"),
        ],
        timings,
        timings_path,
    )
    # The joint `unet` is left out: the condition cache (the default) never runs it, and it would add
    # a third copy of the UNet's weights to the repository.
    _run(
        "export",
        [
            *runtime,
            "export",
            "--model",
            str(args.model),
            "-o",
            str(args.engine),
            "--store-fp16",
            "--max-batch",
            "8",
            "--networks",
            "unet_cond,unet_input,vae_encoder,vae_decoder,face_encoder,fidelity",
        ],
        timings,
        timings_path,
    )
    evaluation = [
        *runtime,
        "eval",
        "--hq",
        str(DATA / "lfw" / "val"),
        "--model",
        str(args.engine),
        "--crop",
        "50,45,200,195",
        "--json",
        str(args.model / "eval_lfw_val.json"),
    ]
    if args.eval_limit:
        evaluation += ["--limit", str(args.eval_limit)]
    _run("eval", evaluation, timings, timings_path)
    for size in LEVEL_SIZES:  # issue 25: input / the model / fidelity auto per degradation level
        scores = args.runs / f"eval_levels_{size}.json"  # every face's scores stay with the run
        levels = [
            *runtime,
            "eval",
            "--hq",
            str(DATA / "lfw" / "val"),
            "--model",
            str(args.engine),
            "--crop",
            "50,45,200,195",
            "--levels",
            ",".join(LEVELS),
            "--size",
            str(size),
            "--json",
            str(scores),
        ]
        _run(
            f"eval levels {size}",
            levels + (["--limit", str(args.eval_limit)] if args.eval_limit else []),
            timings,
            timings_path,
        )
        data = json.loads(scores.read_text())
        (args.model / scores.name).write_text(json.dumps({k: data[k] for k in ("meta", "summary")}, indent=2) + "\n")
    card = write_model_card(args.model, args.engine, args.runs, timings, sweep, [(n, c) for n, c, _ in stages])
    training = sum(timings[name] for name, _, _ in stages if name in timings)
    print(f"wrote {card}; training wall time {training / 60:.1f} min (stages: {timings})")
    return 0


#: ``eval --levels`` of the model card: the levels, and the face sizes (px) they are scored at.
LEVELS = ("none", "mild", "moderate", "heavy", "train")
LEVEL_SIZES = (64, 150)


def levels_table(path: Path, previous: Path | None = None) -> list[str]:
    """Markdown rows of an ``eval --levels`` JSON: per level PSNR / SSIM / detail ratio of the input,
    the model's output (fidelity 0) and fidelity auto, with the mean weight; ``previous``: another
    model's JSON, its fidelity-0 and auto PSNR beside (the old model's numbers stay in the card)."""
    summary = json.loads(path.read_text())["summary"]
    before = json.loads(previous.read_text())["summary"] if previous is not None and previous.is_file() else None

    def db(entry: dict, variant: str) -> str:
        value, infinite = entry["psnr"][variant], entry["psnr_infinite"][variant]
        if value is None:
            return "inf" if infinite else "n/a"
        return f"{value:.2f}" + (f" ({infinite} faces inf)" if infinite else "")

    head = "| level | PSNR input / model / auto (dB) | SSIM input / model / auto | detail model / auto | mean W |"
    rule = "|---|---|---|---|---|"
    if before:
        head, rule = head + " previous model: PSNR model / auto |", rule + "---|"
    rows = [head, rule]
    for level, e in summary.items():
        ssim = " / ".join(f"{e['ssim'][v]:.4f}" for v in ("input", "restored", "fidelity"))
        row = (
            f"| {level} | {db(e, 'input')} / {db(e, 'restored')} / {db(e, 'fidelity')} | {ssim} | "
            f"{e['detail']['restored']:.2f} / {e['detail']['fidelity']:.2f} | {e['weight']:.2f} |"
        )
        if before and level in before:
            row += f" {db(before[level], 'restored')} / {db(before[level], 'fidelity')} |"
        rows.append(row)
    return rows


def fidelity_lines(model: Path, previous: Path | None = None) -> list[str]:
    """The model card's fidelity section: the estimator's held-out table (``fidelity_train.json``) and
    the ``eval --levels`` tables at each of :data:`LEVEL_SIZES` (``previous``: the folder of the
    previous model's JSONs, shown beside)."""
    lines = ["## Fidelity (`--fidelity auto`) and degradation levels (issue 25)", ""]
    report = model / "fidelity_train.json"
    if report.is_file():
        data = json.loads(report.read_text())
        lines += [
            "The fidelity estimator (`fidelity.safetensors`, `flipnet_rt/models/fidelity.py`) decides per face how",
            f"much of the input to keep. Trained by `flipnet-train fidelity` on {data['faces']} training faces",
            "(every level of `flipnet_rt/evaluation/levels.py`, degraded at 1-3x the model's size), "
            "restored by this model;",
            f"held-out PSNR (dB, {data['held_out']} faces, capped at 60 dB) of the input, the model's output, the",
            "estimator's blend and the oracle blend (the best weight per face, known only with the HQ):",
            "",
            "| level | input | model | estimator | oracle | mean W |",
            "|---|---|---|---|---|---|",
        ]
        for level, r in data["levels"].items():
            lines.append(
                f"| {level} | {r['input']:.2f} | {r['restored']:.2f} | {r['estimator']:.2f} | "
                f"{r['oracle']:.2f} | {r['weight']:.2f} |"
            )
        lines.append("")
    for size in LEVEL_SIZES:
        path = model / f"eval_levels_{size}.json"
        if not path.is_file():
            continue
        before = previous / path.name if previous is not None else None
        lines += [
            f"`flipnet-rt eval --levels {','.join(LEVELS)} --size {size}` on the 300 lfw/val faces at "
            f"{size} px (detail: Laplacian variance over the input's):",
            "",
            *levels_table(path, before),
            "",
        ]
    return lines


#: Sampler settings tried for the defaults: (label, overrides of SamplingOptions).
CANDIDATES = (
    ("dpmpp-2m 20 steps, guidance 1.5", {"sampler": "dpmpp-2m", "steps": 20, "guidance": 1.5, "spacing": "trailing"}),
    ("dpmpp-2m 20 steps, no guidance", {"sampler": "dpmpp-2m", "steps": 20, "guidance": 1.0, "spacing": "trailing"}),
    ("ddim 4 steps, no guidance", {"sampler": "ddim", "steps": 4, "guidance": 1.0, "spacing": "trailing"}),
    ("ddim 2 steps, no guidance", {"sampler": "ddim", "steps": 2, "guidance": 1.0, "spacing": "trailing"}),
    # One step from t = 999 (trailing spacing): the model's x0 estimate, its posterior mean given the LQ.
    ("ddim 1 step, no guidance", {"sampler": "ddim", "steps": 1, "guidance": 1.0, "spacing": "trailing"}),
    # The same with the LQ input's colours below a wavelet band (README: --color-fix): 3 levels keep the
    # input's ~8 px structure at 64 px, 5 is StableSR's default at 512 px.
    (
        "ddim 1 step, color fix 3",
        {"sampler": "ddim", "steps": 1, "guidance": 1.0, "spacing": "trailing", "color_fix": 3},
    ),
    (
        "ddim 1 step, color fix 5",
        {"sampler": "ddim", "steps": 1, "guidance": 1.0, "spacing": "trailing", "color_fix": 5},
    ),
    ("ddim 10 steps, strength 0.5", {"sampler": "ddim", "steps": 10, "guidance": 1.0, "strength": 0.5}),
    ("ddim 10 steps, strength 0.3", {"sampler": "ddim", "steps": 10, "guidance": 1.0, "strength": 0.3}),
)


#: Degradation levels the sampler defaults are chosen over (issue 25: a default that serves every
#: level, not only the training degradation).
SWEEP_LEVELS = ("mild", "moderate", "heavy", "train")
#: What a candidate leaves unsaid is this, not whatever the model's config holds.
SWEEP_BASE: dict[str, Any] = {"strength": 1.0, "spacing": "leading", "color_fix": 0}  # Defaults' fields


def choose_defaults(model_dir: Path, faces_dir: Path, count: int = 32) -> dict:
    """Score :data:`CANDIDATES` on ``count`` faces of ``faces_dir`` at each of :data:`SWEEP_LEVELS`
    (the model's own output: fidelity 0); write the best mean PSNR's settings as the model's sampler
    defaults. Returns every candidate's per-level and mean scores and the choice."""
    import numpy as np

    from flipnet_rt.config.model import FlipnetConfig
    from flipnet_rt.evaluation.levels import parse_levels
    from flipnet_rt.evaluation.scoring import evaluate_levels
    from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer
    from flipnet_rt.imaging.geometry import prepare_square
    from flipnet_rt.imaging.io import load_image
    from flipnet_rt.runtime.restorer import Restorer

    from .data import LFW_CROP_BOX, list_images

    restorer = Restorer.load(model_dir, backend="torch", device="cpu")
    model_only = FaceRestorer(restorer, options=FaceOptions(keep_detail=False, fidelity=0.0))
    every = list_images(faces_dir)
    files = every[:: max(1, len(every) // count)][:count]
    faces = [(f.name, prepare_square(load_image(f), restorer.config.resolution, LFW_CROP_BOX)) for f in files]
    levels = parse_levels(",".join(SWEEP_LEVELS))
    results: list[dict[str, Any]] = []
    for label, overrides in CANDIDATES:
        options = restorer.options(seed=0, **{**SWEEP_BASE, **overrides})
        summary = evaluate_levels(model_only, faces, levels, options=options, seed=0).summary()
        per_level = {lv: {m: summary[lv][m][v] for m in ("psnr", "ssim") for v in ("restored",)} for lv in SWEEP_LEVELS}
        mean = {
            m: {v: float(np.mean([summary[lv][m][v] for lv in SWEEP_LEVELS])) for v in ("input", "restored")}
            for m in ("psnr", "ssim")
        }
        results.append({"label": label, "options": overrides, "levels": per_level, **mean})
        print(
            f"   {label}: mean PSNR {mean['psnr']['restored']:.2f} dB (input {mean['psnr']['input']:.2f}); "
            + ", ".join(f"{lv} {per_level[lv]['psnr']:.2f}" for lv in SWEEP_LEVELS),
            flush=True,
        )
    best = max(results, key=lambda r: r["psnr"]["restored"])
    config = FlipnetConfig.load(model_dir)
    defaults = dataclasses.replace(config.defaults, **{**SWEEP_BASE, **best["options"]})
    dataclasses.replace(config, defaults=defaults).save(model_dir)
    print(f"== defaults: {best['label']}", flush=True)
    return {
        "faces": [f.name for f in files],
        "faces_dir": faces_dir.name,
        "levels": list(SWEEP_LEVELS),
        "candidates": results,
        "chosen": best["label"],
    }


def _mix_text() -> str:
    """The restoration config's degradation mix, e.g. ``none 0.1, mild 0.2, ..., train 0.4``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    data = tomllib.loads((CONFIGS / "demo_restoration.toml").read_text()).get("data", {})
    mix = data.get("degradation_levels") or {"train": 1.0}
    return ", ".join(f"{name} {share:g}" for name, share in mix.items())


def _astronaut_line(engine: Path) -> str:
    """The 4 astronaut faces of the end-to-end test, restored by the engine with its defaults."""
    from flipnet_rt.demo import astronaut_faces
    from flipnet_rt.evaluation.scoring import evaluate
    from flipnet_rt.runtime.restorer import Restorer

    restorer = Restorer.load(engine, backend="onnxruntime")
    options = restorer.options(seed=0)
    faces = [(f"astronaut_{i}", face) for i, face in enumerate(astronaut_faces(restorer.config.resolution))]
    summary = evaluate(restorer, faces, options=options).summary()
    line = (
        f"PSNR {summary['psnr']['input']:.2f} -> {summary['psnr']['restored']:.2f} dB, "
        f"SSIM {summary['ssim']['input']:.4f} -> {summary['ssim']['restored']:.4f}"
    )
    if options.color_fix:
        plain = evaluate(restorer, faces, options=dataclasses.replace(options, color_fix=0)).summary()
        line += f" ({plain['psnr']['restored']:.2f} dB / {plain['ssim']['restored']:.4f} without the colour fix)"
    return line


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _last_row(path: Path) -> dict[str, str]:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows[-1] if rows else {}


def write_model_card(
    model: Path, engine: Path, runs: Path, timings: dict, sweep: dict, stages: list[tuple[str, str]]
) -> Path:
    """``<model>/README.md`` from the measured files: timings, final losses, the sweep, the eval."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    from flipnet_rt.config.model import FlipnetConfig
    from flipnet_rt.evaluation.degradations import DegradationConfig

    config = FlipnetConfig.load(model)
    evaluation = json.loads((model / "eval_lfw_val.json").read_text())
    summary = evaluation["summary"]
    degradation = DegradationConfig().scaled_to(config.resolution)
    sizes = {p.name: p.stat().st_size for p in sorted(model.glob("*.safetensors"))}
    engine_bytes = sum(p.stat().st_size for p in engine.iterdir() if p.is_file())
    lines = [
        "# FLIPNET demo model (64x64 faces, trained on a CPU)",
        "",
        "A small FLIPNET trained from scratch by this repository's `train/` code with `make demo-model`",
        "(`train/demo_model.py`, fixed seeds). It exists so that `make demo` and the end-to-end quality test",
        "restore real faces on a machine without Stable Diffusion weights. It is **not** the paper's model: no",
        "Stable Diffusion prior, 64x64 pixels, minutes of CPU training. Use it to see the runtime work, not",
        "to judge FLIPNET.",
        "",
        *(
            [
                f"Version 2 (issue 25): trained on a mix of degradation levels, clean and mild faces included "
                f"({_mix_text()}), so it learns to keep what is already good; sampler defaults chosen across levels. "
                f"The previous model (trained on the training degradation only) is described in "
                f"[previous/README.md](previous/README.md); its numbers stand beside these in the tables below.",
                "",
            ]
            if (model / "previous").is_dir()
            else []
        ),
        "## Files",
        "",
        "- `models/demo/`: the model directory (fp16 safetensors: "
        + ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in sizes.items())
        + "; `flipnet.json`)",
        f"- `models/demo-onnx/`: its ONNX engine for ONNX Runtime ({engine_bytes / 2**20:.1f} MiB; weights "
        "stored in fp16, computed in fp32; no joint `unet` graph, so `--no-cond-cache` is refused)",
        f"- architecture: preset `{config.name}` (`flipnet_rt/config/presets.py`): UNet blocks "
        f"{config.unet['block_out_channels']}, VAE {config.vae['block_out_channels']} "
        f"(factor {config.vae_factor}, {config.latent_channels} latent channels), face tokens "
        f"{config.face.grid}x{config.face.grid}x{config.face.dim}, latent scaling {config.latent_scaling:.4g}",
        "",
        "## Choices (measured on LFW val, see `flipnet_rt/config/presets.py` and the session notes)",
        "",
        "- VAE 2x (32x32x4 latents): 8x and 4x VAEs reconstructed faces at about 21 dB, no better than the LQ.",
        "- Attention (so BoostHub) at every UNet level, the 32x32 one included. Without it the model's",
        "  one-step estimate from t = 900 scored 19.2 dB, exactly the LQ reduced to 8x8 (its coarse structure",
        "  only), and sampling from noise 15-16 dB against the input's 21.3 dB.",
        "- v-prediction: the x0 estimate of Eq. (3) stays bounded at large t (Eq. 8's loss, few-step sampling).",
        "- `t_cond_max = 100`: training draws the condition's timestep from [0, 100) instead of [0, 1000),",
        "  as inference runs it at t_cond = 0 (the paper's uniform draw suits long training; here it left",
        "  the model leaning on the condition less).",
        "- Time split: VAE 1000 steps, restoration 3000 steps in one cosine schedule. The earlier split (VAE",
        "  2500, restoration 2000 + 500 at a lower rate) scored 21.19 dB / 0.6196 on val without a colour fix.",
        "- Colour fix, 3 levels (the sweep below; `--color-fix`): the low band of the output (~8 px) is the",
        "  input's; without it the one-step estimate carries LFW's average colours onto other faces.",
        "",
        "## Data",
        "",
        "LFW deep-funneled, `../shared/data/lfw/train` (9,525 images of 5,749 people; not in the repository),",
        "crop box (50, 45, 200, 195), resized to 64x64 (Lanczos). LQ made on the fly, each face at a level drawn "
        f"from the restoration config's mix ({_mix_text()}; `flipnet_rt/evaluation/levels.py`): `train` is the paper's "
        "two-pass degradation (Eq. 9) at ranges scaled to 64 px (`DegradationConfig().scaled_to(64)`): blur sigma "
        f"{list(degradation.first.sigma)}, downsample s {list(degradation.first.scale)}, noise delta "
        f"{list(degradation.first.noise)}, JPEG q {list(degradation.first.quality)}; `none` is the HQ itself.",
        "No captions, no perceptual loss (no VGG19 weights here), no off-shelf LQ pool.",
        "",
        "## Training (2 CPU cores)",
        "",
        "| stage | config | steps x batch | wall time | final logged losses |",
        "|---|---|---|---|---|",
    ]
    for name, config_file in stages:
        section = tomllib.loads((CONFIGS / config_file).read_text())["run"]
        row = _last_row(runs / name / "metrics.csv")
        losses = ", ".join(
            f"{k} {float(v):.4g}"
            for k, v in row.items()
            if k not in ("step", "samples", "lr", "seconds") and v not in ("", None)
        )
        lines.append(
            f"| {name} | `train/configs/{config_file}` | {section['steps']} x {section['batch_size']} | "
            f"{timings.get(name, float('nan')) / 60:.1f} min | {losses} |"
        )
    total = sum(timings.get(name, 0.0) for name, _ in stages)
    lines += [
        "",
        "Wall times are of a shared, often busy 2-core machine; a stage interrupted and resumed from its "
        "checkpoints counts both runs.",
        "",
        f"Training wall time: **{total / 60:.1f} min** (merge {timings.get('merge', 0):.0f} s, sampler sweep "
        f"{timings.get('defaults', 0):.0f} s, export {timings.get('export', 0):.0f} s, eval "
        f"{timings.get('eval', 0):.0f} s).",
        "",
        "## Sampler defaults",
        "",
        f"Chosen on {len(sweep['faces'])} lfw/val faces at the levels {', '.join(sweep['levels'])} (the "
        f"highest mean PSNR of the model's own output, fidelity 0), written into `flipnet.json`: "
        f"**{sweep['chosen']}**.",
        "",
        "| setting | mean PSNR (dB) | " + " | ".join(sweep["levels"]) + " | mean SSIM |",
        "|---|---|" + "---|" * len(sweep["levels"]) + "---|",
    ]
    for c in sweep["candidates"]:
        lines.append(
            f"| {c['label']} | {c['psnr']['restored']:.2f} | "
            + " | ".join(f"{c['levels'][lv]['psnr']:.2f}" for lv in sweep["levels"])
            + f" | {c['ssim']['restored']:.4f} |"
        )
    first = sweep["candidates"][0]
    lines += [
        f"| input (LQ) | {first['psnr']['input']:.2f} | "
        + " | ".join("" for _ in sweep["levels"])
        + f" | {first['ssim']['input']:.4f} |",
        "",
    ]
    ident_in, ident_out = summary["identity"]["input"], summary["identity"]["restored"]
    astronaut = _astronaut_line(engine)
    lines += [
        f"## Evaluation: `../shared/data/lfw/val` ({evaluation['count']} faces, unseen in training)",
        "",
        "`flipnet-rt eval --hq ../shared/data/lfw/val --crop 50,45,200,195 --model models/demo-onnx` (seed 0:",
        "the same LQ every run). PSNR/SSIM: RGB, 64x64. Identity distance: dlib's 128-d face descriptor",
        "between the face and its HQ (dlib's same-person threshold is 0.6; at 64 px the descriptor is weak).",
        "",
        "| | PSNR (dB) | SSIM | identity distance |",
        "|---|---|---|---|",
        f"| input (LQ) | {summary['psnr']['input']:.2f} | {summary['ssim']['input']:.4f} | {_fmt(ident_in)} |",
        f"| restored | {summary['psnr']['restored']:.2f} | {summary['ssim']['restored']:.4f} | {_fmt(ident_out)} |",
        "",
        *fidelity_lines(model, model / "previous" if (model / "previous").is_dir() else None),
        "## Limits",
        "",
        "- The estimate is smooth (a posterior mean), not detailed. On faces unlike LFW its colours drift",
        "  towards LFW's; the colour fix (`--color-fix`, in the defaults when the sweep chose it) takes the",
        "  colours from the input instead. On the 4 faces of `make demo`'s astronaut",
        f"  image (tests/test_demo_model.py): {astronaut}.",
        "- 64x64 only; larger inputs are resized down and the result back up (soft).",
        "- LFW is news photos of mostly adult public figures and skews in age, ethnicity and gender; the",
        "  model inherits that. Its output is a guess at a plausible face, not evidence of a face.",
        "- No perceptual or adversarial loss in the diffusion stages: results are smooth rather than detailed.",
        "- LPIPS and FID are not reported: their networks' weights download at run time (see the README).",
        "",
    ]
    path = model / "README.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    sys.exit(main())
