# Long module: FaceRestorer's steps (select, align, restore, blend, paste), host and device paths, in one place.
"""Restore every face of whole images: detect, align, restore in one batch, paste back (DESIGN §6).

:class:`FaceRestorer` wraps a :class:`flipnet_rt.runtime.restorer.Restorer`, or anything with the calls of
:class:`RestorerLike` (``config.resolution``, ``options(**overrides)``, ``restore(list of uint8
[R, R, 3], options, seeds)`` and the fidelity estimator's two). Per face:

1. affine ``A_R`` to the FFHQ template at the model's resolution R (:func:`~.align.estimate_affine`);
   the crop covers ``E = R / scale(A_R)`` image pixels (:func:`~.align.face_extent`);
2. crop side ``S = R`` when ``E <= R``, else ``min(ceil(E), max_crop)`` (the face at its own
   resolution), warped with ``A_S = A_R · S / R`` and shrunk to R (``INTER_AREA``) for the model;
3. all model inputs of all images go to ``Restorer.restore`` as one batch (or in calls of
   ``max_batch`` faces), each with its own seed (:func:`face_seed`); the restorer's wavelet colour
   fix (``color_fix`` in the sampling options) works per face against its model input;
4. back at S: keep-detail (:func:`~.detail.keep_detail`) when ``S / R >= keep_detail_ratio``, else the
   restoration resized (:func:`~.detail.upsample_restored`), then blended with the aligned input by
   the face's fidelity weight W (:mod:`.fidelity`: ``--fidelity W|auto``; auto asks the model's
   estimator, batched like the faces);
5. pasted (:func:`~.paste.paste_faces`) by ascending box area, then index: the larger face wins
   an overlap. Pixels outside every face's mask are untouched.

With ``frame_path`` device (:mod:`.device`), a call whose faces all have ``S = R`` (and no given
``aligned`` crops) runs the warp and steps 3-5 on the engine's device instead (steps 1-2 are planned
on the host; at ``S = R`` step 4 is the blend alone): each image uploaded once, warped, restored,
colour-fixed, blended and pasted there, downloaded once; other calls take the host path above.
That path runs on a Restorer's own :class:`~flipnet_rt.runtime.core.DiffusionCore` (:func:`restorer_core`),
as the default detector runs on its backend's device; any other :class:`RestorerLike` gets the
host path from ``auto`` (``device`` refuses it), its detector the CPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..config.options import image_seed
from .align import estimate_affine, face_extent, rescale_affine, warp_faces
from .detail import KEEP_DETAIL_RATIO, downsample, keep_detail, upsample_restored
from .fidelity import AUTO, Estimates, FidelityChooser, Weights, blend, parse_fidelity
from .paste import paste_faces
from .retinaface import RetinaFaceDetector
from .types import BorderMode, Face, FaceDetector, FaceResult, FramePath

if TYPE_CHECKING:
    from ..config.model import FlipnetConfig
    from ..config.options import SamplingOptions
    from ..imaging.geometry import Placement
    from ..runtime.core import DiffusionCore
    from .device import DeviceFrames

log = logging.getLogger(__name__)


class RestorerLike(Estimates, Protocol):
    """What :class:`FaceRestorer` needs from a restorer: :class:`flipnet_rt.runtime.restorer.Restorer` has it,
    and so do stand-ins (tests) and :class:`CropRestorer`. Only ``config.resolution`` is read; the
    fidelity estimator's ``has_fidelity``/``fidelity`` are :class:`~.fidelity.Estimates`'."""

    @property
    def config(self) -> FlipnetConfig: ...

    def options(self, **overrides: object) -> SamplingOptions: ...

    def restore(
        self, images: Sequence[np.ndarray], options: SamplingOptions | None = None, seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]: ...


def restorer_core(restorer: RestorerLike) -> DiffusionCore | None:
    """The :class:`~flipnet_rt.runtime.core.DiffusionCore` behind ``restorer`` when it is a
    :class:`flipnet_rt.runtime.restorer.Restorer` (the device frame path runs on it, the default detector on
    its backend's device); None for any other :class:`RestorerLike`."""
    from ..runtime.restorer import Restorer

    return restorer.core if isinstance(restorer, Restorer) else None


def _planned(result: FaceResult, value: np.ndarray | None) -> np.ndarray:
    """``value``, one of ``result``'s ``affine``/``aligned``/``output``: set by the step that planned,
    aligned or restored the face, before any later step reads it."""
    if value is None:
        raise RuntimeError(f"face {result.index}: read before the step that sets it ({result.reason or 'planned'})")
    return value


def face_seed(seed: int, index: int) -> int:
    """The seed of face ``index`` of an image whose seed is ``seed`` (stable across runs and batches)."""
    return image_seed(seed, index)


@dataclass(frozen=True)
class FaceOptions:
    """What :class:`FaceRestorer` does around the model.

    Attributes:
        max_faces: restore at most this many faces per image, the largest boxes first (0: all).
        min_face_size: skip faces whose box's shorter side is below this (px; 0: none skipped).
        only_center_face: restore only the face whose box centre is nearest the image centre.
        keep_detail: keep the input's detail above the model's band for faces larger than it.
        keep_detail_ratio: ... when the face's crop side S over the model's R is at least this.
        border: how alignment fills outside the image. ``reflect`` (default) restores better than
            facexlib's grey ``constant``: 300 lfw/val faces cut to their 150-px box (their FFHQ crop
            runs ~10 px past it), training degradation, demo engine: PSNR/SSIM vs HQ 20.74/0.5351
            with reflect, 20.30/0.5147 with constant (LQ 20.49/0.5113); tests/faces/test_border.py.
        max_crop: cap on S (px), bounding the memory of huge faces.
        max_batch: most faces per core call (0: all faces of a call in one batch). Results do not
            depend on it (every face has its own seed); it bounds memory when many images come at once.
        fidelity: how much of each input face the output keeps (:mod:`.fidelity`): a weight in [0, 1]
            (0: the restoration, 1: the input) or ``"auto"``, the model's estimator per face.
    """

    max_faces: int = 0
    min_face_size: float = 0.0
    only_center_face: bool = False
    keep_detail: bool = True
    keep_detail_ratio: float = KEEP_DETAIL_RATIO
    border: BorderMode = BorderMode.REFLECT
    max_crop: int = 2048
    max_batch: int = 0
    fidelity: float | str = AUTO

    def __post_init__(self) -> None:
        object.__setattr__(self, "border", BorderMode(self.border))
        object.__setattr__(self, "fidelity", parse_fidelity(self.fidelity))
        if self.max_faces < 0:
            raise ValueError(f"max_faces: {self.max_faces}; use 0 (all) or a positive cap")
        if self.min_face_size < 0:
            raise ValueError(f"min_face_size: {self.min_face_size}; use 0 or a size in pixels")
        if self.keep_detail_ratio < 1.0:
            raise ValueError(f"keep_detail_ratio: {self.keep_detail_ratio} must be >= 1")
        if self.max_batch < 0:
            raise ValueError(f"max_batch: {self.max_batch}; use 0 (one batch) or a positive size")
        if self.max_crop < 16:
            raise ValueError(f"max_crop: {self.max_crop} px is too small")


def select_faces(faces: Sequence[Face], height: int, width: int, options: FaceOptions) -> list[str]:
    """Why each face is skipped (``""``: restored), by ``min_face_size``, ``only_center_face``,
    ``max_faces`` in that order."""
    reasons = [
        "" if f.size >= options.min_face_size else f"smaller than min_face_size {options.min_face_size:g}"
        for f in faces
    ]
    alive = [i for i, r in enumerate(reasons) if not r]
    if options.only_center_face and alive:
        centre = np.array([width / 2.0, height / 2.0])
        dist = [float(np.linalg.norm((faces[i].box[:2] + faces[i].box[2:]) / 2 - centre)) for i in alive]
        keep = alive[int(np.argmin(dist))]
        for i in alive:
            if i != keep:
                reasons[i] = "not the centre face (only_center_face)"
        alive = [keep]
    if options.max_faces and len(alive) > options.max_faces:
        by_area = sorted(alive, key=lambda i: (-_area(faces[i]), i))
        for i in by_area[options.max_faces :]:
            reasons[i] = f"over max_faces {options.max_faces} (smaller than the first {options.max_faces})"
    return reasons


def _area(face: Face) -> float:
    return float((face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))


def _paste_order(results: Sequence[FaceResult]) -> list[FaceResult]:
    """The restored faces by ascending box area, then index: the larger face is pasted last and wins."""
    return sorted((r for r in results if r.restored), key=lambda r: (_area(r.face), r.index))


class FaceRestorer:
    """Whole images in, whole images out: every face restored by ``restorer`` and pasted back.

    Args:
        restorer: a :class:`RestorerLike`: a :class:`flipnet_rt.runtime.restorer.Restorer` or a stand-in.
        detector: a :class:`~.types.FaceDetector`; None loads the default (RetinaFace) on first use,
            on the Restorer's backend where its engine has the detector network, else the shipped
            ONNX file on ONNX Runtime (on the Restorer's device where its CUDA provider runs).
        options: :class:`FaceOptions`.
        sampling: the core's ``SamplingOptions`` (None: ``restorer.options()``).
        frame_path: :class:`~.types.FramePath`, chosen here once: ``host`` (default); ``device``
            (needs a :class:`~flipnet_rt.runtime.restorer.Restorer` on ONNX Runtime CPU, or on a GPU backend
            with the native CUDA kernels; its results have no ``aligned``/``output`` crops);
            ``auto``: device on a GPU backend where it can run, else host.
    """

    def __init__(
        self,
        restorer: RestorerLike,
        detector: FaceDetector | None = None,
        options: FaceOptions | None = None,
        sampling: SamplingOptions | None = None,
        frame_path: FramePath | str = FramePath.HOST,
    ) -> None:
        self.restorer = restorer
        self.resolution = int(restorer.config.resolution)
        self._detector = detector
        self.options = options or FaceOptions()
        self.sampling = sampling if sampling is not None else restorer.options()
        self.fidelity = FidelityChooser(restorer, self.options.fidelity)
        self.device_frames = self._device_frames(FramePath(frame_path))

    def _device_frames(self, path: FramePath) -> DeviceFrames | None:
        """The :class:`~.device.DeviceFrames` of ``path`` over the restorer's core, or None (host)."""
        if path is FramePath.HOST:
            return None
        from .device import DeviceFrames, HostKernels, frame_kernels

        core = restorer_core(self.restorer)
        kernels = frame_kernels(core.backend) if core is not None else None
        if path is FramePath.AUTO and (kernels is None or isinstance(kernels, HostKernels)):
            return None
        if core is None or kernels is None:  # (kernels is None whenever core is)
            raise ValueError(
                "frame path device: needs a Restorer on ONNX Runtime CPU, or on a GPU backend with "
                "flipnet_rt._native built with CUDA kernels (FLIPNET_CUDA=ON pip install .); "
                "use --frame-path host"
            )
        return DeviceFrames(core, kernels, self.options.border, self.options.max_batch, self.fidelity)

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            from .detectors import load_detector
            from .onnx_session import providers_like

            core = restorer_core(self.restorer)
            self._detector = load_detector(
                providers=providers_like(core.backend if core is not None else None),
                network=core.detect_host if core is not None and core.has_detector else None,
            )
        return self._detector

    # ------------------------------------------------------------------ public API
    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detector.detect(image)

    def restore_image(self, image: np.ndarray, seed: int = 0) -> tuple[np.ndarray, list[FaceResult]]:
        """``uint8 [H, W, 3]`` -> (restored image of the same size, one result per detected face)."""
        return self.restore_images([image], [seed])[0]

    def restore_images(
        self, images: Sequence[np.ndarray], seeds: Sequence[int]
    ) -> list[tuple[np.ndarray, list[FaceResult]]]:
        """Detect in every image, then restore all their faces in one core batch.

        Face ``j`` of image ``i`` draws seed :func:`face_seed` ``(seeds[i], j)``. An image without
        faces comes back as a copy of itself with an empty list.
        """
        if len(seeds) != len(images):
            raise ValueError(f"seeds: {len(seeds)} given for {len(images)} images")
        uploaded = None
        if self._detects_on_device(images):  # the frames uploaded once: detected and restored there
            assert self.device_frames is not None and isinstance(self.detector, RetinaFaceDetector)
            faces, uploaded = self.device_frames.detect(images, self.detector)
        else:
            faces = [self.detect(img) for img in images]
        face_seeds = [[face_seed(int(s), j) for j in range(len(fs))] for s, fs in zip(seeds, faces)]
        return self.restore_faces(images, faces, face_seeds, uploaded=uploaded)

    def _detects_on_device(self, images: Sequence[np.ndarray]) -> bool:
        """Whether detection of ``images`` runs on the device frame path (:meth:`detects_on_device`,
        same-sized images). Else on the host."""
        return self.detects_on_device(self.detector) and len({image.shape for image in images}) == 1

    def detects_on_device(self, detector: FaceDetector) -> bool:
        """Whether ``detector`` can run on this restorer's device frame path: RetinaFace on this
        engine's own detector network (``restorer.detector_network()``)."""
        core = restorer_core(self.restorer)
        return (
            self.device_frames is not None
            and core is not None
            and core.has_detector
            and isinstance(detector, RetinaFaceDetector)
            and detector.network == core.detect_host
        )

    def aligned_crop(self, image: np.ndarray, face: Face) -> np.ndarray | None:
        """The aligned input crop ``uint8 [S, S, 3]`` that :meth:`restore_faces` would warp for
        ``face`` (None for degenerate landmarks): what video filters along a track
        (:mod:`flipnet_rt.video.stabilise`) and hands back as ``aligned``."""
        result = FaceResult(face=face, index=0, seed=0, restored=True)
        try:
            affine = self._plan(result)
        except ValueError:
            return None
        return warp_faces(image, [affine], result.crop_size, self.options.border)[0]

    def restore_faces(
        self,
        images: Sequence[np.ndarray],
        faces: Sequence[Sequence[Face]],
        seeds: Sequence[Sequence[int]],
        aligned: Sequence[Sequence[np.ndarray | None]] | None = None,
        tracks: Any | None = None,
        uploaded: Sequence[Any] | None = None,
    ) -> list[tuple[np.ndarray, list[FaceResult]]]:
        """Restore the given faces (e.g. tracked and smoothed ones) with the given per-face seeds.

        Args:
            images: ``uint8 [H, W, 3]`` each.
            faces: per image, its faces (their order is their index).
            seeds: per image, one seed per face.
            aligned: per image, per face, the crop to use as that face's input instead of warping
                one (:meth:`aligned_crop`'s size; e.g. filtered along a video track), or None.
                Given crops take the host path.
            tracks: a :class:`flipnet_rt.video.stabilise.TrackCrops` (video, calls in frame order):
                each face's crop is filtered along its track here, on the device frame path too.
            uploaded: the images as the device frame path uploaded them to detect
                (:meth:`~.device.DeviceFrames.detect`): restored there without a second upload.

        Returns:
            Per image: the new image (same size; pixels outside every paste mask are the input's)
            and one :class:`FaceResult` per face, in the given order.
        """
        if not (len(images) == len(faces) == len(seeds)):
            raise ValueError(f"restore_faces: {len(images)} images, {len(faces)} face lists, {len(seeds)} seed lists")
        results: list[list[FaceResult]] = []
        inputs, input_seeds, owners = [], [], []  # owners: (image index, result) of faces to restore
        for i, (image, fs, ss) in enumerate(zip(images, faces, seeds)):
            _check_image(image, i)
            if len(fs) != len(ss):
                raise ValueError(f"restore_faces: image {i} has {len(fs)} faces and {len(ss)} seeds")
            reasons = select_faces(fs, image.shape[0], image.shape[1], self.options)
            per_image = []
            for j, (face, seed, reason) in enumerate(zip(fs, ss, reasons)):
                result = FaceResult(face=face, index=j, seed=int(seed), restored=not reason, reason=reason)
                if not reason:
                    try:
                        self._plan(result)
                    except ValueError as exc:  # degenerate landmarks: this face only
                        log.warning("image %d face %d not restored: %s", i, j, exc)
                        result.restored, result.reason, result.affine = False, str(exc), None
                        per_image.append(result)
                        continue
                    owners.append((i, result))
                per_image.append(result)
            results.append(per_image)
        if (
            self.device_frames is not None
            and aligned is None
            and owners
            and all(r.crop_size == self.resolution for _, r in owners)
        ):
            return self._on_device(images, results, tracks, uploaded)
        for i, result in owners:
            given = aligned[i][result.index] if aligned is not None else None
            if given is None and tracks is not None:
                given = tracks.stabiliser(
                    tracks.tracks[i][result.index],
                    warp_faces(images[i], [_planned(result, result.affine)], result.crop_size, self.options.border)[0],
                    tracks.frames[i],
                )
            if given is not None and given.shape[:2] != (result.crop_size, result.crop_size):
                raise ValueError(
                    f"aligned: image {i} face {result.index} is {given.shape[1]}x{given.shape[0]}, "
                    f"its crop is {result.crop_size} px; use aligned_crop()"
                )
            inputs.append(self._align(images[i], result, given))
            input_seeds.append(result.seed)
        restored = self._core(inputs, input_seeds, self.sampling)
        weights = self._weights(inputs, restored)
        for (_, result), model_input, out, w in zip(owners, inputs, restored, weights.values):
            result.fidelity, result.fidelity_source = w, weights.source
            result.output = blend(_planned(result, result.aligned), self._back(result, model_input, out), w)
        return [(self._paste(image, rs), rs) for image, rs in zip(images, results)]

    def _on_device(
        self,
        images: Sequence[np.ndarray],
        results: list[list[FaceResult]],
        tracks: Any | None,
        uploaded: Sequence[Any] | None = None,
    ) -> list:
        """Every image's faces (all ``S = R``) restored and pasted on the engine's device, in paste order."""
        done = [_paste_order(rs) for rs in results]
        stabilise = None
        if tracks is not None:  # each face's track and frame, in the same flat order as its seed
            stabilise = (
                tracks.stabiliser,
                [tracks.tracks[i][r.index] for i, d in enumerate(done) for r in d],
                [tracks.frames[i] for i, d in enumerate(done) for _ in d],
            )
        assert self.device_frames is not None, "restore_faces takes this path only with device frames"
        out, weights = self.device_frames.restore(
            images,
            [[_planned(r, r.affine) for r in d] for d in done],
            [[r.seed for r in d] for d in done],
            self.sampling,
            stabilise,
            frames=uploaded,
        )
        flat = [r for d in done for r in d]
        chooser = self.fidelity
        source = "estimator" if chooser.estimates else "none" if chooser.fidelity == AUTO else "fixed"
        fixed = 0.0 if chooser.fidelity == AUTO else float(chooser.fidelity)  # auto without an estimator: 0
        values: Sequence[float] | np.ndarray = [fixed] * len(flat)
        if chooser.estimates:
            assert weights is not None, "the device frames estimated every face's weight"
            values = weights
        for r, w in zip(flat, values):
            r.fidelity, r.fidelity_source = float(w), source
        return list(zip(out, results))

    def restore_crops(
        self, crops: Sequence[np.ndarray], seeds: Sequence[int], sampling: SamplingOptions | None = None
    ) -> list[np.ndarray]:
        """Already-aligned face crops (``--aligned``), any size; the output has each input's size.

        Each crop is mirrored to a square (:func:`flipnet_rt.imaging.geometry.fit`). A crop whose
        longer side S is below ``keep_detail_ratio · R`` (or with keep-detail off) is resized to R
        (Lanczos, as ``Restorer.restore`` does) and its restoration back; a larger one is shrunk to R
        for the model (``INTER_AREA``) and brought back with :func:`~.detail.keep_detail`. Then each
        output is blended with its crop by the face's fidelity weight (:mod:`.fidelity`).
        ``sampling``: the core's options for this call (None: the restorer's).
        """
        outputs, weights = self.restore_crops_weighted(crops, seeds, sampling)
        return [blend(crop, out, w) for crop, out, w in zip(crops, outputs, weights.values)]

    def restore_crops_weighted(
        self, crops: Sequence[np.ndarray], seeds: Sequence[int], sampling: SamplingOptions | None = None
    ) -> tuple[list[np.ndarray], Weights]:
        """:meth:`restore_crops` before the blend: each crop's restoration at its own size (fidelity 0)
        and the weights the blend would use (``flipnet-rt eval --levels`` scores both from one run)."""
        from ..imaging.geometry import fit, unfit

        jobs: list[tuple[np.ndarray | None, Placement]] = []
        inputs: list[np.ndarray] = []
        for i, crop in enumerate(crops):
            _check_image(crop, i)
            side = max(crop.shape[:2])
            if not self.options.keep_detail or side < self.options.keep_detail_ratio * self.resolution:
                square, placement = fit(crop, self.resolution)
                jobs.append((None, placement))
                inputs.append(square)
                continue
            square, placement = fit(crop, side)
            square = downsample(square, min(side, self.options.max_crop))
            jobs.append((square, placement))
            inputs.append(downsample(square, self.resolution))
        sampling = sampling if sampling is not None else self.sampling
        restored = self._core(inputs, list(seeds), sampling)
        outputs = [
            unfit(out if square is None else keep_detail(square, out, model_input), placement)
            for (square, placement), model_input, out in zip(jobs, inputs, restored)
        ]
        return outputs, self._weights(inputs, restored)

    # ------------------------------------------------------------------ steps
    def _core(self, inputs: list[np.ndarray], seeds: list[int], sampling: SamplingOptions | None) -> list[np.ndarray]:
        """The restorer's restore over all ``inputs``: one call, or calls of ``max_batch`` faces."""
        step = self.options.max_batch or len(inputs)
        out: list[np.ndarray] = []
        for k in range(0, len(inputs), max(step, 1)):
            out.extend(self.restorer.restore(inputs[k : k + step], sampling, seeds[k : k + step]))
        return out

    def _weights(self, inputs: list[np.ndarray], restored: list[np.ndarray]) -> Weights:
        """Each face's fidelity weight; the estimator runs in calls of ``max_batch`` faces, as the core."""
        if not self.fidelity.estimates:
            return self.fidelity.weights(inputs, restored)
        step = max(self.options.max_batch or len(inputs), 1)
        values: list[float] = []
        for k in range(0, len(inputs), step):
            values.extend(self.fidelity.weights(inputs[k : k + step], restored[k : k + step]).values)
        return Weights(values, "estimator")

    def _plan(self, result: FaceResult) -> np.ndarray:
        """The face's affine (returned), crop side S and keep-detail choice (steps 1-2, without the warp)."""
        res = self.resolution
        affine = estimate_affine(result.face.landmarks, res)
        extent = face_extent(affine, res)
        size = res if extent <= res else min(math.ceil(extent), self.options.max_crop)
        result.affine = rescale_affine(affine, size / res)
        result.crop_size = size
        result.keep_detail = self.options.keep_detail and size / res >= self.options.keep_detail_ratio
        return result.affine

    def _align(self, image: np.ndarray, result: FaceResult, given: np.ndarray | None = None) -> np.ndarray:
        """The planned face's aligned crop (``given``, or warped; kept in the result) and the model's input."""
        if given is None:
            given = warp_faces(image, [_planned(result, result.affine)], result.crop_size, self.options.border)[0]
        result.aligned = given
        return downsample(given, self.resolution)

    def _back(self, result: FaceResult, model_input: np.ndarray, restored: np.ndarray) -> np.ndarray:
        if result.keep_detail:
            return keep_detail(_planned(result, result.aligned), restored, model_input)
        return upsample_restored(restored, result.crop_size)

    def _paste(self, image: np.ndarray, results: list[FaceResult]) -> np.ndarray:
        done = _paste_order(results)
        if not done:
            return image.copy()
        return paste_faces(image, [_planned(r, r.output) for r in done], [_planned(r, r.affine) for r in done])


class CropRestorer:
    """``Restorer``-shaped view of :meth:`FaceRestorer.restore_crops`: aligned crops of any size in,
    the same size out, keep-detail for large ones. Lets :func:`flipnet_rt.evaluation.scoring.evaluate` score
    at the input's own size (HQ faces prepared at that size instead of the model's)."""

    def __init__(self, pipeline: FaceRestorer) -> None:
        self.faces = pipeline
        self.restorer = pipeline.restorer
        self.config = self.restorer.config

    def options(self, **overrides: object) -> SamplingOptions:
        return self.restorer.options(**overrides)

    def restore(
        self, images: Sequence[np.ndarray], options: SamplingOptions | None = None, seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        if seeds is None:
            seeds = [image_seed(options.seed if options is not None else 0, i) for i in range(len(images))]
        return self.faces.restore_crops(images, seeds, options)


def _check_image(image: np.ndarray, index: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image {index}: expected a uint8 [H, W, 3] RGB array, got "
            f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', None)}; use load_image()"
        )
