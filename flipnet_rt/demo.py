"""``make demo``: restore a generated example face with ``random:tiny``.

No trained weights ship with flipnet-rt yet, so the demo runs the whole pipeline (image loading,
VAE, face embedder, dual-stream UNet with BoostHub, guidance, sampler, writing) on seeded RANDOM
weights: the output shows that everything runs end to end, not what a trained model restores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .cli.main import main as cli_main
from .images import save_image


def example_face(size: int = 256, seed: int = 0) -> np.ndarray:
    """A synthetic face-like RGB image: skin ellipse, eyes, mouth, on a gradient. ``[size, size, 3]`` uint8."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.stack([0.25 + 0.3 * yy, 0.35 + 0.2 * xx, 0.55 - 0.2 * yy], axis=-1)
    head = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.52) / 0.4) ** 2 < 1
    img[head] = (0.87, 0.68, 0.57)
    for cx in (0.39, 0.61):
        eye = ((xx - cx) / 0.06) ** 2 + ((yy - 0.45) / 0.03) ** 2 < 1
        img[eye] = (0.15, 0.1, 0.08)
    mouth = ((xx - 0.5) / 0.11) ** 2 + ((yy - 0.7) / 0.025) ** 2 < 1
    img[mouth] = (0.65, 0.3, 0.3)
    noise = np.random.default_rng(seed).normal(0, 0.02, img.shape)
    return (np.clip(img + noise, 0, 1) * 255).round().astype(np.uint8)


def degrade_example(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """Blur, downsample x4, noise, JPEG q=30, upsample: a fixed classical degradation (Eq. 9 style)."""
    h, w = image.shape[:2]
    small = Image.fromarray(image).filter(ImageFilter.GaussianBlur(2.0)).resize((w // 4, h // 4), Image.BICUBIC)
    arr = np.asarray(small).astype(np.float64) + np.random.default_rng(seed).normal(0, 6, (h // 4, w // 4, 3))
    noisy = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))
    import io

    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=30)
    return np.asarray(Image.open(buffer).convert("RGB").resize((w, h), Image.BICUBIC))


def main(out: str = "outputs/demo") -> int:
    root = Path(out)
    hq = example_face()
    lq = degrade_example(hq)
    save_image(hq, root / "example_hq.png")
    save_image(lq, root / "input" / "example_lq.png")
    print("flipnet-rt demo: restoring a generated, degraded example face with random:tiny")
    print("NOTE: the weights are RANDOM (no trained model ships yet): the output proves the pipeline")
    print("      runs end to end; it is not a restoration.")
    start = time.perf_counter()
    code = cli_main(["restore", str(root / "input"), "-o", str(root / "restored"),
                     "--model", "random:tiny", "--steps", "20"])
    elapsed = time.perf_counter() - start
    if code == 0:
        restored = np.asarray(Image.open(root / "restored" / "example_lq.png"))
        save_image(np.concatenate([lq, restored, hq], axis=1), root / "side_by_side.png")
        print(f"wrote {root / 'restored' / 'example_lq.png'} and {root / 'side_by_side.png'} "
              f"(LQ | output | HQ) in {elapsed:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
