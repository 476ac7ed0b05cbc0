# Long module: the device frame path's kernels for each array library (numpy, torch, CuPy) and the flow over them.
"""Whole frames on the engine's device: upload once, warp, restore, colour-fix, paste, download once.

The host path of :class:`~.pipeline.FaceRestorer` warps each face out of the frame on the CPU,
sends the aligned crops to the engine, brings each restoration back and pastes it on the CPU. On
a GPU backend :class:`DeviceFrames` instead uploads each frame once; the native CUDA kernels
(``flipnet_rt._native``, issue 17) warp the crops out of it into the engine's input, colour-fix the
restorations against those crops and paste them back, all on the device; the restored frame
comes back in one download (issue 16: the frame stays on the device between decode and encode).

Kernels are queued on the array library's *current* stream (CuPy's or torch's): the GPU backends
order their own stream after it on entry and it after theirs on exit (:mod:`flipnet_rt.backends.cuda`),
so no host synchronisation happens until the download. That includes the check that the engine gave
no NaN: each batch leaves a flag on the device (:meth:`FrameKernels.to_faces` with ``nan``), read once
with the frames (:meth:`FrameKernels.check_nan`), so the next batch's upload and warp overlap the engine.

Only faces whose crop side S equals the model's resolution R take this path (no resize, no
keep-detail); :class:`~.pipeline.FaceRestorer` sends a call holding a larger face the host way.

One interface, :class:`FrameKernels`, three implementations chosen once per backend
(:func:`frame_kernels`): :class:`HostKernels` (numpy, :mod:`flipnet_rt.imaging.native`'s host kernels; how
the flow is tested without a GPU, and what ``frame_path="device"`` means on a CPU backend),
:class:`TorchKernels` and :class:`CupyKernels` (device arrays, the CUDA kernels).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config.options import Mode
from ..imaging import native
from . import kernels
from .retinaface import Candidates, candidates, padded
from .types import BorderMode

if TYPE_CHECKING:
    from ..backends.base import ArrayKind, Backend
    from ..config.options import SamplingOptions
    from ..runtime.core import DiffusionCore
    from .fidelity import FidelityChooser
    from .retinaface import RetinaFaceDetector
    from .types import Face

Array = Any  # numpy.ndarray | torch.Tensor | cupy.ndarray

#: The error for an engine output holding NaN on the device paths (raised by to_faces or check_nan).
NAN_MESSAGE = "to_uint8: the model's output contains NaN (a numerically broken engine: rebuild it, or run in fp32)"


class FrameKernels(ABC):
    """The per-frame work around the engine on one kind of array.

    Frames are ``uint8 [H, W, 3]``; crops and restorations ``float32 [N, 3, R, R]`` in [-1, 1];
    faces ``uint8 [N, R, R, 3]``; affines ``[N, 2, 3]`` frame -> crop, on the host.
    """

    @abstractmethod
    def upload(self, frame: np.ndarray) -> Array:
        """A host frame -> a frame this path may paste into (never the caller's array)."""

    @abstractmethod
    def download(self, frame: Array) -> np.ndarray:
        """The frame on the host (waits for the queued work)."""

    @abstractmethod
    def crops(self, frame: Array, affines: np.ndarray, size: int, border: BorderMode) -> Array:
        """The aligned crops, ``float32 [N, 3, size, size]``: ``to_float(warp_faces(...))``."""

    @abstractmethod
    def detector_input(self, frames: Sequence[Array], size: tuple[int, int], pad: tuple[int, int]) -> Array:
        """Same-sized frames -> the face detector's input ``float32 [B, 3, pad]``: each frame resized
        to ``size`` (``(h, w)``), BGR minus the mean, zero-padded at the bottom and right, as
        :func:`flipnet_rt.faces.retinaface.preprocess` makes it on the host."""

    @abstractmethod
    def candidates(self, outputs: dict[str, Array], threshold: float) -> list[Candidates]:
        """The detector's outputs (``loc``, ``conf``, ``landmarks`` arrays here) -> per frame, the rows
        whose face score is above ``threshold``, gathered here and then brought to the host (a few
        hundred rows, not the ~40,000 of a 720p frame): :func:`flipnet_rt.faces.retinaface.candidates`."""

    @abstractmethod
    def cast(self, images: Array, like: Array) -> Array:
        """``images`` in ``like``'s floating dtype (the engine's feeds: float16 on a float16 torch backend)."""

    @abstractmethod
    def float32(self, images: Array) -> Array:
        """The engine's output as ``float32`` (a float16 engine's output is cast)."""

    @abstractmethod
    def color_fix(self, images: Array, reference: Array, levels: int) -> Array:
        """The wavelet colour fix (:func:`flipnet_rt.imaging.colour.wavelet_color_fix`), float32."""

    @abstractmethod
    def to_faces(self, images: Array, nan: list | None = None) -> Array:
        """``float32 [N, 3, R, R]`` -> ``uint8 [N, R, R, 3]`` as :func:`flipnet_rt.imaging.tensor.to_uint8`
        (clip, ``(x + 1) * 127.5``, round half to even); NaN is an error.

        With ``nan`` None the error is raised here (on a device: after waiting for ``images``). Given
        a list, a device path does not wait: it appends a flag, kept on the device, that ``images``
        holds NaN, and :meth:`check_nan` raises the error later; the host path raises here anyway.
        """

    def check_nan(self, flags: list) -> None:
        """Raise ``ValueError(NAN_MESSAGE)`` if a flag that :meth:`to_faces` appended is set. Waits
        for the flags: call it once, where the frames are downloaded (the host path has none)."""
        if any(bool(flag) for flag in flags):
            raise ValueError(NAN_MESSAGE)

    @abstractmethod
    def to_pixels(self, faces: Array) -> Array:
        """``uint8 [N, R, R, 3]`` (or float32 holding whole grey levels) -> ``float32 [N, 3, R, R]`` as
        :func:`flipnet_rt.imaging.tensor.to_float`."""

    @abstractmethod
    def blend(self, crops: Array, faces: Array, weights: Any) -> Array:
        """``uint8 [N, R, R, 3]``: each face blended with its input crop by its fidelity weight, as
        :func:`flipnet_rt.faces.fidelity.blend` (``weights``: ``[N]``, host or device, any float dtype)."""

    @abstractmethod
    def paste(self, frame: Array, faces: Array, affines: np.ndarray) -> None:
        """Paste ``faces`` into ``frame`` in place, in order (the later face wins an overlap)."""


class HostKernels(FrameKernels):
    """numpy arrays in host memory: :mod:`flipnet_rt.imaging.native`'s functions (each the faster of the
    C++ kernel and its OpenCV/numpy reference on the CPU)."""

    def upload(self, frame: np.ndarray) -> np.ndarray:
        return frame.copy()  # C-contiguous, as the native kernels want

    def download(self, frame: np.ndarray) -> np.ndarray:
        return frame

    def crops(self, frame: np.ndarray, affines: np.ndarray, size: int, border: BorderMode) -> np.ndarray:
        return kernels.warp_crop(frame, list(affines), size, border)

    def candidates(self, outputs: dict[str, np.ndarray], threshold: float) -> list[Candidates]:
        return candidates(outputs["loc"], outputs["conf"], outputs["landmarks"], threshold)

    def detector_input(self, frames: Sequence[np.ndarray], size: tuple[int, int], pad: tuple[int, int]) -> np.ndarray:
        from .retinaface import network_input

        x = network_input(frames, size)
        if x.shape[2:] != tuple(pad):
            raise ValueError(f"detector_input: {x.shape[2:]} is not the expected {tuple(pad)}")
        return x

    def cast(self, images: np.ndarray, like: np.ndarray) -> np.ndarray:
        return images.astype(like.dtype, copy=False)

    def float32(self, images: Any) -> np.ndarray:
        return np.asarray(images, np.float32)

    def color_fix(self, images: np.ndarray, reference: np.ndarray, levels: int) -> np.ndarray:
        return native.wavelet_color_fix(images, reference, levels)

    def to_faces(self, images: np.ndarray, nan: list | None = None) -> np.ndarray:
        from ..imaging.tensor import to_uint8  # raises on NaN at once: nothing to overlap on the host

        return to_uint8(images)

    def to_pixels(self, faces: np.ndarray) -> np.ndarray:
        from ..imaging.tensor import to_float

        return to_float(faces.astype(np.uint8, copy=False))  # float faces hold whole grey levels

    def blend(self, crops: np.ndarray, faces: np.ndarray, weights: Any) -> np.ndarray:
        from .fidelity import blend

        return np.stack([blend(c, f, float(w)) for c, f, w in zip(crops, faces, np.asarray(weights, np.float32))])

    def paste(self, frame: np.ndarray, faces: np.ndarray, affines: np.ndarray) -> None:
        kernels.paste_faces(frame, list(faces), list(affines), inplace=True)


class _CudaKernels(FrameKernels):
    """Device arrays and the native CUDA kernels, on the library's current stream."""

    def __init__(self, kernels: Any) -> None:
        self.nat = kernels  # flipnet_rt._native built with CUDA
        # the detector input's resize matrices on the device, uploaded once per size (a video's two)
        self.resize_matrix = functools.lru_cache(maxsize=8)(self._upload_resize)

    @abstractmethod
    def _upload_resize(self, source: int, target: int) -> Array:
        """:func:`~.retinaface.resize_weights` on the kernels' device."""

    @abstractmethod
    def _stream(self, like: Array) -> int:
        """The library's current ``cudaStream_t`` on ``like``'s device."""

    @abstractmethod
    def _empty(self, like: Array, shape: tuple[int, ...], dtype: str) -> Array: ...

    def crops(self, frame: Array, affines: np.ndarray, size: int, border: BorderMode) -> Array:
        code, value = kernels.border_args(border)
        out = self._empty(frame, (len(affines), 3, size, size), "float32")
        self.nat.warp_crop_cuda(frame, kernels.affine_matrices(affines), out, code, value, self._stream(frame))
        return out

    def color_fix(self, images: Array, reference: Array, levels: int) -> Array:
        out = self._empty(images, tuple(images.shape), "float32")
        self.nat.wavelet_color_fix_cuda(images, reference, out, int(levels), self._stream(images))
        return out

    def paste(self, frame: Array, faces: Array, affines: np.ndarray) -> None:
        self.nat.paste_faces_cuda(frame, faces, kernels.affine_matrices(affines), self._stream(frame))


class TorchKernels(_CudaKernels):
    """torch CUDA tensors (the torch backend; the GPU backends without CuPy)."""

    def __init__(self, kernels: Any, device: Any) -> None:
        import torch

        super().__init__(kernels)
        self.torch, self.device = torch, torch.device(device)

    def upload(self, frame: np.ndarray) -> Array:
        return self.torch.from_numpy(np.ascontiguousarray(frame, np.uint8)).to(self.device, copy=True)

    def download(self, frame: Array) -> np.ndarray:
        return frame.cpu().numpy()

    def cast(self, images: Array, like: Array) -> Array:
        return images.to(like.dtype)

    def candidates(self, outputs: dict[str, Array], threshold: float) -> list[Candidates]:
        out = []
        for b in range(outputs["conf"].shape[0]):
            scores = outputs["conf"][b, :, 1].float()
            idx = self.torch.nonzero(scores > threshold).flatten()
            rows = (idx, scores[idx], outputs["loc"][b, idx], outputs["landmarks"][b, idx])
            host = tuple(t.cpu().numpy() for t in rows)
            out.append((host[0].astype(np.int64), host[1], host[2], host[3]))
        return out

    def _upload_resize(self, source: int, target: int) -> Array:
        from .retinaface import resize_weights

        return self.torch.tensor(resize_weights(source, target), device=self.device)  # a copy: it is read-only

    def detector_input(self, frames: Sequence[Array], size: tuple[int, int], pad: tuple[int, int]) -> Array:
        from .retinaface import MEAN_BGR

        torch = self.torch
        batch = torch.stack(list(frames)).to(torch.float32).flip(-1).permute(0, 3, 1, 2)  # [B, 3, H, W], BGR
        height, width = batch.shape[2:]
        if (height, width) != tuple(size):  # separable resize: rows then columns, as two matrix products
            batch = self.resize_matrix(height, size[0]) @ batch @ self.resize_matrix(width, size[1]).T
        mean = torch.from_numpy(MEAN_BGR).to(batch.device).view(1, 3, 1, 1)
        out = torch.zeros((batch.shape[0], 3, *pad), dtype=torch.float32, device=batch.device)
        out[:, :, : size[0], : size[1]] = batch - mean
        return out

    def float32(self, images: Array) -> Array:
        return images.float().contiguous()

    def to_faces(self, images: Array, nan: list | None = None) -> Array:
        flag = self.torch.isnan(images).any()  # a device scalar: no wait
        if nan is not None:
            nan.append(flag)
        elif bool(flag):
            raise ValueError(NAN_MESSAGE)
        scaled = ((images.clamp(-1, 1) + 1) * 127.5).round()  # torch.round: half to even, as np.rint
        return scaled.to(self.torch.uint8).permute(0, 2, 3, 1).contiguous()

    def check_nan(self, flags: list) -> None:
        if flags and bool(self.torch.stack(flags).any()):  # one wait, for every batch's flag
            raise ValueError(NAN_MESSAGE)

    def to_pixels(self, faces: Array) -> Array:
        return (faces.permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous()

    def blend(self, crops: Array, faces: Array, weights: Any) -> Array:
        torch = self.torch
        w = weights if torch.is_tensor(weights) else torch.from_numpy(np.asarray(weights, np.float32))
        w = w.to(faces.device, torch.float32).view(-1, 1, 1, 1)
        mixed = w * crops.float() + (1.0 - w) * faces.float()  # as fidelity.blend, in float32
        return mixed.round().clamp(0, 255).to(torch.uint8).contiguous()

    def _stream(self, like: Array) -> int:
        return int(self.torch.cuda.current_stream(like.device).cuda_stream)

    def _empty(self, like: Array, shape: tuple[int, ...], dtype: str) -> Array:
        return self.torch.empty(shape, dtype=getattr(self.torch, dtype), device=like.device)


class CupyKernels(_CudaKernels):
    """CuPy arrays (TensorRT and ONNX Runtime CUDA with CuPy installed)."""

    def __init__(self, kernels: Any, device_index: int) -> None:
        import cupy

        super().__init__(kernels)
        self.cupy, self.device_index = cupy, device_index

    def upload(self, frame: np.ndarray) -> Array:
        with self.cupy.cuda.Device(self.device_index):
            return self.cupy.asarray(np.ascontiguousarray(frame, np.uint8))

    def download(self, frame: Array) -> np.ndarray:
        return self.cupy.asnumpy(frame)

    def cast(self, images: Array, like: Array) -> Array:
        return images.astype(like.dtype, copy=False)

    def candidates(self, outputs: dict[str, Array], threshold: float) -> list[Candidates]:
        cp, out = self.cupy, []
        with cp.cuda.Device(self.device_index):
            for b in range(outputs["conf"].shape[0]):
                scores = outputs["conf"][b, :, 1].astype(cp.float32)
                idx = cp.flatnonzero(scores > threshold)
                rows = (idx, scores[idx], outputs["loc"][b, idx], outputs["landmarks"][b, idx])
                host = tuple(cp.asnumpy(a) for a in rows)
                out.append((host[0].astype(np.int64), host[1], host[2], host[3]))
        return out

    def _upload_resize(self, source: int, target: int) -> Array:
        from .retinaface import resize_weights

        with self.cupy.cuda.Device(self.device_index):
            return self.cupy.asarray(resize_weights(source, target))

    def detector_input(self, frames: Sequence[Array], size: tuple[int, int], pad: tuple[int, int]) -> Array:
        from .retinaface import MEAN_BGR

        cp = self.cupy
        with cp.cuda.Device(self.device_index):
            batch = cp.stack(list(frames)).astype(cp.float32)[..., ::-1].transpose(0, 3, 1, 2)  # [B, 3, H, W]
            height, width = batch.shape[2:]
            if (height, width) != tuple(size):  # separable resize: rows then columns, as two matrix products
                batch = self.resize_matrix(height, size[0]) @ batch @ self.resize_matrix(width, size[1]).T
            out = cp.zeros((batch.shape[0], 3, *pad), cp.float32)
            out[:, :, : size[0], : size[1]] = batch - cp.asarray(MEAN_BGR).reshape(1, 3, 1, 1)
            return out

    def float32(self, images: Array) -> Array:
        return self.cupy.ascontiguousarray(images, self.cupy.float32)

    def to_faces(self, images: Array, nan: list | None = None) -> Array:
        cp = self.cupy
        with cp.cuda.Device(images.device.id):
            flag = cp.isnan(images).any()  # a device scalar: no wait
            if nan is not None:
                nan.append(flag)
            elif bool(flag):
                raise ValueError(NAN_MESSAGE)
            scaled = cp.rint((cp.clip(images, -1, 1) + 1) * cp.float32(127.5))
            return cp.ascontiguousarray(scaled.astype(cp.uint8).transpose(0, 2, 3, 1))

    def to_pixels(self, faces: Array) -> Array:
        cp = self.cupy
        with cp.cuda.Device(faces.device.id):
            return cp.ascontiguousarray(
                faces.transpose(0, 3, 1, 2).astype(cp.float32) / cp.float32(127.5) - cp.float32(1.0)
            )

    def blend(self, crops: Array, faces: Array, weights: Any) -> Array:
        cp = self.cupy
        with cp.cuda.Device(faces.device.id):
            w = cp.asarray(weights).astype(cp.float32).reshape(-1, 1, 1, 1)
            mixed = w * crops.astype(cp.float32) + (cp.float32(1.0) - w) * faces.astype(cp.float32)
            return cp.ascontiguousarray(cp.clip(cp.rint(mixed), 0, 255).astype(cp.uint8))

    def _stream(self, like: Array) -> int:
        with self.cupy.cuda.Device(like.device.id):
            return int(self.cupy.cuda.get_current_stream().ptr)

    def _empty(self, like: Array, shape: tuple[int, ...], dtype: str) -> Array:
        with self.cupy.cuda.Device(like.device.id):
            return self.cupy.empty(shape, dtype=dtype)


def kernels_for(library: str, device: str, cuda_kernels: bool) -> str | None:
    """Which CUDA kernels run device arrays of ``library`` ("torch", "cupy") on ``device`` ("cpu",
    "cuda"): "torch", "cupy", or None (torch on the CPU, an unknown library, no CUDA kernels built)."""
    if device != "cuda" or not cuda_kernels:
        return None
    return library if library in ("torch", "cupy") else None


def frame_kernels(backend: Backend) -> FrameKernels | None:
    """The kernels for ``backend``'s arrays (its :attr:`~flipnet_rt.backends.base.Backend.array_kind`):
    :class:`HostKernels` for numpy arrays (ONNX Runtime on the CPU), :class:`TorchKernels`/:class:`CupyKernels`
    for CUDA arrays when ``flipnet_rt._native`` has CUDA kernels (build it with ``FLIPNET_CUDA=ON``;
    :func:`kernels_for`), else None."""
    arrays = backend.array_kind
    return HostKernels() if arrays.library == "numpy" else _cuda_kernels(arrays)


def _cuda_kernels(arrays: ArrayKind) -> FrameKernels | None:
    """:func:`frame_kernels` for arrays that are not numpy (GPU only: tests/faces/test_device_gpu.py)."""
    nat = native.module()
    device, _, index = arrays.device.partition(":")
    kind = kernels_for(arrays.library, device, nat is not None and bool(getattr(nat, "cuda", False)))
    if kind == "torch":
        return TorchKernels(nat, arrays.device)
    if kind == "cupy":
        return CupyKernels(nat, int(index or 0))
    return None


class DeviceFrames:
    """Restores whole frames on one restorer's device (see the module's docstring).

    Args:
        core: the restorer's :class:`~flipnet_rt.runtime.core.DiffusionCore` (run on its backend's arrays).
        kernels: :func:`frame_kernels` of its backend.
        border: how the warp fills outside the frame.
        max_batch: most faces per core call (0: all).
        fidelity: each face's weight of its input (:class:`~.fidelity.FidelityChooser`; None: none).
    """

    def __init__(
        self,
        core: DiffusionCore,
        kernels: FrameKernels,
        border: BorderMode,
        max_batch: int,
        fidelity: FidelityChooser | None = None,
    ) -> None:
        self.core = core
        self.fidelity = fidelity if fidelity is not None and fidelity.blends else None
        self.resolution = int(core.config.resolution)
        self.kernels = kernels
        self.border = BorderMode(border)
        self.max_batch = max_batch
        # the feeds' dtype: from_numpy's float32 on every backend (each network casts to its own)
        self._feed = self.core.backend.from_numpy(np.zeros((1,), np.float32))

    def detect(
        self, images: Sequence[np.ndarray], detector: RetinaFaceDetector
    ) -> tuple[list[list[Face]], list[Array]]:
        """Upload the frames and find their faces there: resized on the device
        (:meth:`FrameKernels.detector_input`), the engine's detector network on its backend, the rows
        above the score threshold gathered there (:meth:`FrameKernels.candidates`); only those come
        back to be decoded and suppressed (a few hundred rows; the second look's few windows are cut
        from the host frames).
        Returns the faces and the uploaded frames, for :meth:`restore` (``frames=``)."""
        k, core = self.kernels, self.core
        frames = [k.upload(image) for image in images]
        if not frames:
            return [], []
        height, width = images[0].shape[:2]
        size = detector.input_size(height, width)
        x = k.detector_input(frames, size, (padded(size[0]), padded(size[1])))
        rows = k.candidates(core.detect_device(x), detector.config.score_threshold)  # gathered on the device
        found = detector.decode_candidates(rows, x.shape[2:], (size[1] / width, size[0] / height))
        return detector.confirm(images, found), frames

    def restore(
        self,
        images: Sequence[np.ndarray],
        affines: Sequence[np.ndarray | Sequence[np.ndarray]],
        seeds: Sequence[Sequence[int]],
        sampling: SamplingOptions,
        stabilise: tuple[Any, Sequence[int], Sequence[int]] | None = None,
        frames: Sequence[Array] | None = None,
    ) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Restore faces of whole frames.

        Args:
            images: ``uint8 [H, W, 3]`` frames.
            affines: per frame, ``[n_i, 2, 3]`` frame -> crop affines at the model's resolution, in
                paste order (a later face wins an overlap); ``n_i`` may be 0.
            seeds: per frame, one seed per face.
            sampling: the core's ``SamplingOptions``.
            stabilise: ``(CropStabiliser, track per face, frame index per face)`` in the faces' flat
                order, or None: each crop is replaced by its track's running mean
                (:mod:`flipnet_rt.video.stabilise`), kept on the device, before the engine sees it.
            frames: the images already uploaded (:meth:`detect`), pasted into in place; None (or a None
                entry) uploads them (that one).

        Returns:
            The restored frames (new arrays; pixels outside every paste mask are the input's) and each
            face's fidelity weight, ``float32 [sum n_i]`` in the faces' order (None when nothing is
            blended); the weights come to the host with the frames.
        """
        k, core, r = self.kernels, self.core, self.resolution
        nan: list = []  # to_faces' device-side NaN flags, checked once with the download
        given = list(frames) if frames is not None else [None] * len(images)
        frames = [k.upload(image) if frame is None else frame for image, frame in zip(images, given)]
        mats = [np.asarray(a, np.float64).reshape(-1, 2, 3) for a in affines]
        crops = [k.crops(frame, a, r, self.border) for frame, a in zip(frames, mats) if len(a)]
        flat_seeds = [int(s) for per in seeds for s in per]
        if not crops:
            return [k.download(frame) for frame in frames], None
        be = core.backend
        pixels = crops[0] if len(crops) == 1 else be.concat(crops)
        if stabilise is not None:  # video: the crops filtered along their tracks, as the host path's
            stabiliser, tracks, frame_ids = stabilise
            exact = k.to_faces(pixels, nan)  # uint8 [N, R, R, 3]: the host path's aligned crops
            means = [stabiliser.update(t, k.float32(exact[i]), f) for i, (t, f) in enumerate(zip(tracks, frame_ids))]
            pixels = k.to_pixels(be.concat([m.round().clip(0.0, 255.0)[None] for m in means]))
        faces, weights = [], []
        step = self.max_batch or len(flat_seeds)
        for start in range(0, len(flat_seeds), step):
            batch = pixels[start : start + step]
            feed = k.cast(batch, self._feed)
            out = k.float32(core.run_device(feed, Mode.RESTORE, sampling, flat_seeds[start : start + step]))
            if sampling.color_fix:
                out = k.color_fix(out, batch, sampling.color_fix)
            restored = k.to_faces(out, nan)
            if self.fidelity is not None:  # fidelity.py: the blend with the input crop, before the paste
                if self.fidelity.estimates:
                    w = core.fidelity_device(feed, k.cast(k.to_pixels(restored), self._feed))
                else:
                    w = np.full(len(restored), self.fidelity.fidelity, np.float32)
                restored = k.blend(k.to_faces(batch, nan), restored, w)
                weights.append(w)
            faces.append(restored)
        faces = faces[0] if len(faces) == 1 else be.concat(faces)
        start = 0
        for frame, a in zip(frames, mats):
            if len(a):  # faces are in the frames' order, each frame's in paste order
                k.paste(frame, faces[start : start + len(a)], a)
                start += len(a)
        out = [k.download(frame) for frame in frames]
        k.check_nan(nan)  # the work is done by now: reading the flags waits for nothing more
        if not weights:
            return out, None
        return out, np.concatenate(
            [
                np.asarray(be.to_numpy(w) if not isinstance(w, np.ndarray) else w, np.float32).reshape(-1)
                for w in weights
            ]
        )
