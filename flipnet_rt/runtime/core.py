"""The diffusion core: float images at the model's resolution in, float images out.

restore: input = HQ latent generated from noise, condition = the LQ image's latent, context
``[restore prompt || id tokens of the LQ face]``, classifier-free guidance against
``[negative prompt || zeros]`` batched into the same call (DESIGN §3).
degrade (the flip): input = LQ latent generated, condition = the HQ image's latent, context
``[empty prompt || zeros]``; both guidance branches would be identical, so guidance is skipped.

Condition cache (DESIGN §3, on by default, fixed at construction): the condition stream never
depends on the input stream and ``t_cond`` is constant, so ``unet_cond`` runs once per image and
guidance branch and every step runs ``unet_input`` on the input half only. ``cond_cache=False``
runs the joint graph ``unet`` on ``[x; y_t]`` each step (the reference; the same result within
float rounding).

Every image draws its noise from its own numpy generator seeded by its seed, so a result depends
on the image and its seed only: not on the batch it shares, and not on the backend.

The image policy around the core (fitting any size to the model's square, the colour fix,
uint8 conversion) is :class:`flipnet_rt.runtime.restorer.Restorer`'s; whole images and video build on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext

import numpy as np

from ..backends.base import Array, Backend
from ..config.model import FlipnetConfig
from ..config.options import Mode, SamplingOptions
from ..engine.spec import DETECTOR
from ..sampling import make_grid, parameterized, q_sample, sample
from .profiling import StageTimer


class DiffusionCore:
    """One loaded model's sampling loop over a backend.

    Thread-safe: calls are serialised by a lock (a backend holds per-call state such as reused
    buffers); run one core per device for parallelism. A context manager: ``close()`` frees the
    backend.

    Args:
        backend: the networks (:mod:`flipnet_rt.backends`).
        config: the model's config.
        prompts: the fixed prompts' embeddings by kind (``restore``, ``negative``, ``degrade``),
            ``[77, D]`` float32 each.
        cond_cache: compute the condition's K/V once (``unet_cond`` + ``unet_input``) instead of
            running the joint ``unet`` every step. Fixed for the core's life.
        timer: records every stage's wall time (``flipnet-rt bench``); None records nothing.
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
        needed = ("unet_cond", "unet_input") if cond_cache else ("unet",)
        missing = [n for n in (*needed, "vae_encoder", "vae_decoder") if n not in backend.specs]
        if missing:
            fix = " (drop --no-cond-cache)" if not cond_cache and "unet" in missing else ""
            raise ValueError(
                f"the {backend.name} backend has no {', '.join(missing)} network{fix}; "
                f"export them with `flipnet-rt export` (it has {', '.join(backend.specs)})"
            )
        from ..config.options import schedule_config

        self.backend = backend
        self.config = config
        self.prompts = {k: np.asarray(v, np.float32) for k, v in prompts.items()}
        self._cond_cache = cond_cache
        self.timer = timer
        self.schedule = schedule_config(config)
        self.alphas_cumprod = self.schedule.alphas_cumprod()
        self._prompts = {k: backend.from_numpy(v[None]) for k, v in self.prompts.items()}
        self._lock = threading.Lock()
        self._detect_lock = threading.Lock()

    @property
    def cond_cache(self) -> bool:
        return self._cond_cache

    def close(self) -> None:
        """Free the backend's sessions, buffers and device memory (reopened lazily if used again)."""
        with self._lock:
            self.backend.close()

    def __enter__(self) -> DiffusionCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ public
    def run_host(self, pixels: np.ndarray, mode: Mode, options: SamplingOptions, seeds: Sequence[int]) -> np.ndarray:
        """Condition images -> generated images, both host ``float32 [B, 3, R, R]`` in [-1, 1] (R: the
        model's resolution); ``seeds`` gives each image its noise stream."""
        self._check(pixels, options, seeds)
        with self._lock:
            latents = self._generate(pixels, mode, options, seeds)
            image = self._run_network("vae_decoder", {"latent": latents})["image"]
            with self.stage("postprocessing"):
                return self.backend.to_numpy(image).astype(np.float32, copy=True)

    def run_device(self, pixels: Array, mode: Mode, options: SamplingOptions, seeds: Sequence[int]) -> Array:
        """:meth:`run_host` on the backend's own arrays, nothing through the host: condition images
        ``[B, 3, R, R]`` on the backend's device (float32, or the engine's float dtype) -> generated
        images ``[B, 3, R, R]`` there, the caller's own (:mod:`flipnet_rt.faces.device`): in the
        engine's dtype from a TensorRT/ONNX Runtime engine (float16 from a float16 one), float32 from
        the torch backend (its networks' outputs come back float32 at any compute dtype)."""
        self._check(pixels, options, seeds)
        with self._lock:
            latents = self.generate(pixels, mode, options, seeds)
            image = self._run_network("vae_decoder", {"latent": latents})["image"]
            # a copy, made before the lock is released: backends reuse their output buffers per shape
            return self.backend.concat([image])

    @property
    def has_fidelity(self) -> bool:
        """Whether the engine carries the fidelity estimator (``fidelity`` network)."""
        return "fidelity" in self.backend.specs

    def fidelity_host(self, pixels: np.ndarray, restored: np.ndarray) -> np.ndarray:
        """The fidelity estimator: model inputs and their restorations, ``float32 [B, 3, R, R]`` in
        [-1, 1] -> ``float32 [B]`` weights in [0, 1] (1: keep the input; :mod:`flipnet_rt.faces.fidelity`)."""
        if pixels.shape != restored.shape:
            raise ValueError(f"fidelity: inputs {pixels.shape} and restorations {restored.shape} differ")
        with self._lock:
            be = self.backend
            feeds = {
                "image": be.from_numpy(np.ascontiguousarray(pixels, np.float32)),
                "restored": be.from_numpy(np.ascontiguousarray(restored, np.float32)),
            }
            weight = self._run_network("fidelity", feeds)["weight"]
            return be.to_numpy(weight).astype(np.float32, copy=True)

    def fidelity_device(self, pixels: Array, restored: Array) -> Array:
        """:meth:`fidelity_host` on the backend's own arrays (in its float dtype): ``[B]`` weights there, a copy."""
        with self._lock:
            weight = self._run_network("fidelity", {"image": pixels, "restored": restored})["weight"]
            return self.backend.concat([weight])

    @property
    def has_detector(self) -> bool:
        """Whether the engine carries the face detector (``detector`` network; engines exported before
        issue 29 do not: the face pipeline runs the shipped ONNX file then)."""
        return DETECTOR in self.backend.specs

    def detect_host(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The face detector on host frames ``float32 [B, 3, 32h, 32w]`` (BGR minus the mean:
        :func:`flipnet_rt.faces.retinaface.preprocess`) -> host copies of ``loc``, ``conf``, ``landmarks``.

        Detector calls are serialised among themselves but not with restoration: a backend's per-call
        state (buffers, bindings, sessions) is kept per network and shape, so a video's detection
        thread overlaps the engine worker's sampling instead of waiting for it."""
        with self._detect_lock:
            be = self.backend
            out = self._run_network(
                DETECTOR, {"input": be.from_numpy(np.ascontiguousarray(frames, np.float32), "float32")}
            )
            loc, conf, landmarks = (
                be.to_numpy(out[n]).astype(np.float32, copy=True) for n in ("loc", "conf", "landmarks")
            )
            return loc, conf, landmarks

    def detect_device(self, frames: Array) -> dict[str, Array]:
        """:meth:`detect_host` on the backend's own arrays (``float32 [B, 3, 32h, 32w]`` there: the
        device frame path's input): ``loc``, ``conf``, ``landmarks`` there, copies."""
        with self._detect_lock:
            out = self._run_network(DETECTOR, {"input": frames})
            return {name: self.backend.concat([out[name]]) for name in ("loc", "conf", "landmarks")}

    def latents(self, pixels: np.ndarray, mode: Mode, options: SamplingOptions, seeds: Sequence[int]) -> np.ndarray:
        """The sampled latents ``float32 [B, 4, h, w]`` before decoding (for parity checks)."""
        self._check(pixels, options, seeds)
        with self._lock:
            return self.backend.to_numpy(self._generate(pixels, mode, options, seeds)).copy()

    # ------------------------------------------------------------------ the loop
    def stage(self, name: str):
        """A context that times ``name`` on the timer (nothing without one)."""
        return self.timer.stage(name) if self.timer is not None else nullcontext()

    def _run_network(self, network: str, feeds: Mapping[str, Array]) -> dict[str, Array]:
        with self.stage(network):
            return self.backend.run(network, feeds)

    def _check(self, pixels: Array, options: SamplingOptions, seeds: Sequence[int]) -> None:
        """A call's inputs, checked once where they enter the core (run_host, run_device, latents):
        condition images ``[B, 3, R, R]``, one seed per image, options valid for this model."""
        r = self.config.resolution
        if len(pixels.shape) != 4 or tuple(pixels.shape[1:]) != (3, r, r):
            raise ValueError(f"pixels: expected float [B, 3, {r}, {r}], got {pixels.dtype} {tuple(pixels.shape)}")
        if len(seeds) != pixels.shape[0]:
            raise ValueError(f"seeds: {len(seeds)} given for {pixels.shape[0]} images")
        options.validate(self.config)

    def _generate(self, pixels: np.ndarray, mode: Mode, options: SamplingOptions, seeds: Sequence[int]) -> Array:
        with self.stage("preprocessing"):
            device_pixels = self.backend.from_numpy(np.ascontiguousarray(pixels, np.float32))
        return self.generate(device_pixels, mode, options, seeds)

    def generate(self, pixels: Array, mode: Mode, options: SamplingOptions, seeds: Sequence[int]) -> Array:
        """Condition images ``[B, 3, R, R]`` (backend arrays) -> generated latents ``[B, 4, h, w]``."""
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
        grid = make_grid(self.schedule, options.sampler, options.steps, options.spacing, options.strength)

        if self.cond_cache:  # DESIGN §3: the condition's K/V once, then the input half only
            kv = self._run_network(
                "unet_cond", {"sample": condition, "timestep": be.full(n, options.t_cond), "context": context}
            )
            # kv goes to unet_input as it came out of unet_cond: the backends bind those very buffers
            timesteps = device_timesteps(grid.timesteps, lambda t: be.full(n, t))

            def call(x: Array, t: int) -> Array:
                feeds = {"sample": be.repeat(x, branches), "timestep": timesteps[t], "context": context, "phi": phi}
                return self._run_network("unet_input", {**feeds, **kv})["noise_pred"]
        else:
            both = be.concat([context, context])
            t_cond = be.full(n, options.t_cond)
            timesteps = device_timesteps(grid.timesteps, lambda t: be.concat([be.full(n, t), t_cond]))

            def call(x: Array, t: int) -> Array:
                joint = be.concat([be.repeat(x, branches), condition])
                feeds = {"sample": joint, "timestep": timesteps[t], "context": both, "phi": phi}
                return self._run_network("unet", feeds)["noise_pred"][:n]

        network = guided_call(call, options.guidance, batch) if guided else call
        x = noise_x if options.strength >= 1.0 else q_sample(y0, noise_x, float(grid.alpha_bar[0]))
        denoiser = parameterized(network, self.alphas_cumprod, self.schedule.prediction_type)
        noise_like = (lambda ref: self._noise(rngs, ref)) if options.eta > 0 else None
        with self.stage("sampling"):  # the loop: UNet calls are also timed on their own
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


def device_timesteps(timesteps: Iterable[int], make: Callable[[int], Array]) -> dict[int, Array]:
    """Every step's timestep tensor, made on the backend's device once per run (``[n]`` or ``[2n]``
    float32 each), so the loop makes no host-to-device transfer (a blocking one from pageable memory
    on a GPU) per step. A timestep the grid did not list (no sampler asks for one) is made on use."""

    class Timesteps(dict):
        def __missing__(self, t: int) -> Array:
            self[t] = make(t)
            return self[t]

    table = Timesteps()
    for t in dict.fromkeys(int(t) for t in timesteps):
        table[t] = make(t)
    return table


def guided_call(call: Callable[[Array, int], Array], scale: float, batch: int) -> Callable[[Array, int], Array]:
    """Classifier-free guidance on one call holding both branches: ``u + s (c - u)``."""

    def network(x: Array, t: int) -> Array:
        out = call(x, t)
        cond, uncond = out[:batch], out[batch:]
        return uncond + scale * (cond - uncond)

    return network
