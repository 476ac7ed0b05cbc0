"""``flipnet-train fidelity``: the fidelity estimator (:mod:`flipnet_rt.models.fidelity`) of a trained model.

    flipnet-train fidelity --model MODEL_DIR --hq-dir DIR [--engine ENGINE_DIR] [--faces N] [--steps K]

1. Faces: N HQ faces (crop box applied), each at a side S drawn from :data:`SIZES` x R and degraded
   at S at a level drawn uniformly from :mod:`flipnet_rt.evaluation.levels` (none, mild, moderate, heavy,
   train), then shrunk to R (``INTER_AREA``) as the whole-image path shrinks faces for the model.
2. The model restores them with its sampler defaults, on the engine (ONNX Runtime) when
   ``--engine`` is given: the outputs users get.
3. :class:`FidelityNet` learns to predict each face's oracle weight W* (:func:`oracle_weight`: the
   W in [0, 1] whose blend ``W * input + (1 - W) * restored`` is closest to the HQ, known only with
   the HQ) by mean squared error. (Minimising the blend's log MSE directly, the mean PSNR, was
   tried: it collapsed to W = 1 for every face, 0.8 dB below the restoration on the training
   degradation; regression to W* reached within 0.06 dB of the oracle on every level.) 10 % of the
   faces are held out; the per-level table of input / restored / estimator / oracle PSNR is printed
   and written to ``--report``.
4. Written to ``MODEL_DIR/fidelity.safetensors``; ``flipnet-rt export`` then puts the ``fidelity``
   network into the engine directory (``--fidelity auto`` uses it).

The generated faces are cached in ``--cache`` (an ``.npz``; round k > 0 of ``--rounds`` beside it
as ``NAME.round<k>.npz``), so a second run only trains.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flipnet_rt.config.options import image_seed
from flipnet_rt.evaluation.levels import Level, LevelDegradation

log = logging.getLogger(__name__)

#: Face sides S (in units of the model's resolution R) the training faces are degraded at.
SIZES = (1.0, 1.5, 2.34, 3.0)
LEVELS = tuple(Level)
#: Streams of :func:`image_seed` for one face's draws.
STREAM_LEVEL, STREAM_DEGRADE, STREAM_SAMPLE = 11, 12, 13


def make_faces(
    restorer, files: list[Path], count: int, seed: int, crop_box: tuple[int, int, int, int] | None, batch: int = 16
) -> dict[str, np.ndarray]:
    """``count`` (input, restored, HQ) triples at the model's resolution R, ``uint8 [N, R, R, 3]`` each,
    plus each face's ``level`` index into :data:`LEVELS`."""
    import cv2
    from tqdm import tqdm

    from flipnet_rt.imaging.geometry import prepare_square
    from flipnet_rt.imaging.io import ImageError, load_image

    r = restorer.config.resolution
    options = restorer.options(seed=seed)
    inputs: list[np.ndarray] = []
    hqs: list[np.ndarray] = []
    levels: list[int] = []
    seeds: list[int] = []
    picks = np.random.default_rng(seed).permutation(len(files))
    for i in picks:
        if len(inputs) == count:
            break
        try:
            image = load_image(files[i])
        except ImageError as exc:
            log.warning("%s; skipped", exc)
            continue
        rng = np.random.default_rng(image_seed(seed, int(i), STREAM_LEVEL))
        level = int(rng.integers(len(LEVELS)))
        side = max(r, int(round(r * SIZES[int(rng.integers(len(SIZES)))])))
        hq = prepare_square(image, side, crop_box)
        lq, _ = LevelDegradation(LEVELS[level])(hq, image_seed(seed, int(i), STREAM_DEGRADE))
        if side != r:
            hq = cv2.resize(hq, (r, r), interpolation=cv2.INTER_AREA)
            lq = cv2.resize(lq, (r, r), interpolation=cv2.INTER_AREA)
        inputs.append(lq)
        hqs.append(hq)
        levels.append(level)
        seeds.append(image_seed(seed, int(i), STREAM_SAMPLE))
    restored = []
    for k in tqdm(range(0, len(inputs), batch), desc="restore", unit="batch", disable=None):
        restored.extend(restorer.restore(inputs[k : k + batch], options, seeds[k : k + batch]))
    return {
        "input": np.stack(inputs),
        "restored": np.stack(restored),
        "hq": np.stack(hqs),
        "level": np.array(levels, np.int64),
    }


def _float(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def blend_mse(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, hq: torch.Tensor) -> torch.Tensor:
    """Per-face MSE of ``w x + (1 - w) y`` to ``hq`` (``[B]``; images ``[B, 3, R, R]`` in [-1, 1])."""
    w = w.view(-1, 1, 1, 1)
    return ((w * x + (1 - w) * y - hq) ** 2).mean(dim=(1, 2, 3))


def oracle_weight(x: torch.Tensor, y: torch.Tensor, hq: torch.Tensor) -> torch.Tensor:
    """The W in [0, 1] of least blend error, per face (needs the HQ: the target the estimator approaches)."""
    d = (x - y).flatten(1)
    return ((hq - y).flatten(1) * d).sum(1).div(d.pow(2).sum(1).clamp_min(1e-12)).clamp(0, 1)


def psnr_of(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of an MSE on the [-1, 1] scale (range 2), capped at 60 dB (an undegraded input's
    is infinite: the cap keeps the means finite)."""
    return (10 * torch.log10(4.0 / mse.clamp_min(1e-10))).clamp(max=60.0)


def train(
    data: dict[str, np.ndarray],
    *,
    steps: int = 1500,
    batch: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    holdout: float = 0.1,
) -> tuple[torch.nn.Module, dict]:
    """Train :class:`FidelityNet` on ``data`` (from :func:`make_faces`); returns it and the held-out scores."""
    from flipnet_rt.models.fidelity import FidelityNet

    torch.manual_seed(seed)
    x, y, hq = _float(data["input"]), _float(data["restored"]), _float(data["hq"])
    n = len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(n * holdout))
    val, fit = order[:n_val], order[n_val:]
    target = oracle_weight(x, y, hq)
    net = FidelityNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed + 1)
    for step in range(steps):
        idx = fit[torch.randint(len(fit), (batch,), generator=g)]
        bx, by = x[idx], y[idx]
        if step % 2:  # mirrored faces are faces too (W* is the same)
            bx, by = bx.flip(3), by.flip(3)
        loss = (net(bx, by) - target[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            log.info("fidelity step %d: loss %.4f", step, float(loss.detach()))
    net.eval()
    with torch.no_grad():
        vx, vy, vh = x[val], y[val], hq[val]
        w = torch.cat([net(vx[k : k + 256], vy[k : k + 256]) for k in range(0, len(vx), 256)])
        scores = {
            "input": psnr_of(blend_mse(torch.ones(len(vx)), vx, vy, vh)),
            "restored": psnr_of(blend_mse(torch.zeros(len(vx)), vx, vy, vh)),
            "estimator": psnr_of(blend_mse(w, vx, vy, vh)),
            "oracle": psnr_of(blend_mse(oracle_weight(vx, vy, vh), vx, vy, vh)),
        }
    levels = data["level"][val.numpy()]
    report: dict[str, Any] = {"faces": n, "held_out": n_val, "steps": steps, "levels": {}}  # JSON
    for i, level in enumerate(LEVELS):
        mask = torch.from_numpy(levels == i)
        if mask.any():
            report["levels"][level.value] = {
                "count": int(mask.sum()),
                **{k: round(float(v[mask].mean()), 3) for k, v in scores.items()},
                "weight": round(float(w[mask].mean()), 3),
            }
    report["all"] = {k: round(float(v.mean()), 3) for k, v in scores.items()}
    return net, report


def _round_cache(cache: Path, k: int) -> Path:
    """Round k's cache: ``--cache`` itself for round 0, ``NAME.round<k>.npz`` beside it after."""
    return cache if k == 0 else cache.with_name(f"{cache.stem}.round{k}{cache.suffix}")


def main(args: argparse.Namespace) -> int:
    from flipnet_rt.models.io import save_fidelity
    from flipnet_rt.runtime.restorer import Restorer
    from flipnet_rt.train.data import LFW_CROP_BOX, list_images

    model_dir = Path(args.model)
    if not (model_dir / "flipnet.json").is_file():
        raise FileNotFoundError(f"--model {model_dir}: not a model directory (no flipnet.json)")
    if args.rounds < 1:
        raise ValueError(f"--rounds: {args.rounds}; use 1 or more")
    start = time.perf_counter()
    rounds: list[dict[str, np.ndarray]] = []
    restorer = None
    try:
        for k in range(args.rounds):  # round k: --faces more faces drawn with seed + k
            cache = _round_cache(Path(args.cache), k) if args.cache else None
            if cache is not None and cache.is_file():
                with np.load(cache) as f:
                    rounds.append({key: f[key] for key in f.files})
                log.info("faces from %s (%d)", cache, len(rounds[-1]["input"]))
                continue
            if restorer is None:
                files = list_images(Path(args.hq_dir))
                if not files:
                    raise FileNotFoundError(f"--hq-dir {args.hq_dir}: no images")
                source = args.engine or model_dir
                restorer = Restorer.load(source, backend="onnxruntime" if args.engine else "torch", device="cpu")
            crop = LFW_CROP_BOX if args.lfw_crop else None
            rounds.append(make_faces(restorer, files, args.faces, args.seed + k, crop))
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, **rounds[-1])  # type: ignore[arg-type]  # numpy's stub matches **kwds to allow_pickle
    finally:
        if restorer is not None:
            restorer.close()
    data = {key: np.concatenate([r[key] for r in rounds]) for key in rounds[0]}
    made = time.perf_counter() - start
    net, report = train(data, steps=args.steps, seed=args.seed)
    report.update(
        model=str(model_dir),
        engine=str(args.engine or ""),
        seconds_faces=round(made, 1),
        seconds_train=round(time.perf_counter() - start - made, 1),
    )
    path = save_fidelity(net, model_dir)
    print(f"wrote {path}; held-out PSNR (dB) per level, {report['held_out']} faces:")
    print(f"{'level':<10}{'count':>6}{'input':>8}{'restored':>10}{'estimator':>11}{'oracle':>8}{'mean W':>8}")
    for name, row in {
        **report["levels"],
        "all": {**report["all"], "count": report["held_out"], "weight": math.nan},
    }.items():
        print(
            f"{name:<10}{row['count']:>6}{row['input']:>8.2f}{row['restored']:>10.2f}{row['estimator']:>11.2f}"
            f"{row['oracle']:>8.2f}{row['weight']:>8.2f}"
        )
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fidelity", help="train the fidelity estimator of a model directory (--fidelity auto)")
    p.add_argument(
        "--model", required=True, metavar="MODEL_DIR", help="the model directory to add fidelity.safetensors to"
    )
    p.add_argument("--engine", metavar="ENGINE_DIR", help="restore the training faces with this engine (ONNX Runtime)")
    p.add_argument("--hq-dir", required=True, metavar="DIR", help="HQ face folder (e.g. ../shared/data/lfw/train)")
    p.add_argument(
        "--no-lfw-crop",
        dest="lfw_crop",
        action="store_false",
        help="use the whole images (default: LFW's face box 50,45,200,195)",
    )
    p.add_argument("--faces", type=int, default=3000, help="training faces per round (10%% held out)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of --faces faces, round k drawn with seed + k (each its own cache); trained on together",
    )
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps (batch 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", metavar="F.npz", help="keep the generated faces here and reuse them")
    p.add_argument("--report", metavar="F.json", help="write the held-out scores")
