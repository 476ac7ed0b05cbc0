"""Typed training configurations: TOML files -> frozen dataclasses (never executed).

One top-level dataclass per ``flipnet-train`` command (:class:`AeTrainConfig`,
:class:`VaeTrainConfig`, :class:`RestorationTrainConfig`, :class:`DegradationTrainConfig`), made of
shared sections (``[model]``, ``[run]``, ``[optim]``, ``[data]``, ``[perceptual]``) and one section
of its own (``[ae]``, ``[vae]``, ``[restoration]``, ``[degradation]``). A file names its command
(``command = "ae"``); unknown keys, wrong types and a file for another command are refused with a
message naming the key. Command-line flags override file values through dotted keys
(``run.steps``), see :func:`apply_overrides`.

Relative paths in a file are taken relative to the current working directory, like paths given
on the command line (the shipped configs assume the repository root).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Union

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the `train` extra installs tomli
    import tomli as tomllib


class ConfigError(ValueError):
    """A training configuration that cannot be used; the message names the key and the fix."""


class MixedPrecision(str, Enum):
    """Accelerate's autocast mode. fp16 needs a GPU and uses a loss scaler; bf16 needs Ampere+."""

    NO = "no"
    FP16 = "fp16"
    BF16 = "bf16"


class AeStage(str, Enum):
    """The two stages of the face autoencoder (Sec. 4.1 a, b)."""

    RECONSTRUCTION = "reconstruction"
    ASSOCIATION = "association"


class AdversarialLoss(str, Enum):
    """GAN objective of the PatchGAN discriminator (see train/losses.py)."""

    HINGE = "hinge"
    NON_SATURATING = "non-saturating"


class UnetTraining(str, Enum):
    """What of the UNet is trained: the paper's LoRA (base frozen), or every weight (from scratch)."""

    LORA = "lora"
    FULL = "full"


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ModelSection:
    """Where the model starts. ``sd_dir`` (a local diffusers SD 2.1-base folder) or random init."""

    config: str = "tiny"  # flipnet_rt preset: "tiny" or "sd21-base"
    sd_dir: str = ""  # "" = random initialisation of the preset (from scratch)
    seed: int = 0  # seed of every random initialisation (UNet, LoRA A, face nets, discriminator)


@dataclass(frozen=True)
class RunSection:
    """The loop. ``batch_size`` is the global batch of one optimizer step (all processes, all
    accumulation micro-steps), so a config means the same optimisation on 1 CPU or 8 GPUs."""

    output_dir: str = "runs/train"
    steps: int = 1000
    batch_size: int = 8
    gradient_accumulation: int = 1
    mixed_precision: MixedPrecision = MixedPrecision.NO
    gradient_checkpointing: bool = False  # recompute activations in backward: ~30% slower, far less memory
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 0  # 0 keeps all
    log_every: int = 10
    num_workers: int = 2  # data-loading processes per training process
    cpu: bool = False  # train on the CPU even where a GPU is visible


@dataclass(frozen=True)
class OptimSection:
    """AdamW with a linear warm-up, then a constant learning rate (``decay = "none"``) or a cosine
    decay to zero at the last step (``decay = "cosine"``)."""

    lr: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-8
    warmup_steps: int = 0
    decay: str = "none"  # "none" or "cosine"
    max_grad_norm: float = 1.0  # 0 disables clipping


@dataclass(frozen=True)
class PairedSource:
    """A real-world paired folder (HQ/LQ matched by file name), Sec. 4.2."""

    hq_dir: str
    lq_dir: str
    limit: int = 0  # 0 = every pair; the paper takes 1000 random pairs of SIDD and RealBlur-J
    key_pattern: str = ""  # regex pairing differently named files (flipnet_rt.train.data.PairedFolder)
    fit: str = "crop"  # "crop" (native scale, random R x R) or "resize" (whole scene)
    captions: str = ""


@dataclass(frozen=True)
class DataSection:
    """Training images; the resolution is the model's."""

    hq_dir: str = ""  # HQ faces, degraded on the fly (Eq. 9)
    crop_box: tuple[int, ...] = ()  # (left, top, right, bottom) applied before resizing
    limit: int = 0  # 0 = every image
    captions: str = ""  # JSON or CSV file of captions; a missing caption is the empty prompt
    offshelf_dir: str = ""  # K degraded variants per HQ from `flipnet-rt degrade` (Sec. 5.1)
    offshelf_probability: float = 0.5
    paired: tuple[PairedSource, ...] = ()  # degradation mode's real-world pairs
    degradation: Mapping[str, Any] = field(
        default_factory=dict
    )  # fields of flipnet_rt.evaluation.degradations.DegradationConfig
    scale_degradation: bool = True  # scale the 512-px ranges of Eq. (9) to the resolution
    # {level: weight} of flipnet_rt.evaluation.levels (none, mild, moderate, heavy, train): each LQ draws its level,
    # then that level's degradation scaled to the resolution; replaces `degradation` when set
    degradation_levels: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PerceptualSection:
    """VGG19 for the perceptual losses; weights only from a local safetensors file."""

    vgg19: str = ""
    layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")


@dataclass(frozen=True)
class AeSection:
    """Face autoencoder (Sec. 4.1): L_ae = L1 + 0.5 L_p + 0.8 L_adv; association adds (CE_H + CE_L)/2."""

    stage: AeStage = AeStage.RECONSTRUCTION
    init: str = ""  # checkpoint of the previous stage (required by the association stage)
    l1_weight: float = 1.0
    perceptual_weight: float = 0.5
    adversarial_weight: float = 0.8
    association_weight: float = 1.0  # multiplies (CE_H + CE_L) / 2
    temperature: float = 0.07  # cosine-similarity temperature of Eq. (6)
    adversarial_loss: AdversarialLoss = AdversarialLoss.HINGE
    adversarial_start: int = 0  # step from which the discriminator trains and L_adv counts
    adaptive_weight: bool = True  # VQGAN: adversarial_weight x ||grad L_rec|| / ||grad L_adv|| (last decoder layer)
    disc_channels: int = 64
    disc_layers: int = 3
    disc_lr: float = 0.0  # 0: optim.lr


@dataclass(frozen=True)
class VaeSection:
    """The model's AutoencoderKL, for models without a pretrained SD VAE: L1 + L_p + KL."""

    l1_weight: float = 1.0
    perceptual_weight: float = 0.0
    kl_weight: float = 1e-6  # LDM's weight; the KL is normalised per image value, see train/vae.py


@dataclass(frozen=True)
class DegradationSection:
    """Degradation mode (Sec. 4.2): flipped streams, L_ldm only, text the only condition."""

    unet_training: UnetTraining = UnetTraining.LORA
    lora_rank: int = 64
    lora_alpha: float = 0.0  # 0: equal to the rank
    text_drop: float = 0.5
    # The condition stream's timesteps t_y ~ U[0, t_cond_max); 0 is the schedule's T (the paper: t_y and
    # t_x drawn alike). Inference runs the condition at t_cond = 0, so a small model trained briefly
    # learns to use it sooner when training sees it nearly clean (the demo model: 100).
    t_cond_max: int = 0
    vae_checkpoint: str = ""  # a `flipnet-train vae` checkpoint; required without sd_dir
    init: str = ""  # trainable weights to start from (a restoration/degradation checkpoint)
    text_cache_size: int = 4096  # caption embeddings kept (with a text encoder)


@dataclass(frozen=True)
class RestorationSection(DegradationSection):
    """Restoration mode (Sec. 4.1): L_rm = L_ldm + 1 * L_mse + 0.01 * L_p (Eq. 7, 8)."""

    id_drop: float = 0.3
    mse_weight: float = 1.0
    perceptual_weight: float = 0.01
    ae_checkpoint: str = ""  # a `flipnet-train ae` checkpoint: its LQ encoder, frozen


# --------------------------------------------------------------------------- top level


@dataclass(frozen=True)
class AeTrainConfig:
    command: str = "ae"
    model: ModelSection = field(default_factory=ModelSection)
    run: RunSection = field(default_factory=RunSection)
    optim: OptimSection = field(default_factory=OptimSection)
    data: DataSection = field(default_factory=DataSection)
    perceptual: PerceptualSection = field(default_factory=PerceptualSection)
    ae: AeSection = field(default_factory=AeSection)


@dataclass(frozen=True)
class VaeTrainConfig:
    command: str = "vae"
    model: ModelSection = field(default_factory=ModelSection)
    run: RunSection = field(default_factory=RunSection)
    optim: OptimSection = field(default_factory=OptimSection)
    data: DataSection = field(default_factory=DataSection)
    perceptual: PerceptualSection = field(default_factory=PerceptualSection)
    vae: VaeSection = field(default_factory=VaeSection)


@dataclass(frozen=True)
class RestorationTrainConfig:
    command: str = "restoration"
    model: ModelSection = field(default_factory=ModelSection)
    run: RunSection = field(default_factory=RunSection)
    optim: OptimSection = field(default_factory=lambda: OptimSection(lr=5e-5))
    data: DataSection = field(default_factory=DataSection)
    perceptual: PerceptualSection = field(default_factory=PerceptualSection)
    restoration: RestorationSection = field(default_factory=RestorationSection)

    @property
    def diffusion(self) -> RestorationSection:
        return self.restoration


@dataclass(frozen=True)
class DegradationTrainConfig:
    command: str = "degradation"
    model: ModelSection = field(default_factory=ModelSection)
    run: RunSection = field(default_factory=RunSection)
    optim: OptimSection = field(default_factory=lambda: OptimSection(lr=5e-5))
    data: DataSection = field(default_factory=DataSection)
    degradation: DegradationSection = field(default_factory=DegradationSection)

    @property
    def diffusion(self) -> DegradationSection:
        return self.degradation


TrainConfig = AeTrainConfig | VaeTrainConfig | RestorationTrainConfig | DegradationTrainConfig
COMMANDS: dict[str, type] = {
    "ae": AeTrainConfig,
    "vae": VaeTrainConfig,
    "restoration": RestorationTrainConfig,
    "degradation": DegradationTrainConfig,
}


# --------------------------------------------------------------------------- parsing


def load_config(command: str, path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The configuration of ``command``: defaults, then the TOML file, then ``overrides``."""
    cls = COMMANDS[command]
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: not found; pass an existing file to --train-config") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        if data.get("command", command) != command:
            raise ConfigError(
                f"{path}: command = {data['command']!r}, but this is `flipnet-train {command}`; use a {command} config"
            )
    try:
        config = from_dict(cls, data)
        if overrides:
            config = apply_overrides(config, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from parsed TOML; errors name the dotted key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown key; known keys here: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}{name}: missing required key")
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/TOML-ready dict of a config (enums as their values, tuples as lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def parse_value(text: str) -> Any:
    """A command-line value as TOML (``3``, ``1e-4``, ``true``, ``[1, 2]``), else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """``{"run.steps": 10, "restoration.lora_rank": 4}`` applied with the same type checks as a file."""
    for key, value in overrides.items():
        config = _replace(config, key.split("."), value, key)
    return config


def _replace(obj: Any, parts: list[str], value: Any, key: str) -> Any:
    names = {f.name for f in dataclasses.fields(obj)}
    if parts[0] not in names:
        raise ConfigError(f"{key}: unknown key {parts[0]!r}; known: {', '.join(sorted(names))}")
    hint = typing.get_type_hints(type(obj))[parts[0]]
    if len(parts) == 1:
        return dataclasses.replace(obj, **{parts[0]: _convert(hint, value, key)})
    child = getattr(obj, parts[0])
    if not dataclasses.is_dataclass(child):
        raise ConfigError(f"{key}: {parts[0]} is not a table")
    return dataclasses.replace(obj, **{parts[0]: _replace(child, parts[1:], value, key)})


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):  # X | None
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, f"{where}.")
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            choices = ", ".join(repr(e.value) for e in hint)
            raise ConfigError(f"{where}: {value!r} is not one of {choices}") from None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected an array, got {value!r}")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is collections.abc.Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint}")  # a bug in this module, not in the file


def check(config: TrainConfig) -> TrainConfig:
    """Relations between values that single keys cannot express; raises ConfigError."""
    run, optim = config.run, config.optim
    positive = {
        "run.steps": run.steps,
        "run.batch_size": run.batch_size,
        "run.gradient_accumulation": run.gradient_accumulation,
        "run.checkpoint_every": run.checkpoint_every,
        "run.log_every": run.log_every,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}: {value}; use 1 or more")
    if run.num_workers < 0 or run.keep_checkpoints < 0:
        raise ConfigError("run.num_workers and run.keep_checkpoints must be >= 0")
    if optim.lr <= 0 or len(optim.betas) != 2:
        raise ConfigError("optim.lr must be > 0 and optim.betas two numbers")
    if optim.decay not in ("none", "cosine"):
        raise ConfigError(f'optim.decay: {optim.decay!r}; use "none" or "cosine"')
    if len(config.data.crop_box) not in (0, 4):
        raise ConfigError(f"data.crop_box: {list(config.data.crop_box)}; give [left, top, right, bottom]")
    section = getattr(config, "diffusion", None)
    if section is not None:
        if section.unet_training is UnetTraining.LORA and section.lora_rank < 1:
            raise ConfigError(f"{config.command}.lora_rank: {section.lora_rank}; LoRA training needs rank >= 1")
        if section.t_cond_max < 0:
            raise ConfigError(f"{config.command}.t_cond_max: {section.t_cond_max}; use 0 (the schedule's T) or 1..T")
        probs = {"text_drop": section.text_drop, "id_drop": getattr(section, "id_drop", 0.0)}
        for key, p in probs.items():
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{config.command}.{key}: {p} is not a probability")
    if isinstance(config, AeTrainConfig) and config.ae.temperature <= 0:
        raise ConfigError(f"ae.temperature: {config.ae.temperature}; use > 0")
    return config
