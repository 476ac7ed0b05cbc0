"""Issue 25's checks on real and demo photos, fidelity auto against the model's output (fidelity 0).

    python benchmarks/fidelity_real.py [--model models/demo-onnx] [--data ../shared/data]

* ``real_lq`` (15 real low-quality aligned 512-px crops, no ground truth), restored as ``flipnet-rt
  restore --aligned`` does (keep-detail: the faces are 8x the demo model): per face the dlib identity
  distance input -> output and the detail kept (Laplacian variance of the output over the input's);
* the demo's group picture (``make demo``: three faces at ~the model's size, training degradation):
  PSNR inside the face boxes against the HQ, and the detail kept there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from flipnet_rt.demo import group_picture
    from flipnet_rt.evaluation.degradations import DegradationConfig, RandomDegradation
    from flipnet_rt.evaluation.scoring import IdentityModel, detail, psnr
    from flipnet_rt.faces.fidelity import blend
    from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer
    from flipnet_rt.imaging.io import load_image
    from flipnet_rt.runtime.restorer import Restorer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "demo-onnx"))
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    restorer = Restorer.load(args.model, backend="onnxruntime", device="cpu")
    identity = IdentityModel()
    settings = {"auto": "auto", "fidelity 0": 0.0}

    files = sorted((args.data / "real_lq").glob("*.png"))
    crops = [load_image(f) for f in files]
    print(f"real_lq: {len(crops)} faces, --aligned (keep-detail at 512 px)")
    print(f"{'face':<28}" + "".join(f"{k + ' id':>14}{k + ' detail':>16}" for k in settings) + f"{'W':>7}")
    rows = {k: [] for k in settings}
    for f, crop in zip(files, crops):
        line, weight = f"{f.name:<28}", 0.0
        for name, value in settings.items():
            faces = FaceRestorer(restorer, options=FaceOptions(fidelity=value))
            outs, weights = faces.restore_crops_weighted([crop], [0])
            out = blend(crop, outs[0], weights.values[0])
            dist, kept = identity.distance(out, crop), detail(out) / detail(crop)
            rows[name].append((dist, kept))
            weight = weights.values[0] if name == "auto" else weight
            line += f"{dist:>14.3f}{kept:>16.2f}"
        print(line + f"{weight:>7.2f}")
    for name, values in rows.items():
        d, k = np.array(values).T
        print(
            f"{name}: identity distance max {d.max():.3f} (mean {d.mean():.3f}), detail kept min {k.min():.2f} "
            f"(median {np.median(k):.2f}); faces with distance <= 0.35: {int((d <= 0.35).sum())}/{len(d)}, "
            f"detail >= 0.8: {int((k >= 0.8).sum())}/{len(k)}"
        )

    hq, _ = group_picture(0)
    lq, _ = RandomDegradation(DegradationConfig().scaled_to(restorer.config.resolution))(hq, 0)
    print("demo group picture (make demo, seed 0):")
    for name, value in settings.items():
        faces = FaceRestorer(restorer, options=FaceOptions(fidelity=value), sampling=restorer.options(seed=0))
        restored, results = faces.restore_image(lq, 0)
        boxes = [r.face.box.astype(int) for r in results if r.restored]
        p_in = np.mean([psnr(lq[y0:y1, x0:x1], hq[y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes])
        p_out = np.mean([psnr(restored[y0:y1, x0:x1], hq[y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes])
        kept = [detail(restored[y0:y1, x0:x1]) / detail(lq[y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes]
        print(
            f"  {name}: {len(boxes)} faces, PSNR in the boxes input {p_in:.2f} -> {p_out:.2f} dB; detail kept "
            + ", ".join(f"{k:.2f}" for k in kept)
            + "; W "
            + ", ".join(f"{r.fidelity:.2f}" for r in results)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
