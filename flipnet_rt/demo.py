"""``make demo``: restore a degraded face and print PSNR and SSIM against the original.

The face is Eileen Collins' from ``skimage.data.astronaut()`` (NASA, public domain), cropped like
the LFW training faces, degraded with the training degradation (Eq. 9) from a fixed seed, then
restored. Writes ``outputs/demo/{hq,lq,restored,side_by_side}.png``. Needs the ``demo`` extra
(scikit-image, OpenCV).

The model is ``models/demo-onnx``: the ONNX engine of the demo model that ``make demo-model`` trains
from scratch on LFW (``models/demo/README.md``, its model card), run by ONNX Runtime without torch.
``--model`` takes any engine or model directory, or ``random:CONFIG`` (seeded RANDOM weights, which
show that the pipeline runs, not a restoration).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEMO_ENGINE = ROOT / "models" / "demo-onnx"
#: Eileen Collins' face in ``skimage.data.astronaut()`` (512x512), framed like an LFW crop.
ASTRONAUT_FACE_BOX = (145, 35, 295, 185)
#: Shifted/mirrored crops of the same face: the "handful" of the end-to-end quality test.
ASTRONAUT_VARIANTS = ((0, 0, False), (-8, 6, False), (6, -4, True), (4, 8, False))


def astronaut_faces(resolution: int, variants=ASTRONAUT_VARIANTS) -> list[np.ndarray]:
    """HQ faces ``uint8 [R, R, 3]`` from the astronaut image: one per ``(dx, dy, mirrored)``."""
    from skimage.data import astronaut

    from .imaging.geometry import prepare_square

    image = astronaut()
    l, t, r, b = ASTRONAUT_FACE_BOX
    faces = []
    for dx, dy, mirrored in variants:
        face = prepare_square(image, resolution, (l + dx, t + dy, r + dx, b + dy))
        faces.append(np.ascontiguousarray(face[:, ::-1]) if mirrored else face)
    return faces


def _enlarged(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((w * factor, h * factor), Image.Resampling.NEAREST))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flipnet_rt.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None,
                        help=f"engine or model directory, or random:CONFIG (default: {DEMO_ENGINE.relative_to(ROOT)} "
                             f"when it exists, else random:tiny)")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradation and of the sampler")
    args = parser.parse_args(argv)

    from .evaluation import psnr, ssim, synthesise_lq
    from .imaging.io import save_image
    from .restorer import Restorer

    model = args.model or (str(DEMO_ENGINE) if DEMO_ENGINE.is_dir() else "random:tiny")
    if not model.startswith("random:") and not Path(model).is_dir():
        print(f"error: --model {model}: no such directory; run `make demo-model` or pass --model DIR", file=sys.stderr)
        return 2
    if model.startswith("random:"):
        print(f"NOTE: running {model}, seeded RANDOM weights: the output shows that the pipeline runs end to "
              f"end, it is not a restoration.")
    start = time.perf_counter()
    restorer = Restorer.load(model)
    hq = astronaut_faces(restorer.config.resolution, ((0, 0, False),))[0]
    lq = synthesise_lq(hq, args.seed, 0)
    restored = restorer.restore([lq], restorer.options(seed=args.seed))[0]
    elapsed = time.perf_counter() - start

    out = args.out
    for name, image in (("hq", hq), ("lq", lq), ("restored", restored)):
        save_image(image, out / f"{name}.png")
    save_image(_enlarged(np.concatenate([lq, restored, hq], axis=1), 4), out / "side_by_side.png")
    print(f"flipnet-rt demo: {Path(model).name} on {restorer.backend.name}, "
          f"{restorer.config.resolution}x{restorer.config.resolution}, {elapsed:.1f} s")
    print(f"  input (LQ):  PSNR {psnr(lq, hq):6.2f} dB   SSIM {ssim(lq, hq):.4f}")
    print(f"  restored:    PSNR {psnr(restored, hq):6.2f} dB   SSIM {ssim(restored, hq):.4f}")
    print(f"wrote {out}/restored.png and {out}/side_by_side.png (LQ | restored | HQ, shown 4x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
