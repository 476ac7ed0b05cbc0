# Long module: Eq. 9's operators, their ranges and the two-pass pipeline belong together.
"""On-the-fly degradation (Eq. 9) in the Real-ESRGAN high-order scheme (Sec. 5.1).

Pass 1 follows Eq. (9) in its order::

    y = {[(x ⊗ k_sigma)↓_s + n_delta]_JPEG_q}↑_s

Pass 2 draws its own blur, downsample, noise and JPEG and applies them to pass 1's
output *in shuffled order* (sampled per image and recorded), then resizes back to
the original size. Each pass starts and ends at the input's size.

The pieces:

* :class:`DegradationConfig` -- the ranges of both passes (paper defaults, for
  512x512 images) and :meth:`DegradationConfig.scaled_to` for other resolutions.
* :func:`sample_params` -- every random choice of one image, drawn from a
  ``numpy.random.Generator`` into a frozen :class:`DegradationParams`.
* :func:`apply` -- the degradation itself, a pure function of (image, params):
  the same params give the bitwise same output on the same machine and OpenCV build.
* :class:`RandomDegradation` -- ``(image, seed) -> (lq, params)`` for datasets.

Operations (OpenCV, imported lazily; images are float32 on the 0-255 scale between
steps and clipped to [0, 255] after each step):

* blur: isotropic Gaussian, ``cv2.GaussianBlur`` with an explicit odd kernel size
  ``2 * ceil(3 * sigma) + 1`` capped at ``max_kernel_size``; borders reflect
  (``BORDER_REFLECT_101``);
* downsample by s: ``cv2.resize`` to ``(max(1, round(H / s)), max(1, round(W / s)))``;
  s < 1 enlarges (the paper's range starts at 0.8). The interpolation is drawn per
  pass among area / bilinear / bicubic, as Real-ESRGAN does, and so is the one of
  the final resize back;
* noise: additive Gaussian, independent per pixel and channel, standard deviation
  delta (0-255 scale), from a recorded per-pass noise seed;
* JPEG: a real codec round trip (``cv2.imencode``/``imdecode``, libjpeg, 4:2:0
  chroma subsampling) at an integer quality, with RGB correctly swapped to BGR.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum
from typing import Any, Protocol

import numpy as np

#: Largest blur kernel (pixels, odd). The rule ``2 * ceil(3 * sigma) + 1`` gives 91 at
#: sigma = 15, the paper's maximum, so the default cap never truncates a kernel.
MAX_KERNEL_SIZE = 91


class Step(str, Enum):
    """One operation of a pass."""

    BLUR = "blur"
    DOWN = "down"
    NOISE = "noise"
    JPEG = "jpeg"


#: Pass 1's order, Eq. (9).
EQ9_ORDER: tuple[Step, ...] = (Step.BLUR, Step.DOWN, Step.NOISE, Step.JPEG)


class Interp(str, Enum):
    """Resize interpolation (``cv2.INTER_AREA`` / ``INTER_LINEAR`` / ``INTER_CUBIC``)."""

    AREA = "area"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class PassConfig:
    """Uniform sampling ranges ``(low, high)`` of one pass, both ends included.

    Attributes:
        sigma: Gaussian blur standard deviation in pixels (> 0).
        scale: downsample factor s (> 0; below 1 enlarges).
        noise: Gaussian noise standard deviation delta on the 0-255 scale (>= 0).
        quality: JPEG quality, integers in [1, 100].
    """

    sigma: tuple[float, float] = (0.1, 15.0)
    scale: tuple[float, float] = (0.8, 32.0)
    noise: tuple[float, float] = (0.0, 20.0)
    quality: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        self.validate("PassConfig")

    def validate(self, where: str) -> None:
        """Raise ``ValueError`` naming ``where.field`` for a bad range."""
        _check_range(f"{where}.sigma", self.sigma, low=0.0, low_open=True)
        _check_range(f"{where}.scale", self.scale, low=0.0, low_open=True)
        _check_range(f"{where}.noise", self.noise, low=0.0)
        _check_range(f"{where}.quality", self.quality, low=1, high=100, integer=True)


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges of both passes and the kernel/interpolation rules.

    The defaults are the paper's ranges (Sec. 5.1) for 512x512 images, used for
    both passes. For other training resolutions use :meth:`scaled_to`.

    Attributes:
        first: pass 1 ranges (Eq. 9).
        second: pass 2 ranges (shuffled order); the paper's by default.
        interpolations: the resize interpolations drawn from (uniformly) for every
            downsample and every resize back.
        max_kernel_size: cap on the blur kernel size, odd, >= 3. The kernel size is
            ``min(2 * ceil(3 * sigma) + 1, max_kernel_size)``; a capped kernel is a
            Gaussian truncated closer than 3 sigma (faster, slightly less blur).
        base_resolution: the image side the spatial ranges (sigma, scale) are meant
            for; :meth:`scaled_to` rescales from it.
        passes: 2 (the paper's high-order scheme) or 1 (pass 1 only: Eq. 9 once, the milder
            named levels of :mod:`flipnet_rt.evaluation.levels`).
    """

    first: PassConfig = field(default_factory=PassConfig)
    second: PassConfig = field(default_factory=PassConfig)
    interpolations: tuple[Interp, ...] = (Interp.AREA, Interp.BILINEAR, Interp.BICUBIC)
    max_kernel_size: int = MAX_KERNEL_SIZE
    base_resolution: int = 512
    passes: int = 2

    def __post_init__(self) -> None:
        for name in ("first", "second"):
            value = getattr(self, name)
            if not isinstance(value, PassConfig):
                raise ValueError(f"DegradationConfig.{name}: expected a PassConfig, got {type(value).__name__}")
            value.validate(f"DegradationConfig.{name}")
        try:
            interps = tuple(Interp(i) for i in self.interpolations)
        except ValueError:
            raise ValueError(
                f"DegradationConfig.interpolations: {self.interpolations!r}; use names from {[i.value for i in Interp]}"
            ) from None
        if not interps or len(set(interps)) != len(interps):
            raise ValueError(
                f"DegradationConfig.interpolations: need one or more distinct names, got {self.interpolations!r}"
            )
        object.__setattr__(self, "interpolations", interps)
        k = self.max_kernel_size
        if isinstance(k, bool) or not isinstance(k, int) or k < 3 or k % 2 == 0:
            raise ValueError(f"DegradationConfig.max_kernel_size: must be an odd integer >= 3, got {k!r}")
        r = self.base_resolution
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"DegradationConfig.base_resolution: must be an integer >= 1, got {r!r}")
        if self.passes not in (1, 2) or isinstance(self.passes, bool):
            raise ValueError(f"DegradationConfig.passes: {self.passes!r}; use 1 (pass 1 only) or 2")

    def scaled_to(self, resolution: int) -> DegradationConfig:
        """The config for ``resolution`` x ``resolution`` training images.

        Rule: the *upper* ends of the spatial ranges (blur sigma and downsample s)
        scale by ``f = resolution / base_resolution``; the lower ends stay, since they
        are the near-identity ends (sigma 0.1 is no visible blur, s 0.8 a slight
        enlargement) and mean the same at every size. The scaled upper end never
        drops below the lower end, and s's upper end never below 1 (so downsampling
        stays possible). Noise (per pixel) and JPEG quality do not scale. The
        severest downsample then leaves the same number of pixels as the paper's
        (512 / 32 = 16 px at every resolution up to 512) instead of 2 px at 64.

        With the paper's defaults: at 64, sigma [0.1, 1.875] and s [0.8, 4.0];
        at 128, sigma [0.1, 3.75] and s [0.8, 8.0]; at 512, unchanged.
        ``base_resolution`` becomes ``resolution``, so scaling composes
        (``scaled_to(128).scaled_to(64) == scaled_to(64)`` away from the floors).
        """
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"DegradationConfig.scaled_to: resolution must be an integer >= 1, got {resolution!r}")
        f = resolution / self.base_resolution

        def scale_pass(p: PassConfig) -> PassConfig:
            s_lo, s_hi = p.scale
            g_lo, g_hi = p.sigma
            return replace(
                p,
                sigma=(g_lo, max(g_hi * f, g_lo)),
                scale=(s_lo, max(s_hi * f, s_lo, 1.0)),
            )

        return replace(self, first=scale_pass(self.first), second=scale_pass(self.second), base_resolution=resolution)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists for ranges, names for interpolations)."""
        out = asdict(self)
        out["interpolations"] = [i.value for i in self.interpolations]
        for name in ("first", "second"):
            out[name] = {key: list(value) for key, value in out[name].items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DegradationConfig:
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"DegradationConfig: unknown keys {unknown}; known: {sorted(known)}")
        kwargs: dict[str, Any] = dict(data)
        for name in ("first", "second"):
            if name in kwargs:
                kwargs[name] = _pass_from_dict(f"DegradationConfig.{name}", kwargs[name])
        if "interpolations" in kwargs:
            kwargs["interpolations"] = tuple(kwargs["interpolations"])
        return cls(**kwargs)


def _pass_from_dict(where: str, data: Any) -> PassConfig:
    if isinstance(data, PassConfig):
        return data
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping of ranges, got {type(data).__name__}")
    known = {f.name for f in fields(PassConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    ranges = {}
    for key, value in data.items():
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}.{key}: expected [low, high], got {value!r}")
        ranges[key] = tuple(value)
    try:
        return PassConfig(**ranges)
    except ValueError as exc:
        raise ValueError(str(exc).replace("PassConfig", where, 1)) from None


def _check_range(
    name: str,
    value: Any,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
) -> None:
    if not isinstance(value, tuple) or len(value) != 2:
        raise ValueError(f"{name}: expected a (low, high) tuple, got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name}: bounds must be numbers, got {value!r}")
        if integer and not float(v).is_integer():
            raise ValueError(f"{name}: bounds must be integers, got {value!r}")
        if not math.isfinite(v):
            raise ValueError(f"{name}: bounds must be finite, got {value!r}")
        if v < low or (low_open and v == low):
            raise ValueError(f"{name}: bounds must be {'>' if low_open else '>='} {low}, got {value!r}")
        if high is not None and v > high:
            raise ValueError(f"{name}: bounds must be <= {high}, got {value!r}")
    if value[0] > value[1]:
        raise ValueError(f"{name}: low {value[0]} is above high {value[1]}; write (low, high)")


# --------------------------------------------------------------------------- params


@dataclass(frozen=True)
class PassParams:
    """Every random choice of one pass.

    Attributes:
        order: the steps in the order applied (Eq. 9's for pass 1, shuffled for pass 2).
        sigma: blur standard deviation (pixels); kernel_size: its odd kernel size.
        scale: downsample factor s; down_interp: its interpolation.
        noise: noise standard deviation (0-255 scale); noise_seed: seeds its values.
        quality: JPEG quality.
        up_interp: interpolation of the final resize back to the input size.
    """

    order: tuple[Step, ...]
    sigma: float
    kernel_size: int
    scale: float
    down_interp: Interp
    noise: float
    noise_seed: int
    quality: int
    up_interp: Interp

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["order"] = [s.value for s in self.order]
        out["down_interp"] = self.down_interp.value
        out["up_interp"] = self.up_interp.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PassParams:
        return cls(
            order=tuple(Step(s) for s in data["order"]),
            sigma=float(data["sigma"]),
            kernel_size=int(data["kernel_size"]),
            scale=float(data["scale"]),
            down_interp=Interp(data["down_interp"]),
            noise=float(data["noise"]),
            noise_seed=int(data["noise_seed"]),
            quality=int(data["quality"]),
            up_interp=Interp(data["up_interp"]),
        )


@dataclass(frozen=True)
class DegradationParams:
    """The recorded random choices of one degraded image: both passes (``second`` None: one pass)."""

    first: PassParams
    second: PassParams | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict ``{"first": {...}, "second": {...} | None}`` (plain floats, ints, strings)."""
        return {"first": self.first.to_dict(), "second": None if self.second is None else self.second.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DegradationParams:
        """Inverse of :meth:`to_dict` (extra keys such as ``"seed"`` are ignored)."""
        second = data.get("second")
        return cls(
            first=PassParams.from_dict(data["first"]), second=None if second is None else PassParams.from_dict(second)
        )


def kernel_size_for(sigma: float, max_kernel_size: int = MAX_KERNEL_SIZE) -> int:
    """Odd Gaussian kernel size ``2 * ceil(3 * sigma) + 1``, capped at ``max_kernel_size``."""
    return min(2 * math.ceil(3.0 * sigma) + 1, max_kernel_size)


def sample_params(rng: np.random.Generator, cfg: DegradationConfig) -> DegradationParams:
    """Draw the parameters of one image: pass 1 in Eq. (9)'s order, pass 2 shuffled.

    Continuous values are uniform in their ranges, qualities uniform integers (both
    ends included), interpolations uniform among ``cfg.interpolations``, and pass 2's
    order a uniform permutation of the four steps. The draws happen in a fixed order,
    so the same generator state gives the same params. With ``cfg.passes == 1`` pass 2
    is still drawn (the draws stay those of two passes) and recorded as None.
    """
    first = _sample_pass(rng, cfg, cfg.first, shuffle=False)
    second = _sample_pass(rng, cfg, cfg.second, shuffle=True)
    return DegradationParams(first=first, second=second if cfg.passes == 2 else None)


def _sample_pass(rng: np.random.Generator, cfg: DegradationConfig, p: PassConfig, *, shuffle: bool) -> PassParams:
    sigma = float(rng.uniform(*p.sigma))
    scale = float(rng.uniform(*p.scale))
    noise = float(rng.uniform(*p.noise))
    quality = int(rng.integers(int(p.quality[0]), int(p.quality[1]), endpoint=True))
    down_interp = cfg.interpolations[int(rng.integers(len(cfg.interpolations)))]
    up_interp = cfg.interpolations[int(rng.integers(len(cfg.interpolations)))]
    noise_seed = int(rng.integers(2**63))
    order = tuple(EQ9_ORDER[i] for i in rng.permutation(len(EQ9_ORDER))) if shuffle else EQ9_ORDER
    return PassParams(
        order=order,
        sigma=sigma,
        kernel_size=kernel_size_for(sigma, cfg.max_kernel_size),
        scale=scale,
        down_interp=down_interp,
        noise=noise,
        noise_seed=noise_seed,
        quality=quality,
        up_interp=up_interp,
    )


# --------------------------------------------------------------------------- apply


def apply(image: np.ndarray, params: DegradationParams) -> np.ndarray:
    """Degrade ``image`` with recorded ``params`` (pass 1, then pass 2).

    Args:
        image: ``uint8 [H, W, 3]`` RGB.
        params: from :func:`sample_params` (or :meth:`DegradationParams.from_dict`).

    Returns:
        ``uint8 [H, W, 3]``, a new array. Pure: the same (image, params) give the
        bitwise same output.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"apply: expected a uint8 [H, W, 3] array, got {getattr(image, 'dtype', type(image).__name__)} "
            f"{getattr(image, 'shape', None)}; use flipnet_rt.imaging.io.load_image()"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"apply: image is empty ({image.shape[1]}x{image.shape[0]})")
    size = image.shape[:2]
    x = image.astype(np.float32)
    x = _run_pass(x, params.first, size)
    if params.second is not None:
        x = _run_pass(x, params.second, size)
    return _quantise(x)


def _run_pass(x: np.ndarray, p: PassParams, size: tuple[int, int]) -> np.ndarray:
    """One pass: its steps in ``p.order``, then resize back to ``size`` ([H, W])."""
    for step in p.order:
        x = _STEPS[step](x, p, size)
    return _resize(x, size, p.up_interp)


def _blur(x: np.ndarray, p: PassParams, size: tuple[int, int]) -> np.ndarray:
    import cv2

    k = p.kernel_size
    return cv2.GaussianBlur(x, (k, k), sigmaX=p.sigma, sigmaY=p.sigma, borderType=cv2.BORDER_REFLECT_101)


def _down(x: np.ndarray, p: PassParams, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    target = (max(1, round(h / p.scale)), max(1, round(w / p.scale)))
    return np.clip(_resize(x, target, p.down_interp), 0.0, 255.0)


def _noise(x: np.ndarray, p: PassParams, size: tuple[int, int]) -> np.ndarray:
    if p.noise == 0.0:
        return x
    noise = np.random.default_rng(p.noise_seed).standard_normal(x.shape, dtype=np.float32)
    noise *= np.float32(p.noise)
    noise += x
    return np.clip(noise, 0.0, 255.0, out=noise)


def _jpeg(x: np.ndarray, p: PassParams, size: tuple[int, int]) -> np.ndarray:
    import cv2

    bgr = np.ascontiguousarray(_quantise(x)[..., ::-1])
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(p.quality)])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed (quality {p.quality}, image {bgr.shape}); check the OpenCV build")
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if decoded is None or decoded.shape != bgr.shape:
        raise RuntimeError(f"JPEG decoding failed (quality {p.quality}, image {bgr.shape}); check the OpenCV build")
    return decoded[..., ::-1].astype(np.float32)


_STEPS = {Step.BLUR: _blur, Step.DOWN: _down, Step.NOISE: _noise, Step.JPEG: _jpeg}


def _cv2_interp(interp: Interp) -> int:
    import cv2

    return {Interp.AREA: cv2.INTER_AREA, Interp.BILINEAR: cv2.INTER_LINEAR, Interp.BICUBIC: cv2.INTER_CUBIC}[interp]


def _resize(x: np.ndarray, size: tuple[int, int], interp: Interp) -> np.ndarray:
    """Resize float32 ``[h, w, 3]`` to ``size`` = (H, W); a no-op at the same size."""
    import cv2

    if x.shape[:2] == tuple(size):
        return x
    out = cv2.resize(x, (size[1], size[0]), interpolation=_cv2_interp(interp))
    return np.clip(out.reshape(size[0], size[1], 3), 0.0, 255.0)


def _quantise(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 255.0)).astype(np.uint8)


# --------------------------------------------------------------------------- callable


class MakesLQ(Protocol):
    """What a dataset needs of its degradation: ``(uint8 [H, W, 3], seed) -> (lq, recorded params)``
    (:class:`RandomDegradation`, :class:`flipnet_rt.evaluation.levels.LevelMix`); the params have ``to_dict()``."""

    def __call__(self, image: np.ndarray, seed: int) -> tuple[np.ndarray, Any]: ...


class RandomDegradation:
    """``(image, seed) -> (lq, params)``: sample with ``default_rng(seed)``, then :func:`apply`.

    Args:
        config: the ranges; the paper's 512x512 defaults when omitted. For other
            training resolutions pass ``DegradationConfig().scaled_to(resolution)``.
    """

    def __init__(self, config: DegradationConfig | None = None) -> None:
        self.config = DegradationConfig() if config is None else config

    def __call__(self, image: np.ndarray, seed: int) -> tuple[np.ndarray, DegradationParams]:
        """Degrade ``uint8 [H, W, 3]`` with the params drawn from ``seed`` (a non-negative int)."""
        params = sample_params(np.random.default_rng(seed), self.config)
        return apply(image, params), params

    def __repr__(self) -> str:
        return f"RandomDegradation({self.config!r})"
