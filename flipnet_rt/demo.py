"""``make demo``: restore a degraded face, then a whole group picture, and print PSNR and SSIM.

The face is Eileen Collins' from ``skimage.data.astronaut()`` (NASA, public domain), cropped like
the LFW training faces, degraded with the training degradation (Eq. 9) from a fixed seed, then
restored. Writes ``outputs/demo/{hq,lq,restored,side_by_side}.png``.

The group picture is three copies of that face (shifted, mirrored, rotated, at about the model's
64 px) composited onto a textured background, the whole picture degraded the same way; every face
is detected, aligned, restored in one batch and pasted back (:mod:`flipnet_rt.faces`). Writes
``outputs/demo/group_{hq,lq,restored,side_by_side}.png`` and prints PSNR/SSIM inside the faces'
boxes. Measured with the demo engine (version 2, fidelity auto): seed 0 19.45 -> 20.13 dB, SSIM
0.455 -> 0.513 (a 64-px model trained for a few CPU hours: a demonstration of the pipeline, not of
FLIPNET's quality). Needs the ``demo`` extra (scikit-image, OpenCV).

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
    left, top, right, bottom = ASTRONAUT_FACE_BOX
    faces = []
    for dx, dy, mirrored in variants:
        face = prepare_square(image, resolution, (left + dx, top + dy, right + dx, bottom + dy))
        faces.append(np.ascontiguousarray(face[:, ::-1]) if mirrored else face)
    return faces


#: (mirrored, eye distance px, angle degrees, centre x, centre y) of each face in the group picture.
GROUP_FACES = ((False, 26.0, -8.0, 110, 140), (True, 30.0, 4.0, 320, 125), (False, 28.0, 10.0, 530, 145))
GROUP_SIZE = (270, 640)  # height, width


def group_picture(seed: int) -> tuple[np.ndarray, list]:
    """The HQ group picture ``uint8 [270, 640, 3]`` (the astronaut's face three times at about the
    demo model's 64 px) and each face's placement (ground truth)."""
    from skimage.data import astronaut

    from .imaging.scene import ASTRONAUT_LANDMARKS, background, place_face

    photo = astronaut()
    mirrored_photo = np.ascontiguousarray(photo[:, ::-1])
    mirrored_points = ASTRONAUT_LANDMARKS.copy()
    mirrored_points[:, 0] = photo.shape[1] - 1 - mirrored_points[:, 0]
    mirrored_points = mirrored_points[[1, 0, 2, 4, 3]]  # left and right swap in a mirror
    canvas = background(*GROUP_SIZE, np.random.default_rng(seed))
    return canvas, [
        place_face(
            canvas,
            mirrored_photo if mirrored else photo,
            mirrored_points if mirrored else ASTRONAUT_LANDMARKS,
            (cx, cy),
            eyes,
            angle,
        )
        for mirrored, eyes, angle, cx, cy in GROUP_FACES
    ]


def group_demo(restorer, out: Path, seed: int) -> list[str]:
    """Degrade the group picture, restore every face in it, write the PNGs; the summary lines."""
    from .evaluation.degradations import DegradationConfig, RandomDegradation
    from .evaluation.scoring import detail, psnr, ssim
    from .faces.pipeline import FaceRestorer
    from .imaging.io import save_image

    hq, placed = group_picture(seed)
    degradation = RandomDegradation(DegradationConfig().scaled_to(restorer.config.resolution))
    lq, _ = degradation(hq, seed)
    faces = FaceRestorer(restorer, sampling=restorer.options(seed=seed))
    restored, results = faces.restore_image(lq, seed)
    for name, image in (("group_hq", hq), ("group_lq", lq), ("group_restored", restored)):
        save_image(image, out / f"{name}.png")
    save_image(np.concatenate([lq, restored, hq], axis=0), out / "group_side_by_side.png")
    boxes = [r.face.box.astype(int) for r in results if r.restored]

    def in_boxes(metric, image) -> float:
        return float(np.mean([metric(image[y0:y1, x0:x1], hq[y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes]))

    lines = [f"group picture {hq.shape[1]}x{hq.shape[0]}: {len(boxes)} of {len(placed)} faces found and restored"]
    if boxes:
        kept = [detail(restored[y0:y1, x0:x1]) / detail(lq[y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes]
        lines += [
            f"  faces, input:     PSNR {in_boxes(psnr, lq):6.2f} dB   SSIM {in_boxes(ssim, lq):.4f}",
            f"  faces, restored:  PSNR {in_boxes(psnr, restored):6.2f} dB   SSIM {in_boxes(ssim, restored):.4f}",
            "  fidelity (weight of the input, --fidelity auto): "
            + ", ".join(f"{r.fidelity:.2f}" for r in results if r.restored),
            "  detail kept (Laplacian variance, restored / input): " + ", ".join(f"{k:.2f}" for k in kept),
        ]
    unchanged = np.ones(hq.shape[:2], bool)
    for r in results:
        if r.restored:
            x0, y0, x1, y1 = r.face.box.astype(int)
            unchanged[max(y0 - 64, 0) : y1 + 64, max(x0 - 64, 0) : x1 + 64] = False
    same = bool(np.array_equal(restored[unchanged], lq[unchanged]))
    lines.append(f"  pixels away from the faces unchanged: {same}")
    lines.append(f"wrote {out}/group_restored.png and {out}/group_side_by_side.png (LQ / restored / HQ)")
    return lines


def _enlarged(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((w * factor, h * factor), Image.Resampling.NEAREST))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flipnet_rt.demo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        default=None,
        help=f"engine or model directory, or random:CONFIG (default: {DEMO_ENGINE.relative_to(ROOT)} "
        f"when it exists, else random:tiny)",
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradation and of the sampler")
    args = parser.parse_args(argv)

    from .evaluation.scoring import psnr, ssim, synthesise_lq
    from .imaging.io import save_image
    from .runtime.restorer import Restorer

    model = args.model or (str(DEMO_ENGINE) if DEMO_ENGINE.is_dir() else "random:tiny")
    if not model.startswith("random:") and not Path(model).is_dir():
        print(f"error: --model {model}: no such directory; run `make demo-model` or pass --model DIR", file=sys.stderr)
        return 2
    if model.startswith("random:"):
        print(
            f"NOTE: running {model}, seeded RANDOM weights: the output shows that the pipeline runs end to "
            f"end, it is not a restoration."
        )
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
    print(
        f"flipnet-rt demo: {Path(model).name} on {restorer.backend.name}, "
        f"{restorer.config.resolution}x{restorer.config.resolution}, {elapsed:.1f} s"
    )
    print(f"  input (LQ):  PSNR {psnr(lq, hq):6.2f} dB   SSIM {ssim(lq, hq):.4f}")
    print(f"  restored:    PSNR {psnr(restored, hq):6.2f} dB   SSIM {ssim(restored, hq):.4f}")
    print(f"wrote {out}/restored.png and {out}/side_by_side.png (LQ | restored | HQ, shown 4x)")
    for line in group_demo(restorer, out, args.seed):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
