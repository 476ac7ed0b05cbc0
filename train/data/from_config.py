"""The ``[data]`` section of a training config -> one of this package's datasets.

Face stages (ae, vae, restoration): HQ faces with on-the-fly LQ (Eq. 9), mixed with the
off-shelf pool at ``offshelf_probability`` when ``offshelf_dir`` is set (Sec. 5.1).
Degradation mode (Sec. 4.2): the real-world paired folders plus the HQ faces, one mixed set.
"""

from __future__ import annotations

from pathlib import Path

from flipnet_rt.evaluation.degradations import DegradationConfig, MakesLQ, RandomDegradation

from ..config import ConfigError, DataSection
from .captions import load_captions
from .faces import HQFaceFolder
from .mixed import MixedDataset
from .offshelf import OffShelfPool
from .paired import PairedFolder
from .seeding import EpochDataset


def face_dataset(data: DataSection, resolution: int, seed: int) -> EpochDataset:
    """HQ faces with LQ (on the fly, or off-shelf with probability ``offshelf_probability``)."""
    if not data.hq_dir:
        raise ConfigError("data.hq_dir: no HQ face folder given; pass --hq-dir DIR or set data.hq_dir")
    if not Path(data.hq_dir).is_dir():
        raise ConfigError(f"--hq-dir {data.hq_dir}: no such folder; set data.hq_dir to the HQ face images")
    try:
        degradation = DegradationConfig.from_dict(data.degradation)
    except ValueError as exc:
        raise ConfigError(f"data.degradation: {exc}") from None
    if data.scale_degradation:
        degradation = degradation.scaled_to(resolution)
    make_lq: MakesLQ = RandomDegradation(degradation)
    if data.degradation_levels:
        from flipnet_rt.evaluation.levels import LevelMix

        try:
            make_lq = LevelMix(data.degradation_levels, resolution)
        except ValueError as exc:
            raise ConfigError(f"data.{exc}") from None
    captions = None
    if data.captions:
        if not Path(data.captions).is_file():
            raise ConfigError(f"--captions {data.captions}: no such file; set data.captions to a JSON or CSV file")
        captions = load_captions(data.captions)
    faces = HQFaceFolder(
        data.hq_dir,
        resolution,
        make_lq,
        seed=seed,
        crop_box=tuple(data.crop_box) if data.crop_box else None,
        limit=data.limit or None,
        captions=captions,
    )
    if data.offshelf_dir:
        if not Path(data.offshelf_dir).is_dir():
            raise ConfigError(f"data.offshelf_dir {data.offshelf_dir}: no such folder")
        return OffShelfPool(faces, data.offshelf_dir, seed=seed, probability=data.offshelf_probability)
    return faces


def degradation_dataset(data: DataSection, resolution: int, seed: int) -> EpochDataset:
    """Sec. 4.2: every ``[[data.paired]]`` folder (or ``limit`` random pairs of it) + the HQ faces."""
    parts: list[tuple[EpochDataset, int | None]] = []
    for i, source in enumerate(data.paired):
        for key in ("hq_dir", "lq_dir"):
            if not Path(getattr(source, key)).is_dir():
                raise ConfigError(f"data.paired[{i}].{key} {getattr(source, key)}: no such folder")
        captions = load_captions(source.captions) if source.captions else None
        paired = PairedFolder(
            source.hq_dir,
            source.lq_dir,
            resolution,
            limit=source.limit or None,
            seed=seed,
            fit=source.fit,
            key_pattern=source.key_pattern or None,
            captions=captions,
        )
        parts.append((paired, None))
    if data.hq_dir:
        parts.append((face_dataset(data, resolution, seed), None))
    if not parts:
        raise ConfigError("degradation mode needs data: set data.hq_dir (--hq-dir) and/or [[data.paired]] folders")
    return MixedDataset(parts, seed=seed, shuffle=False)  # train/stream.py shuffles
