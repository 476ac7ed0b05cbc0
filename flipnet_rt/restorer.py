"""The public API: :class:`Restorer` loads a model once and restores or degrades batches of faces.

restore: input = HQ latent generated from noise, condition = the LQ image's latent, context
``[restore prompt || id tokens of the LQ face]``, classifier-free guidance against
``[negative prompt || zeros]`` batched into the same call (DESIGN §3).
degrade (the flip): input = LQ latent generated, condition = the HQ image's latent, context
``[empty prompt || zeros]``; both guidance branches would be identical, so guidance is skipped.

Condition cache (DESIGN §3, on by default): the condition stream never depends on the input
stream and ``t_cond`` is constant, so ``unet_cond`` runs once per image and guidance branch and
every step runs ``unet_input`` on the input half only. ``cond_cache=False`` runs the joint graph
``unet`` on ``[x; y_t]`` each step (the reference; the same result within float rounding).

Every image draws its noise from its own numpy generator seeded by its seed, so a result depends
on the image and its seed only: not on the batch it shares, and not on the backend.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .backends.base import Array, Backend
from .config import FlipnetConfig
from .engine.spec import kv_names
from .imaging.colour import wavelet_color_fix
from .imaging.geometry import fit, unfit
from .imaging.tensor import to_float, to_uint8
from .options import Mode, SamplingOptions, image_seed, schedule_config
from .profiling import StageTimer
from .sampling import make_grid, parameterized, q_sample, sample


class Restorer:
    """Restore (or degrade) batches of RGB uint8 face images with one loaded model.

    Thread-safe: calls are serialised by a lock (a backend holds per-call state such as phi and
    reused buffers); run one Restorer per device for parallelism.
    """

    def __init__(self, backend: Backend, config: FlipnetConfig, prompts: Mapping[str, np.ndarray], *,
                 cond_cache: bool = True) -> None:
        needed = ("unet_cond", "unet_input") if cond_cache else ("unet",)
        missing = [n for n in (*needed, "vae_encoder", "vae_decoder") if n not in backend.specs]
        if missing:
            fix = " (drop --no-cond-cache)" if not cond_cache and "unet" in missing else ""
            raise ValueError(f"the {backend.name} backend has no {', '.join(missing)} network{fix}; "
                             f"export them with `flipnet-rt export` (it has {', '.join(backend.specs)})")
        self.backend = backend
        self.config = config
        self.cond_cache = cond_cache
        self.schedule = schedule_config(config)
        self.alphas_cumprod = self.schedule.alphas_cumprod()
        self._prompts = {k: backend.from_numpy(np.asarray(v, np.float32)[None]) for k, v in prompts.items()}
        self._lock = threading.Lock()
        self.timer: StageTimer | None = None  # set by `flipnet-rt bench` to time every stage

    def _stage(self, name: str):
        return self.timer.stage(name) if self.timer is not None else nullcontext()

    def _run_network(self, network: str, feeds: Mapping[str, Array]) -> dict[str, Array]:
        with self._stage(network):
            return self.backend.run(network, feeds)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, spec: str | Path, *, backend: str = "auto", device: str | None = None, dtype: str = "float32",
             cond_cache: bool = True, cuda_graphs: bool = False, compile: bool = False) -> "Restorer":
        """An engine directory or a model directory / ``random:<config>``, on ``backend``.

        ``auto`` picks TensorRT > ONNX Runtime CUDA > PyTorch CUDA > ONNX Runtime CPU (> PyTorch CPU)
        by what is installed and what the artifacts allow (:mod:`flipnet_rt.backends.select`);
        ``device`` None picks the GPU when one can run. Raises ``BackendUnavailable`` (a
        ValueError) naming the fix when the requested backend cannot run here.
        """
        from .backends.select import select_backend, split_model_arg

        chosen = select_backend(backend, **split_model_arg(spec), device=device, dtype=dtype,
                                cuda_graphs=cuda_graphs, compile=compile)
        return cls(chosen.backend, chosen.config, chosen.prompts, cond_cache=cond_cache)

    @classmethod
    def from_engine(cls, directory: Path, *, cond_cache: bool = True,
                    providers: Sequence[str] | None = None) -> "Restorer":
        from .backends.onnxruntime import OnnxRuntimeBackend
        from .engine.manifest import Manifest, load_prompts

        manifest = Manifest.load(directory)
        manifest.check_files(directory)
        config = FlipnetConfig.load(directory)
        manifest.check_model(config, directory)
        backend = OnnxRuntimeBackend(directory, manifest, providers=providers or ("CPUExecutionProvider",))
        return cls(backend, config, load_prompts(directory), cond_cache=cond_cache)

    # ------------------------------------------------------------------ public API
    def options(self, **overrides: object) -> SamplingOptions:
        """Sampling options: the model's defaults with ``overrides`` applied (None = default)."""
        return SamplingOptions.from_config(self.config, **overrides)

    def restore(self, images: Sequence[np.ndarray], options: SamplingOptions | None = None,
                seeds: Sequence[int] | None = None) -> list[np.ndarray]:
        """Restore LQ faces: each ``[H, W, 3]`` uint8 RGB -> restored ``[H, W, 3]`` uint8."""
        return self._run(images, Mode.RESTORE, options or self.options(), seeds)

    def degrade(self, images: Sequence[np.ndarray], options: SamplingOptions | None = None,
                seeds: Sequence[int] | None = None) -> list[np.ndarray]:
        """Synthesise a real-world-like LQ version of each HQ face (degradation mode, Sec. 4.2)."""
        return self._run(images, Mode.DEGRADE, options or self.options(), seeds)

    # ------------------------------------------------------------------ the loop
    def generate_latents(self, images: Sequence[np.ndarray], options: SamplingOptions | None = None,
                         seeds: Sequence[int] | None = None, mode: Mode = Mode.RESTORE) -> np.ndarray:
        """The sampled latents ``[B, 4, h, w]`` float32 before decoding (for parity checks)."""
        with self._lock:
            latents, _, _ = self._sample(images, mode, options or self.options(), seeds)
            return self.backend.to_numpy(latents)

    def _run(self, images: Sequence[np.ndarray], mode: Mode, options: SamplingOptions,
             seeds: Sequence[int] | None) -> list[np.ndarray]:
        if not images:
            return []
        with self._lock:
            latents, placements, condition = self._sample(images, mode, options, seeds)
            image = self._run_network("vae_decoder", {"latent": latents})["image"]
            with self._stage("postprocessing"):
                decoded = self.backend.to_numpy(image)
                if mode is Mode.RESTORE and options.color_fix:
                    decoded = wavelet_color_fix(decoded, condition, options.color_fix)
                return [unfit(img, placement) for img, placement in zip(to_uint8(decoded), placements)]

    def _sample(self, images: Sequence[np.ndarray], mode: Mode, options: SamplingOptions,
                seeds: Sequence[int] | None) -> tuple[Array, tuple, np.ndarray]:
        """Sampled latents, each image's placement and the condition images ``float32 [B, 3, R, R]``."""
        options.validate(self.config)
        seeds = list(seeds) if seeds is not None else [image_seed(options.seed, i) for i in range(len(images))]
        if len(seeds) != len(images):
            raise ValueError(f"seeds: {len(seeds)} given for {len(images)} images")
        with self._stage("preprocessing"):
            fitted, placements = zip(*(fit(img, self.config.resolution) for img in images))
            condition = to_float(np.stack(fitted))
            pixels = self.backend.from_numpy(condition)
        return self.generate(pixels, mode, options, seeds), placements, condition

    def generate(self, pixels: Array, mode: Mode, options: SamplingOptions, seeds: Sequence[int]) -> Array:
        """Condition images ``[B, 3, R, R]`` -> generated latents ``[B, 4, h, w]`` (the sampling loop)."""
        be, batch = self.backend, len(seeds)
        rngs = [np.random.default_rng(s) for s in seeds]
        y0 = self._run_network("vae_encoder", {"image": pixels})["latent"]
        noise_x, noise_y = self._noise(rngs, y0), self._noise(rngs, y0)
        y_t = q_sample(y0, noise_y, float(self.alphas_cumprod[options.t_cond]))  # Eq. (1) at t_cond

        guided = mode is Mode.RESTORE and options.guidance != 1.0
        context = self._context(pixels, mode, guided, batch)
        branches = 2 if guided else 1
        n = branches * batch
        condition = be.repeat(y_t, branches)
        phi = be.from_numpy(np.array([options.phi], np.float32), be.dtype)

        if self.cond_cache:  # DESIGN §3: the condition's K/V once, then the input half only
            kv = self._run_network(
                "unet_cond", {"sample": condition, "timestep": be.full(n, options.t_cond), "context": context})

            def call(x: Array, t: int) -> Array:
                feeds = {"sample": be.repeat(x, branches), "timestep": be.full(n, t), "context": context, "phi": phi}
                return self._run_network("unet_input", {**feeds, **kv})["noise_pred"]
        else:
            both = be.concat([context, context])

            def call(x: Array, t: int) -> Array:
                timestep = be.concat([be.full(n, t), be.full(n, options.t_cond)])
                joint = be.concat([be.repeat(x, branches), condition])
                feeds = {"sample": joint, "timestep": timestep, "context": both, "phi": phi}
                return self._run_network("unet", feeds)["noise_pred"][:n]

        network = _guided(call, options.guidance, batch) if guided else call
        grid = make_grid(self.schedule, options.sampler, options.steps, options.spacing, options.strength)
        x = noise_x if options.strength >= 1.0 else q_sample(y0, noise_x, float(grid.alpha_bar[0]))
        denoiser = parameterized(network, self.alphas_cumprod, self.schedule.prediction_type)
        noise_like = (lambda ref: self._noise(rngs, ref)) if options.eta > 0 else None
        with self._stage("sampling"):  # the loop: UNet calls are also timed on their own
            return sample(options.sampler, denoiser, x, grid, eta=options.eta, noise_like=noise_like)

    def _context(self, pixels: Array, mode: Mode, guided: bool, batch: int) -> Array:
        """``[branches x B, 77 + N, D]``: conditional branch first, then the unconditional one."""
        be, c = self.backend, self.config
        zeros = be.from_numpy(np.zeros((batch, c.face.tokens, c.text_width), np.float32))
        if mode is Mode.DEGRADE:
            return self._join(self._prompts["degrade"], zeros, batch)
        ids = self._run_network("face_encoder", {"image": pixels})["id_tokens"]
        context = self._join(self._prompts["restore"], ids, batch)
        if guided:
            context = be.concat([context, self._join(self._prompts["negative"], zeros, batch)])
        return context

    def _join(self, text: Array, ids: Array, batch: int) -> Array:
        """``[1, 77, D]`` text + ``[B, N, D]`` id tokens -> ``[B, 77 + N, D]``."""
        return self.backend.concat([self.backend.repeat(text, batch), ids], axis=1)

    def _noise(self, rngs: list[np.random.Generator], like: Array) -> Array:
        """Standard normal ``like`` a batch: image i draws from its own generator (float32, host)."""
        shape = tuple(like.shape[1:])
        host = np.stack([rng.standard_normal(shape, dtype=np.float32) for rng in rngs])
        return self.backend.from_numpy(host)


def _guided(call: Callable[[Array, int], Array], scale: float, batch: int) -> Callable[[Array, int], Array]:
    """Classifier-free guidance on one call holding both branches: ``u + s (c - u)``."""

    def network(x: Array, t: int) -> Array:
        out = call(x, t)
        cond, uncond = out[:batch], out[batch:]
        return uncond + scale * (cond - uncond)

    return network
