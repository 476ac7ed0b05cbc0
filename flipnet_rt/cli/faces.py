"""The face options shared by ``restore`` (whole images) and ``video``, and the FaceRestorer they build."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..faces.detectors import DEFAULT_DETECTOR, DetectorKind
from ..faces.rotations import parse_angles
from .flags import choices

if TYPE_CHECKING:
    from ..config.options import SamplingOptions
    from ..faces.pipeline import FaceRestorer
    from ..runtime.restorer import Restorer


#: The detector's option fields in its errors (flags: :func:`~flipnet_rt.cli.flags.flag_of`).
DETECTOR_FIELDS = ("detect_size", "detect_angles", "thresholds")


def _thresholds(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one threshold")
    return values


def _angles(text: str) -> tuple[int, ...]:
    try:
        return parse_angles(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("detect_angles: ")) from None


def face_args(parser: argparse.ArgumentParser) -> None:
    """--detector and the face selection options (whole-image face restoration)."""
    g = parser.add_argument_group("faces (whole images and video)")
    g.add_argument(
        "--detector",
        choices=choices(DetectorKind),
        default=DEFAULT_DETECTOR.value,
        help="retinaface (default): one network pass per frame, on the restorer's backend; mtcnn: "
        "an image pyramid of small networks, slower on large frames but finds faces down to "
        "--min-face-size at any frame size; dlib: HOG on the CPU (the eval extra)",
    )
    g.add_argument(
        "--detect-size",
        type=int,
        metavar="PX",
        help="retinaface: the longer side the detector sees (default 1280; larger frames are "
        "shrunk to it, smaller ones kept): faces under about 45 * frame side / PX pixels are "
        "missed; smaller is faster",
    )
    g.add_argument(
        "--detect-angles",
        type=_angles,
        metavar="A,B,..",
        help="also look for faces turned by these clockwise angles, e.g. 0,90,180,270 for photos "
        "lying on their side (one detector pass per angle; default 0)",
    )
    g.add_argument(
        "--detect-thresholds",
        type=_thresholds,
        metavar="P,R,O",
        help="retinaface: the face probability kept (default 0.7); MTCNN's three stage thresholds "
        "(default 0.6,0.7,0.7; higher: fewer false faces, more missed ones); dlib: one SVM margin (default 0)",
    )
    g.add_argument(
        "--min-face-size",
        type=float,
        default=20.0,
        metavar="PX",
        help="smallest face searched and restored (box side, px)",
    )
    g.add_argument(
        "--max-faces", type=int, default=0, metavar="N", help="restore the N largest faces per image (0: all)"
    )
    g.add_argument("--only-center-face", action="store_true", help="restore only the face nearest the image's centre")
    keep_detail_arg(g)
    fidelity_arg(g)


def aligned_arg(group: argparse._ActionsContainer) -> None:
    """``--aligned`` (restore, cluster restore): the inputs are face crops."""
    group.add_argument(
        "--aligned",
        action="store_true",
        help="the inputs are face crops already aligned to the model's layout (no detection, "
        "no paste-back): each is restored as a whole",
    )


def keep_detail_arg(group: argparse._ActionsContainer) -> None:
    """``--no-keep-detail`` (restore, video, eval): ``FaceOptions.keep_detail``."""
    group.add_argument(
        "--no-keep-detail",
        dest="keep_detail",
        action="store_false",
        help="faces larger than the model's resolution (eval: --size above it) come back at the "
        "model's detail only, resized (default: the input's finer detail is kept; it also "
        "keeps the input's noise)",
    )


def fidelity_arg(group: argparse._ActionsContainer) -> None:
    """``--fidelity W|auto`` (restore, video, eval): checked where the face options are built."""
    group.add_argument(
        "--fidelity",
        default="auto",
        metavar="W|auto",
        help="how much of each input face the output keeps: a weight in [0, 1] (0: the model's "
        "output, 1: the input face), or auto (default): the model's fidelity estimator "
        "decides per face, so no face comes back worse than it went in",
    )


def build_face_restorer(
    args: argparse.Namespace, restorer: Restorer, sampling: SamplingOptions, frame_path: str = "host"
) -> FaceRestorer:
    """The FaceRestorer for these options over ``restorer`` (the detector on the restorer's device;
    ``frame_path``: :class:`~flipnet_rt.faces.types.FramePath`, ``video --frame-path``).

    Raises ValueError / FileNotFoundError / ImportError naming the fix (a usage error).
    """
    from ..faces.detectors import load_detector
    from ..faces.onnx_session import providers_like
    from ..faces.pipeline import FaceOptions, FaceRestorer

    detector = load_detector(
        args.detector,
        min_face_size=args.min_face_size,
        thresholds=args.detect_thresholds,
        providers=providers_like(restorer.backend),
        detect_size=args.detect_size,
        angles=args.detect_angles,
        network=restorer.detector_network() if args.detector == DetectorKind.RETINAFACE.value else None,
    )
    options = FaceOptions(
        max_faces=args.max_faces,
        min_face_size=args.min_face_size,
        only_center_face=args.only_center_face,
        keep_detail=args.keep_detail,
        max_batch=args.batch_size,
        fidelity=args.fidelity,
    )  # faces per engine call: bounds memory on crowded pictures
    return FaceRestorer(restorer, detector, options, sampling=sampling, frame_path=frame_path)
