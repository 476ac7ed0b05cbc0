"""The public API: :class:`Restorer` loads a model once and restores or degrades batches of faces.

A thin image layer over :class:`~flipnet_rt.runtime.core.DiffusionCore`: each ``uint8 [H, W, 3]`` face is
fitted to the model's square resolution (:mod:`flipnet_rt.imaging.geometry`), the core samples,
the restored face gets the optional wavelet colour fix against its input
(:mod:`flipnet_rt.imaging.colour`) and goes back to the input's size. Whole images (detect, align,
paste back) are :mod:`flipnet_rt.faces`'s, built on this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backends.base import Backend
from ..config.model import FlipnetConfig
from ..config.options import Mode, SamplingOptions, image_seed
from ..imaging.geometry import fit, unfit
from ..imaging.native import wavelet_color_fix  # the C++ kernel where built (~10x faster), else imaging.colour
from ..imaging.tensor import to_float, to_uint8
from .core import DiffusionCore
from .profiling import StageTimer

if TYPE_CHECKING:
    from ..backends.registry import BackendOptions


class Restorer:
    """Restore (or degrade) batches of RGB uint8 face images with one loaded model.

    Thread-safe (the core serialises calls); run one Restorer per device for parallelism. A
    context manager: ``close()`` frees the backend's sessions, buffers and device memory.

    Args:
        backend, config, prompts, cond_cache, timer: see :class:`~flipnet_rt.runtime.core.DiffusionCore`.
    """

    def __init__(
        self,
        backend: Backend,
        config: FlipnetConfig,
        prompts: Mapping[str, np.ndarray],
        *,
        cond_cache: bool = True,
        timer: StageTimer | None = None,
    ) -> None:
        self.core = DiffusionCore(backend, config, prompts, cond_cache=cond_cache, timer=timer)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        model: Any,
        *,
        backend: str = "auto",
        device: str | None = None,
        options: BackendOptions | None = None,
        cond_cache: bool = True,
        engine_dir: Path | str | None = None,
        timer: StageTimer | None = None,
    ) -> Restorer:
        """An engine directory, a model directory or ``random:<config>``, on ``backend``.

        ``auto`` picks TensorRT > ONNX Runtime CUDA > PyTorch CUDA > ONNX Runtime CPU (> PyTorch CPU)
        by what is installed and what the artifacts allow (:mod:`flipnet_rt.backends.select`);
        ``device`` None picks the GPU when one can run; ``options``: the backend settings
        (:class:`~flipnet_rt.backends.registry.BackendOptions`: precision, CUDA graphs, compile,
        threads, ...); ``engine_dir`` beside a model offers both.
        Raises ``BackendUnavailable`` (a ValueError) naming the fix when the requested backend
        cannot run here, ``EngineError`` when an engine directory is unusable.
        """
        from ..backends.select import select_backend

        opened = select_backend(backend, model=model, engine_dir=engine_dir, device=device, options=options)
        return cls(opened.backend, opened.config, opened.prompts, cond_cache=cond_cache, timer=timer)

    def variant(self, *, cond_cache: bool | None = None, timer: StageTimer | None = None) -> Restorer:
        """Another Restorer over the same backend (no reload) with other construction settings."""
        core = self.core
        return Restorer(
            core.backend,
            core.config,
            core.prompts,
            cond_cache=core.cond_cache if cond_cache is None else cond_cache,
            timer=timer,
        )

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> Restorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend(self) -> Backend:
        return self.core.backend

    @property
    def config(self) -> FlipnetConfig:
        return self.core.config

    @property
    def cond_cache(self) -> bool:
        return self.core.cond_cache

    # ------------------------------------------------------------------ public API
    def options(self, **overrides: object) -> SamplingOptions:
        """Sampling options: the model's defaults with ``overrides`` applied (None = default)."""
        return SamplingOptions.from_config(self.config, **overrides)

    def restore(
        self, images: Sequence[np.ndarray], options: SamplingOptions | None = None, seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """Restore LQ faces: each ``[H, W, 3]`` uint8 RGB -> restored ``[H, W, 3]`` uint8."""
        return self._run(images, Mode.RESTORE, options or self.options(), seeds)

    def degrade(
        self, images: Sequence[np.ndarray], options: SamplingOptions | None = None, seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """Synthesise a real-world-like LQ version of each HQ face (degradation mode, Sec. 4.2)."""
        return self._run(images, Mode.DEGRADE, options or self.options(), seeds)

    def detector_network(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
        """The engine's face detector on this restorer's backend and device, as the call
        :class:`~flipnet_rt.faces.retinaface.RetinaFaceDetector` takes; None when the engine has none
        (engines exported before it: the detector runs the shipped ONNX file instead)."""
        return self.core.detect_host if self.core.has_detector else None

    @property
    def has_fidelity(self) -> bool:
        """Whether the model carries the fidelity estimator (``--fidelity auto`` uses it)."""
        return self.core.has_fidelity

    def fidelity(self, inputs: Sequence[np.ndarray], restored: Sequence[np.ndarray]) -> np.ndarray:
        """The fidelity estimator's weight per face, ``float32 [B]`` in [0, 1] (1: keep the input).

        ``inputs``: the model's inputs, ``uint8 [R, R, 3]`` each; ``restored``: their restorations
        (after the colour fix), the same shapes.
        """
        if not inputs:
            return np.zeros(0, np.float32)
        if len(inputs) != len(restored):
            raise ValueError(f"fidelity: {len(inputs)} inputs and {len(restored)} restorations")
        r = self.config.resolution
        shapes = {tuple(a.shape) for a in (*inputs, *restored)}
        if shapes != {(r, r, 3)}:
            raise ValueError(f"fidelity: expected uint8 [{r}, {r}, 3] faces, got shapes {sorted(shapes)}")
        with self.core.stage("preprocessing"):
            pixels, outs = to_float(np.stack(inputs)), to_float(np.stack(restored))
        return self.core.fidelity_host(pixels, outs)

    # ------------------------------------------------------------------ the image layer
    def _run(
        self, images: Sequence[np.ndarray], mode: Mode, options: SamplingOptions, seeds: Sequence[int] | None
    ) -> list[np.ndarray]:
        if not images:
            return []
        if seeds is None:
            seeds = [image_seed(options.seed, i) for i in range(len(images))]
        with self.core.stage("preprocessing"):
            pixels, placements = self._fit(images)
        out = self.core.run_host(pixels, mode, options, seeds)  # checks the options and seeds
        with self.core.stage("postprocessing"):
            if mode is Mode.RESTORE and options.color_fix:
                out = wavelet_color_fix(out, pixels, options.color_fix)
            return [unfit(img, placement) for img, placement in zip(to_uint8(out), placements)]

    def _fit(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, tuple]:
        """``float32 [B, 3, R, R]`` model inputs and each image's placement."""
        fitted, placements = zip(*(fit(img, self.config.resolution) for img in images))
        return to_float(np.stack(fitted)), placements
