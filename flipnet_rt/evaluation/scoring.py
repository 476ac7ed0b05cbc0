"""Restoration quality on HQ faces (``flipnet-rt eval``): synthesise LQ, restore, measure.

Each HQ face is cropped (optional box), squared and resized to the model's resolution; its LQ is
the training degradation (Eq. 9, :mod:`flipnet_rt.evaluation.degradations`, ranges scaled to the resolution)
drawn from a fixed per-image seed, so every run and every model sees the same LQ. The LQ input and
the restored face are both scored against the HQ:

* PSNR and SSIM: scikit-image, RGB, data range 255, at the model's resolution (``flipnet-rt eval
  --size``: at the faces' own size, restored through keep-detail);
* identity distance: the Euclidean distance between dlib's 128-d ResNet face descriptors of the
  face and of the HQ (``dlib-bin`` + ``face-recognition-models`` from PyPI; no download at run
  time). dlib's own same-person threshold is 0.6. The descriptor is computed on the whole
  square face resized to dlib's 150x150 chip: LFW-style crops are already aligned, and a face
  detector is unreliable on 64-pixel faces. The analogue of the paper's "Deg." (identity
  degree), not the same network.

LPIPS and FID need weights that are downloaded from the network by their packages; they are not
computed here (see the README).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..config.options import image_seed
from .degradations import DegradationConfig, RandomDegradation

#: The stream of :func:`image_seed` that draws an image's degradation (0 draws its sampling noise).
DEGRADATION_STREAM = 1
#: dlib's same-person threshold on descriptor distance.
DLIB_SAME_PERSON = 0.6


def synthesise_lq(hq: np.ndarray, seed: int, index: int) -> np.ndarray:
    """The LQ of ``hq`` (``uint8 [R, R, 3]``) for image ``index`` of a run seeded ``seed``."""
    degradation = RandomDegradation(DegradationConfig().scaled_to(hq.shape[0]))
    lq, _ = degradation(hq, image_seed(seed, index, DEGRADATION_STREAM))
    return lq


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    with np.errstate(divide="ignore"):  # identical images: infinity, not a warning
        return float(peak_signal_noise_ratio(reference, image, data_range=255))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(reference, image, channel_axis=2, data_range=255))


def _dlib_model_path() -> Path:
    # face_recognition_models' __init__ needs pkg_resources (gone from recent setuptools): locate
    # its data file without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face_recognition_models", name="face_recognition_models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "dlib_face_recognition_resnet_model_v1.dat"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from face-recognition-models; reinstall it")
    return path


class IdentityModel:
    """dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``), CPU only."""

    CHIP = 150

    def __init__(self, weights: Path | None = None) -> None:
        import dlib

        self.weights = Path(weights) if weights else _dlib_model_path()
        self.net = dlib.face_recognition_model_v1(str(self.weights))

    @staticmethod
    def available() -> bool:
        return (
            importlib.util.find_spec("dlib") is not None
            and importlib.util.find_spec("face_recognition_models") is not None
        )

    def descriptor(self, face: np.ndarray) -> np.ndarray:
        chip = np.asarray(Image.fromarray(face).resize((self.CHIP, self.CHIP), Image.Resampling.BICUBIC))
        return np.asarray(self.net.compute_face_descriptor(np.ascontiguousarray(chip)), dtype=np.float64)

    def distance(self, face: np.ndarray, reference: np.ndarray) -> float:
        return float(np.linalg.norm(self.descriptor(face) - self.descriptor(reference)))


@dataclass
class ImageScores:
    name: str
    psnr_lq: float
    psnr: float
    ssim_lq: float
    ssim: float
    identity_lq: float | None = None
    identity: float | None = None


@dataclass
class EvalReport:
    """Per-image scores and their means; ``errors`` are the inputs that could not be scored."""

    images: list[ImageScores] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    METRICS = (("psnr", "PSNR (dB)", True), ("ssim", "SSIM", True), ("identity", "identity distance", False))

    def mean(self, key: str) -> float | None:
        values = [getattr(s, key) for s in self.images if getattr(s, key) is not None]
        return float(np.mean(values)) if values else None

    def summary(self) -> dict[str, dict[str, float | None]]:
        """``{metric: {"input": mean on LQ, "restored": mean on restored}}``."""
        return {key: {"input": self.mean(f"{key}_lq"), "restored": self.mean(key)} for key, _, _ in self.METRICS}

    def improved(self) -> dict[str, bool | None]:
        """Whether the restored mean beats the input's (higher PSNR/SSIM, lower identity distance)."""
        out: dict[str, bool | None] = {}
        for key, _, higher in self.METRICS:
            pair = self.summary()[key]
            before, after = pair["input"], pair["restored"]
            if before is None or after is None:
                out[key] = None
            else:
                out[key] = after > before if higher else after < before
        return out

    def to_dict(self) -> dict:
        return {
            "meta": self.meta,
            "count": len(self.images),
            "summary": self.summary(),
            "improved": self.improved(),
            "errors": self.errors,
            "images": [asdict(s) for s in self.images],
        }


def score(
    name: str, hq: np.ndarray, lq: np.ndarray, restored: np.ndarray, identity: IdentityModel | None = None
) -> ImageScores:
    scores = ImageScores(name, psnr(lq, hq), psnr(restored, hq), ssim(lq, hq), ssim(restored, hq))
    if identity is not None:
        reference = identity.descriptor(hq)
        scores.identity_lq = float(np.linalg.norm(identity.descriptor(lq) - reference))
        scores.identity = float(np.linalg.norm(identity.descriptor(restored) - reference))
    return scores


def evaluate(
    restorer,
    faces: Sequence[tuple[str, np.ndarray]],
    *,
    options=None,
    seed: int = 0,
    batch_size: int = 8,
    identity: IdentityModel | None = None,
    out_dir: Path | None = None,
    progress: bool = False,
) -> EvalReport:
    """Score ``restorer`` on HQ ``faces`` (``(name, uint8 [R, R, 3])`` at the model's resolution).

    ``out_dir``: also write ``lq/NAME.png``, ``restored/NAME.png`` and ``side_by_side/NAME.png``
    (LQ | restored | HQ).
    """
    from ..imaging.io import save_image

    options = options or restorer.options(seed=seed)
    report = EvalReport(
        meta={
            "seed": seed,
            "resolution": restorer.config.resolution,
            "options": {k: getattr(v, "value", v) for k, v in asdict(options).items()},
        }
    )
    indices = range(0, len(faces), batch_size)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="eval", unit="batch")
    for start in indices:
        chunk = faces[start : start + batch_size]
        lqs = [synthesise_lq(hq, seed, start + i) for i, (_, hq) in enumerate(chunk)]
        seeds = [image_seed(options.seed, start + i) for i in range(len(chunk))]
        restored = restorer.restore(lqs, options, seeds=seeds)
        for (name, hq), lq, out in zip(chunk, lqs, restored):
            report.images.append(score(name, hq, lq, out, identity))
            if out_dir is not None:
                stem = Path(name).with_suffix(".png")
                save_image(lq, out_dir / "lq" / stem)
                save_image(out, out_dir / "restored" / stem)
                save_image(np.concatenate([lq, out, hq], axis=1), out_dir / "side_by_side" / stem)
    return report


def format_value(value: float | None, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.2f}" if key == "psnr" else f"{value:.4f}"


# --------------------------------------------------------------------------- per level (issue 25)

#: What ``eval --levels`` scores for each face: the LQ input, the model's output (fidelity 0), and the
#: output as delivered (``--fidelity``: auto by default).
VARIANTS = ("input", "restored", "fidelity")


def detail(image: np.ndarray) -> float:
    """High-frequency energy: the variance of the Laplacian of the grey image (OpenCV, float32)."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


@dataclass
class LevelScores:
    """One face at one level: per variant its PSNR, SSIM, identity distance, detail ratio (to the
    input's), and the fidelity weight used."""

    name: str
    level: str
    weight: float
    psnr: dict[str, float] = field(default_factory=dict)
    ssim: dict[str, float] = field(default_factory=dict)
    identity: dict[str, float | None] = field(default_factory=dict)
    detail: dict[str, float] = field(default_factory=dict)


@dataclass
class LevelsReport:
    """``eval --levels``: every face at every level, and the means per level and variant."""

    faces: list[LevelScores] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    METRICS = ("psnr", "ssim", "identity", "detail")

    def levels(self) -> list[str]:
        return list(dict.fromkeys(s.level for s in self.faces))

    def summary(self) -> dict[str, dict]:
        """``{level: {metric: {variant: mean}, "weight": mean W, "count": n}}``; PSNR means are taken
        over faces whose PSNR is finite (an undegraded input scores infinity) and report how many were."""
        out: dict[str, dict] = {}
        for level in self.levels():
            rows = [s for s in self.faces if s.level == level]
            entry: dict = {"count": len(rows), "weight": float(np.mean([s.weight for s in rows]))}
            for metric in self.METRICS:
                entry[metric] = {}
                for variant in VARIANTS:
                    values = [getattr(s, metric).get(variant) for s in rows]
                    values = [v for v in values if v is not None and math.isfinite(v)]
                    entry[metric][variant] = float(np.mean(values)) if values else None
            entry["psnr_infinite"] = {v: sum(1 for s in rows if not math.isfinite(s.psnr[v])) for v in VARIANTS}
            out[level] = entry
        return out

    def to_dict(self) -> dict:
        return {"meta": self.meta, "summary": self.summary(), "faces": [asdict(s) for s in self.faces]}


def evaluate_levels(
    faces_restorer,
    faces: Sequence[tuple[str, np.ndarray]],
    levels: Sequence,
    *,
    options=None,
    seed: int = 0,
    batch_size: int = 8,
    identity: IdentityModel | None = None,
    progress: bool = False,
) -> LevelsReport:
    """Score a :class:`~flipnet_rt.faces.pipeline.FaceRestorer` (aligned crops, its fidelity setting) at
    each of ``levels`` (:class:`~flipnet_rt.evaluation.levels.Level`) on HQ ``faces`` (``(name, uint8 [S, S, 3])``).

    Face ``i``'s LQ at every level is drawn from the same seed (``image_seed(seed, i, 1)``) and its
    sampling noise from ``image_seed(options.seed, i)``; one restoration per face and level gives
    both the model's output (fidelity 0) and the blend by the restorer's weights.
    """
    from ..faces.fidelity import blend
    from .levels import LevelDegradation

    options = options or faces_restorer.restorer.options(seed=seed)
    report = LevelsReport(
        meta={
            "seed": seed,
            "levels": [getattr(lv, "value", lv) for lv in levels],
            "fidelity": faces_restorer.options.fidelity,
            "options": {k: getattr(v, "value", v) for k, v in asdict(options).items()},
        }
    )
    work = [(lv, start) for lv in levels for start in range(0, len(faces), batch_size)]
    if progress:
        from tqdm import tqdm

        work = tqdm(work, desc="eval", unit="batch")
    references = {}
    for level, start in work:
        chunk = faces[start : start + batch_size]
        degrade = LevelDegradation(level)
        lqs = [degrade(hq, image_seed(seed, start + i, DEGRADATION_STREAM))[0] for i, (_, hq) in enumerate(chunk)]
        seeds = [image_seed(options.seed, start + i) for i in range(len(chunk))]
        outs, weights = faces_restorer.restore_crops_weighted(lqs, seeds, options)
        for k, ((name, hq), lq, out, w) in enumerate(zip(chunk, lqs, outs, weights.values)):
            images = {"input": lq, "restored": out, "fidelity": blend(lq, out, w)}
            scores = LevelScores(name, degrade.level.value, float(w))
            base = detail(lq)
            for variant, image in images.items():
                scores.psnr[variant] = psnr(image, hq)
                scores.ssim[variant] = ssim(image, hq)
                scores.detail[variant] = detail(image) / base if base > 0 else float("nan")
                if identity is not None:
                    if start + k not in references:
                        references[start + k] = identity.descriptor(hq)
                    scores.identity[variant] = float(np.linalg.norm(identity.descriptor(image) - references[start + k]))
                else:
                    scores.identity[variant] = None
            report.faces.append(scores)
    return report
