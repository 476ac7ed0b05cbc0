"""One I/O spec per network: names, dtypes, symbolic shapes, optimisation profiles.

The same objects drive the ONNX exporter (dynamic shapes), the TensorRT builder (min/opt/max
shapes), the runtime (buffer shapes, feed names) and the tests. They are built once at export
time and stored in ``manifest.json``; everything here is torch-free.

Shapes are written with three symbols: ``B`` the batch of one network call, ``h`` and ``w`` the
latent height and width (image pixels are ``f*h`` with f the VAE factor). A dimension is
``factor * product(symbols) / divisor``, e.g. ``2*B``, ``h*w/4``, ``333``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config.model import FlipnetConfig

SYMBOLS = ("B", "h", "w")
_TOKEN = re.compile(r"^(?:\d+|[Bhw])$")


@dataclass(frozen=True)
class Dim:
    """``factor * prod(symbols) // divisor``; str() and parse() round-trip."""

    factor: int = 1
    symbols: tuple[str, ...] = ()
    divisor: int = 1

    @classmethod
    def parse(cls, text: str | int) -> Dim:
        if isinstance(text, int):
            return cls(factor=text)
        num, _, den = str(text).partition("/")
        factor, symbols = 1, []
        for token in num.split("*"):
            token = token.strip()
            if not _TOKEN.match(token):
                raise ValueError(f"bad dimension {text!r}: use e.g. 2*B, h*w/4 or 333")
            if token.isdigit():
                factor *= int(token)
            else:
                symbols.append(token)
        divisor = int(den) if den else 1
        return cls(factor, tuple(symbols), divisor)

    def __str__(self) -> str:
        parts = ([str(self.factor)] if self.factor != 1 or not self.symbols else []) + list(self.symbols)
        return "*".join(parts) + (f"/{self.divisor}" if self.divisor != 1 else "")

    @property
    def static(self) -> bool:
        return not self.symbols

    def value(self, env: Mapping[str, int]) -> int:
        num = self.factor * math.prod(env[s] for s in self.symbols)
        if num % self.divisor:
            raise ValueError(f"dimension {self} is not whole for {dict(env)}")
        return num // self.divisor


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "float16"
    shape: tuple[Dim, ...]

    def concrete(self, env: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(d.value(env) for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": [str(d) if d.symbols else d.factor for d in self.shape],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["dtype"]), tuple(Dim.parse(d) for d in data["shape"]))


@dataclass(frozen=True)
class Profile:
    """min / opt / max of each symbol (one TensorRT optimisation profile)."""

    B: tuple[int, int, int]
    h: tuple[int, int, int]
    w: tuple[int, int, int]

    def env(self, which: int) -> dict[str, int]:
        """which: 0 min, 1 opt, 2 max."""
        return {"B": self.B[which], "h": self.h[which], "w": self.w[which]}

    def to_dict(self) -> dict[str, list[int]]:
        return {"B": list(self.B), "h": list(self.h), "w": list(self.w)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[int]]) -> Profile:
        out = {}
        for key in SYMBOLS:
            lo, opt, hi = (int(v) for v in data[key])
            if not 1 <= lo <= opt <= hi:
                raise ValueError(f"profile.{key}: need 1 <= min <= opt <= max, got {lo}:{opt}:{hi}")
            out[key] = (lo, opt, hi)
        return cls(**out)


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def shapes(self, env: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
        """Concrete shapes of every input and output for one call."""
        return {t.name: t.concrete(env) for t in (*self.inputs, *self.outputs)}

    def profile_shapes(self, profile: Profile) -> dict[str, tuple[tuple[int, ...], ...]]:
        """Each dynamic input's (min, opt, max) shapes: what TensorRT's profile takes."""
        return {
            t.name: tuple(t.concrete(profile.env(i)) for i in range(3))
            for t in self.inputs
            if not all(d.static for d in t.shape)
        }

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> NetworkSpec:
        return cls(
            name,
            tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
        )


ShapeKey = tuple[str, tuple[tuple[int, ...], ...]]  # (network, each input's shape in spec order)


def infer_env(spec: NetworkSpec, shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """The symbols ``{B, h, w}`` of one call, solved from its input shapes and checked against all of them.

    Raises ValueError naming the input whose shape does not fit the spec.
    """
    env: dict[str, int] = {}
    for t in spec.inputs:
        shape = tuple(int(d) for d in shapes[t.name])
        if len(shape) != len(t.shape):
            raise ValueError(
                f"{spec.name}: input {t.name} has shape {shape}; the spec is [{', '.join(map(str, t.shape))}]"
            )
        for dim, size in zip(t.shape, shape):
            if len(dim.symbols) == 1 and size * dim.divisor % dim.factor == 0:
                env.setdefault(dim.symbols[0], size * dim.divisor // dim.factor)
    for t in spec.inputs:
        shape = tuple(int(d) for d in shapes[t.name])
        try:
            expected = t.concrete(env)
        except (KeyError, ValueError):
            expected = None
        if expected != shape:
            raise ValueError(
                f"{spec.name}: input {t.name} has shape {shape}; the spec is "
                f"[{', '.join(map(str, t.shape))}] with {env}"
            )
    return env


def shape_key(spec: NetworkSpec, feeds: Mapping[str, Any]) -> ShapeKey:
    """``(network, input shapes)``: the key of per-shape buffers, bindings and CUDA graphs."""
    return spec.name, tuple(tuple(int(d) for d in feeds[n].shape) for n in spec.input_names)


@dataclass(frozen=True)
class KVSpec:
    """One BoostHub layer's K/V geometry: ``[B, h*w / 4**level, channels]``."""

    level: int
    channels: int


def _t(name: str, dtype: str, *dims: str | int) -> TensorSpec:
    return TensorSpec(name, dtype, tuple(Dim.parse(d) for d in dims))


def kv_names(count: int) -> list[str]:
    """``k_00, v_00, k_01, v_01, ...``: the order of unet_cond's outputs and unet_input's extra inputs."""
    return [f"{kind}_{i:02d}" for i in range(count) for kind in ("k", "v")]


#: The face detector (:mod:`flipnet_rt.faces.retinaface`): frames of ``32*h x 32*w`` pixels (BGR minus
#: the mean), one output row per prior box (2 per cell of the stride 8, 16 and 32 grids: 42 per 32x32).
DETECTOR = "detector"
#: Its TensorRT profile, whatever the model: 1-8 frames of 32 to 2048 px a side (--detect-size at most
#: 2048), best for a 720p frame at 1280 (736 x 1280); portrait frames (h > w) run in the same profile.
DETECTOR_PROFILE = Profile(B=(1, 1, 8), h=(1, 23, 64), w=(1, 40, 64))


def detector_spec() -> NetworkSpec:
    """The detector's I/O: float32 whatever the engine's precision (pixel-scale inputs; a small network)."""
    return NetworkSpec(
        DETECTOR,
        (_t("input", "float32", "B", 3, "32*h", "32*w"),),
        (
            _t("loc", "float32", "B", "42*h*w", 4),
            _t("conf", "float32", "B", "42*h*w", 2),
            _t("landmarks", "float32", "B", "42*h*w", 10),
        ),
    )


def network_specs(
    config: FlipnetConfig,
    kv: Iterable[KVSpec],
    dtype: str = "float32",
    *,
    fidelity: bool = False,
    detector: bool = True,
) -> dict[str, NetworkSpec]:
    """The I/O spec of every network of DESIGN §4 for a model config and its BoostHub layout; with
    ``fidelity`` also the fidelity estimator's (:mod:`flipnet_rt.models.fidelity`), with ``detector``
    the face detector's (:func:`detector_spec`)."""
    kv = list(kv)
    c, f = config.latent_channels, config.vae_factor
    ctx = (config.context_tokens, config.text_width)
    image = ("B", 3, f"{f}*h", f"{f}*w")
    face_image = ("B", 3, config.resolution, config.resolution)  # N tokens fix the face input size
    kv_specs = [
        _t(name, dtype, "B", "h*w" + (f"/{4**layer.level}" if layer.level else ""), layer.channels)
        for name, layer in zip(kv_names(len(kv)), (layer for layer in kv for _ in range(2)))
    ]
    specs = {
        "unet": NetworkSpec(
            "unet",
            (
                _t("sample", dtype, "2*B", c, "h", "w"),
                _t("timestep", "float32", "2*B"),
                _t("context", dtype, "2*B", *ctx),
                _t("phi", dtype, 1),
            ),
            (_t("noise_pred", dtype, "2*B", c, "h", "w"),),
        ),
        "unet_cond": NetworkSpec(
            "unet_cond",
            (
                _t("sample", dtype, "B", c, "h", "w"),
                _t("timestep", "float32", "B"),
                _t("context", dtype, "B", *ctx),
            ),
            tuple(kv_specs),
        ),
        "unet_input": NetworkSpec(
            "unet_input",
            (
                _t("sample", dtype, "B", c, "h", "w"),
                _t("timestep", "float32", "B"),
                _t("context", dtype, "B", *ctx),
                _t("phi", dtype, 1),
                *kv_specs,
            ),
            (_t("noise_pred", dtype, "B", c, "h", "w"),),
        ),
        "vae_encoder": NetworkSpec(
            "vae_encoder", (_t("image", dtype, *image),), (_t("latent", dtype, "B", c, "h", "w"),)
        ),
        "vae_decoder": NetworkSpec(
            "vae_decoder", (_t("latent", dtype, "B", c, "h", "w"),), (_t("image", dtype, *image),)
        ),
        "face_encoder": NetworkSpec(
            "face_encoder",
            (_t("image", dtype, *face_image),),
            (_t("id_tokens", dtype, "B", config.face.tokens, config.text_width),),
        ),
    }
    if fidelity:
        specs["fidelity"] = NetworkSpec(
            "fidelity",
            (_t("image", dtype, *face_image), _t("restored", dtype, *face_image)),
            (_t("weight", dtype, "B"),),
        )
    if detector:
        specs[DETECTOR] = detector_spec()
    return specs
