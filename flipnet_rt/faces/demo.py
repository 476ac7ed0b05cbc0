"""The whole-picture demo (``make demo``): several small real faces in one picture, degraded,
restored face by face with the demo engine, pasted back; a before/after PNG and the numbers.

The demo model restores at 64 px, so by default the faces are composited where their aligned crop
is about 64 px (eye distance ~16 px; ``crop`` changes it). The whole picture is degraded with the
training degradation scaled to ``crop`` (one draw for the picture, ``degrade_seed``); PSNR is
measured inside the faces' paste masks and SSIM over their bounding region, against the clean
composite. Measured (8 lfw/val faces, seeds 0, degrade seeds 0-5): MTCNN finds 0-8 of the 8
degraded ~40-px faces (heavy draws hide them); where found, the demo engine does not raise PSNR
inside the masks (degrade seed 3: 27.14 -> 25.07 dB) — the 64-px demo model helps on lfw/val crops
(``flipnet-rt eval``), not on these whole pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .restorer import FaceRestorer
from .synthetic import LFW_LANDMARKS, group_picture

#: Eye distance (px) of a face whose FFHQ crop is 64 px (template eye distance 125.9 of 512).
EYES_AT_64 = 64 * 125.92 / 512


@dataclass
class DemoResult:
    clean: np.ndarray
    degraded: np.ndarray
    restored: np.ndarray
    faces_found: int
    faces_placed: int
    psnr: dict[str, float] = field(default_factory=dict)  # {"degraded": dB, "restored": dB} inside the masks
    ssim: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def degrade_picture(image: np.ndarray, seed: int, resolution: int = 64) -> np.ndarray:
    """The training degradation, ranges scaled to ``resolution`` (the model's), on the whole picture."""
    from ..degradations import DegradationConfig, RandomDegradation

    lq, _ = RandomDegradation(DegradationConfig().scaled_to(resolution))(image, seed)
    return lq


def run_demo(faces: FaceRestorer, photos: Sequence[np.ndarray], *, seed: int = 0, height: int = 360, width: int = 640,
             out_dir: Path | None = None, degrade_seed: int = 3, landmarks: np.ndarray = LFW_LANDMARKS,
             crop: int = 64) -> DemoResult:
    """Composite ``photos`` (aligned face photos sharing the 5 points ``landmarks``, e.g. LFW
    250x250 and :data:`~.synthetic.LFW_LANDMARKS`) into one picture, degrade, restore; optionally write
    ``out_dir/group_before_after.png`` (degraded above restored) and ``group_clean.png``."""
    from ..evaluation import psnr, ssim
    from .paste import paste_box, soft_mask

    rng = np.random.default_rng(seed)
    eyes = (0.85 * EYES_AT_64 * crop / 64, 1.2 * EYES_AT_64 * crop / 64)
    clean, placed = group_picture(photos, rng, height=height, width=width, eye_distance=eyes, max_angle=15.0,
                                  landmarks=landmarks)
    degraded = degrade_picture(clean, degrade_seed, crop)
    restored, results = faces.restore_image(degraded, seed=seed)
    inside = np.zeros(clean.shape[:2], bool)
    for r in results:
        if r.restored:
            x0, y0, x1, y1 = box = paste_box(r.affine, r.crop_size, *clean.shape[:2])
            inside[y0:y1, x0:x1] |= soft_mask(r.affine, r.crop_size, box)[2] > 0
    ys, xs = np.nonzero(inside)
    out = DemoResult(clean, degraded, restored, sum(r.restored for r in results), len(placed))
    if len(ys):
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        for name, img in (("degraded", degraded), ("restored", restored)):
            out.psnr[name] = psnr(img[inside], clean[inside])
            out.ssim[name] = ssim(img[y0:y1, x0:x1], clean[y0:y1, x0:x1])
    if out_dir is not None:
        from ..imaging.io import save_image

        out_dir = Path(out_dir)
        for name, img in (("group_before_after.png", np.concatenate([degraded, restored], axis=0)),
                          ("group_clean.png", clean)):
            save_image(img, out_dir / name)
            out.files.append(out_dir / name)
    return out


def summary(result: DemoResult) -> dict[str, Any]:
    return {"faces_placed": result.faces_placed, "faces_restored": result.faces_found,
            "psnr_in_masks": result.psnr, "ssim_face_region": result.ssim, "files": [str(p) for p in result.files]}
