"""The model configuration: the ``flipnet.json`` of a model directory (DESIGN §4).

Pure data, no torch: the light runtime reads it too. JSON is parsed, never executed;
unknown or missing fields are refused with a message that names the field.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..sampling.schedule import SamplerKind, ScheduleConfig, Spacing, as_choice

FORMAT_VERSION = 1
CONFIG_NAME = "flipnet.json"


class ConfigError(ValueError):
    """A model configuration that cannot be used; the message names the field and the fix."""


#: The training noise schedule, ``flipnet.json``'s ``schedule``: defined once, in ``sampling``.
ScheduleSpec = ScheduleConfig


@dataclass(frozen=True)
class FaceSpec:
    """The face autoencoder and the adapter tau (Sec. 4.1, "BFR-oriented face embeddings").

    The LQ encoder maps a ``resolution``-sized face to ``grid x grid`` tokens of width ``dim``
    (N = grid**2, downsampling ``resolution / grid``); tau maps them to the text width.
    """

    grid: int = 16
    dim: int = 256
    channels: tuple[int, ...] = (64, 128, 256, 256, 256, 256)
    blocks_per_level: int = 1
    adapter_hidden: int = 1024

    @property
    def tokens(self) -> int:
        """N, the number of id tokens appended to the 77 text tokens."""
        return self.grid * self.grid


@dataclass(frozen=True)
class BoostHubSpec:
    """Where BoostHub sits (Eq. 4-5): beside every self-attention (``attn1``) layer."""

    enabled: bool = True


@dataclass(frozen=True)
class Defaults:
    """Sampler defaults a command uses when the user gives none (``options.SamplingOptions`` adds
    the per-call seed to these fields; they are defined here once)."""

    steps: int = 20
    sampler: SamplerKind = SamplerKind.DPMPP_2M
    spacing: Spacing = Spacing.LEADING
    guidance: float = 1.5
    phi: float = 1.0
    t_cond: int = 0
    eta: float = 0.0
    strength: float = 1.0  # 1: from pure noise; < 1: from the noised condition latent (SamplingOptions)
    color_fix: int = 0  # wavelet colour fix levels after restoring (0: off)

    def __post_init__(self) -> None:
        # The plain strings of flipnet.json ("ddim") become the enums; an unknown one lists the choices.
        object.__setattr__(self, "sampler", as_choice(SamplerKind, "sampler", self.sampler))
        object.__setattr__(self, "spacing", as_choice(Spacing, "spacing", self.spacing))


@dataclass(frozen=True)
class Prompts:
    """The fixed prompts of each mode; their embeddings are stored with the model (DESIGN §2)."""

    restore: str = "a high quality, detailed, sharp photo of a face"
    negative: str = "low quality, blurry, poorly rendered, noisy, jpeg artifacts, deformed"
    degrade: str = ""


@dataclass(frozen=True)
class FlipnetConfig:
    """Everything needed to rebuild a FLIPNET model and run it; saved as ``flipnet.json``.

    ``unet`` and ``vae`` hold diffusers constructor arguments (``UNet2DConditionModel``,
    ``AutoencoderKL``) so that a Stable Diffusion folder's own configs drop in unchanged.
    """

    name: str
    resolution: int
    unet: Mapping[str, Any]
    vae: Mapping[str, Any]
    face: FaceSpec = field(default_factory=FaceSpec)
    boosthub: BoostHubSpec = field(default_factory=BoostHubSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    defaults: Defaults = field(default_factory=Defaults)
    prompts: Prompts = field(default_factory=Prompts)
    latent_scaling: float = 0.18215
    text_tokens: int = 77
    lora_rank: int = 64
    format_version: int = FORMAT_VERSION

    @property
    def text_width(self) -> int:
        """Width of the cross-attention context tokens (1024 for SD 2.1's OpenCLIP)."""
        return int(self.unet["cross_attention_dim"])

    @property
    def context_tokens(self) -> int:
        """Length of the cross-attention context ``[text (77) || id (N)]``."""
        return self.text_tokens + self.face.tokens

    @property
    def vae_factor(self) -> int:
        """Image pixels per latent pixel (8 for Stable Diffusion's VAE)."""
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    @property
    def latent_size(self) -> int:
        return self.resolution // self.vae_factor

    @property
    def latent_channels(self) -> int:
        return int(self.vae.get("latent_channels", 4))

    def validate(self) -> FlipnetConfig:
        """Check the relations between fields; raises ConfigError naming the field."""
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(
                f"format_version: {self.format_version} is not supported by this flipnet-rt "
                f"(expects {FORMAT_VERSION}); upgrade flipnet-rt or re-export the model"
            )
        for key in ("cross_attention_dim", "block_out_channels", "in_channels", "out_channels"):
            if key not in self.unet:
                raise ConfigError(f"unet.{key}: missing; copy it from the diffusers unet/config.json")
        if "block_out_channels" not in self.vae:
            raise ConfigError("vae.block_out_channels: missing; copy it from the diffusers vae/config.json")
        if self.resolution <= 0 or self.resolution % self.vae_factor:
            raise ConfigError(
                f"resolution: {self.resolution} must be a positive multiple of the VAE factor {self.vae_factor}"
            )
        if self.resolution % self.face.grid:
            raise ConfigError(f"face.grid: {self.face.grid} must divide resolution {self.resolution}")
        down = self.resolution // self.face.grid
        if down & (down - 1) or 2 ** (len(self.face.channels) - 1) != down:
            raise ConfigError(
                f"face.channels: {len(self.face.channels)} levels give a downsampling of "
                f"{2 ** (len(self.face.channels) - 1)}, but resolution/grid = {down}; "
                f"use log2({down}) + 1 levels"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: enums as their values ("ddim"), as flipnet.json stores them."""
        out = dataclasses.asdict(self, dict_factory=_plain)
        out["unet"] = dict(self.unet)
        out["vae"] = dict(self.vae)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> FlipnetConfig:
        """Build from parsed JSON; unknown and missing fields are errors naming the field."""
        try:
            return _build(cls, data, prefix="").validate()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def save(self, directory: Path) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> FlipnetConfig:
        path = Path(directory) / CONFIG_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: not found; a model directory holds {CONFIG_NAME} and its safetensors "
                f"(write one with `flipnet-train merge` or use random:<config>)"
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a JSON object")
        return cls.from_dict(data, source=str(path))

    def digest(self) -> str:
        """A stable hash of what the networks compute (engines record it to detect a model mismatch).

        The sampler ``defaults`` are left out: they change no network, so a model whose default steps
        or strength were tuned keeps its engines."""
        import hashlib

        data = self.to_dict()
        data.pop("defaults")
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown field; remove it (known: {', '.join(sorted(fields))})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if not has_default:
                raise ConfigError(f"{prefix}{name}: missing required field")
            continue
        value = data[name]
        sub = _NESTED.get(name) if cls is FlipnetConfig else None
        if sub is not None:
            value = _build(sub, value, prefix=f"{prefix}{name}.")
        elif name in ("unet", "vae"):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{name}: expected an object of diffusers constructor arguments")
            value = dict(value)
        elif isinstance(value, list):
            value = tuple(value)
        else:
            _check_scalar(f, value, f"{prefix}{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:  # a section's own check (ScheduleConfig's betas, Defaults' enums)
        raise ConfigError(f"{prefix}{exc}") from None


def _plain(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v.value if isinstance(v, Enum) else v for k, v in items}


def _check_scalar(f: dataclasses.Field, value: Any, where: str) -> None:
    default = f.default
    if default is dataclasses.MISSING or default is None:
        return
    expected = type(default)
    if isinstance(default, Enum):
        expected = str  # the section's __post_init__ checks the value and lists the choices
    ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(f"{where}: expected {expected.__name__}, got {value!r}")


_NESTED: dict[str, type] = {
    "face": FaceSpec,
    "boosthub": BoostHubSpec,
    "schedule": ScheduleSpec,
    "defaults": Defaults,
    "prompts": Prompts,
}
