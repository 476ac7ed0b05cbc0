"""Issue 29's detector comparison: RetinaFace MobileNet-0.25 (the default) against MTCNN, on the CPU.

    PYTHONPATH=. python benchmarks/detectors.py [--frames 30] [--rounds 5] [--data ../shared/data] [--out F]

* **Accuracy** on three generated sets of 1280x720 frames, 3 real ``lfw/val`` faces each (``--frames``
  frames per set, fixed seeds, no photo in two sets while 300 photos last), from
  ``tests/synthetic/faces.py``'s ``group_picture``:
  ``standard`` (eye distance 20-110 px, +-30 degrees: the recall test's setting), ``small`` (eye
  distance 8-20 px) and ``rotated`` (standard frames turned 90, 180 or 270 degrees clockwise, a third
  each; every detector also with the four quarter turns, ``angles="0,90,180,270"``). Per detector:
  recall and false positives per frame (``match_faces``, the tests' rule), the median over matched
  faces of the worst landmark's error (largest coordinate difference) over the true eye distance
  (each detection paired with the true face nearest by eye midpoint), and ms a frame (informational).
* **Speed**: ms a frame of MTCNN, RetinaFace 1280 and RetinaFace 640 at 720p, 1080p and 4K (frames
  generated at that size, eye distances 20-110 px scaled with the height), each detector warmed up,
  ``--rounds`` interleaved rounds (each runs every detector once on every frame, the order turned
  every other round), the median round per detector and size, and the ratio MTCNN / RetinaFace from
  the same rounds (issue 29's bar: RetinaFace at the default >= 3x faster at 1080p and 4K).

Prints markdown tables and writes them as JSON (``--out``; default ``outputs/detectors.json``, gitignored).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the generated frames: tests/synthetic

PER_FRAME = 3
TURNS = (90, 180, 270)
ALL_ANGLES = "0,90,180,270"
SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "4K": (2160, 3840)}
SEEDS = {"photos": 29, "standard": 0, "small": 1, "rotated": 2, "speed": 7}


def default_out() -> Path:
    """``outputs/detectors.json`` (gitignored, as the other commands' outputs)."""
    return ROOT / "outputs" / "detectors.json"


# ------------------------------------------------------------------------------ the frames
def frame_sets(photos: Sequence[np.ndarray], frames: int) -> dict[str, list]:
    """``{set: [(image, [PlacedFace])]}``; each set takes its own ``frames * 3`` photos of one fixed
    shuffle (wrapping round only when the sets need more than there are)."""
    from synthetic.faces import group_picture

    order = np.random.default_rng(SEEDS["photos"]).permutation(len(photos))
    need = frames * PER_FRAME

    def make(k: int, seed: int, **kw) -> list:
        rng = np.random.default_rng(seed)
        picked = [photos[order[(k * need + i) % len(photos)]] for i in range(need)]
        return [group_picture(picked[i : i + PER_FRAME], rng, **kw) for i in range(0, need, PER_FRAME)]

    rotated = [turn(image, truth, TURNS[k % 3]) for k, (image, truth) in enumerate(make(2, SEEDS["rotated"]))]
    return {
        "standard": make(0, SEEDS["standard"]),
        "small": make(1, SEEDS["small"], eye_distance=(8.0, 20.0)),
        "rotated": rotated,
    }


def turn(image: np.ndarray, truth: list, angle: int) -> tuple[np.ndarray, list]:
    """The frame turned ``angle`` degrees clockwise and its true faces moved with it: the frame is the
    turned one turned back by ``360 - angle``, so :func:`unrotate_points` maps the points."""
    from flipnet_rt.faces.rotations import unrotate_points
    from flipnet_rt.imaging.scene import PlacedFace

    turned = np.ascontiguousarray(np.rot90(image, -angle // 90))
    th, tw = turned.shape[:2]
    moved = [
        PlacedFace(
            unrotate_points(t.landmarks, 360 - angle, th, tw).astype(np.float32), t.eye_distance, t.angle - angle
        )
        for t in truth
    ]
    return turned, moved


# ------------------------------------------------------------------------------ accuracy
def landmark_errors(truth: list, faces: list) -> list[float]:
    """Per true face found: the worst of its 5 points' errors (largest coordinate difference) over its
    eye distance, from the detections whose nearest true face (by eye midpoint) it is, within half its
    eye distance (the best such detection when there are several)."""
    best: dict[int, float] = {}
    for face in faces:
        mid = (face.landmarks[0] + face.landmarks[1]) / 2
        gaps = [float(np.linalg.norm(mid - t.eye_centre)) for t in truth]
        k = int(np.argmin(gaps))
        if gaps[k] < 0.5 * truth[k].eye_distance:
            error = float(np.abs(face.landmarks - truth[k].landmarks).max()) / truth[k].eye_distance
            best[k] = min(error, best.get(k, np.inf))
    return list(best.values())


def accuracy(detector, frames: list) -> dict[str, float]:
    from synthetic.faces import match_faces

    found = false = 0
    errors: list[float] = []
    start = time.perf_counter()
    detections = [detector.detect(image) for image, _ in frames]
    seconds = time.perf_counter() - start
    for (_, truth), faces in zip(frames, detections):
        hit, fp = match_faces(truth, [f.landmarks for f in faces])
        found, false = found + hit, false + fp
        errors += landmark_errors(truth, faces)
    total = sum(len(truth) for _, truth in frames)
    return {
        "faces": total,
        "found": found,
        "recall": found / total,
        "false_positives": false,
        "fp_per_frame": false / len(frames),
        "landmark_error_median": float(np.median(errors)) if errors else float("nan"),
        "ms_per_frame": seconds * 1e3 / len(frames),
    }


def accuracy_detectors(set_name: str) -> dict[str, Callable]:
    """The detectors run on ``set_name``: name -> a loader (each built when its turn comes)."""
    from flipnet_rt.faces.detectors import load_detector

    rows: dict[str, Callable] = {
        "mtcnn (min_face_size 20)": lambda: load_detector("mtcnn"),
        "retinaface 1280 (default)": lambda: load_detector("retinaface"),
        "retinaface 640": lambda: load_detector("retinaface", detect_size=640),
    }
    if set_name == "small":
        rows["mtcnn (min_face_size 12)"] = lambda: load_detector("mtcnn", min_face_size=12)
    if set_name == "rotated":
        rows["mtcnn + 4 turns"] = lambda: load_detector("mtcnn", angles=ALL_ANGLES)
        rows["retinaface 1280 + 4 turns"] = lambda: load_detector("retinaface", angles=ALL_ANGLES)
        rows["retinaface 640 + 4 turns"] = lambda: load_detector("retinaface", detect_size=640, angles=ALL_ANGLES)
    return rows


# ------------------------------------------------------------------------------ speed
def speed(photos: Sequence[np.ndarray], frames: int, rounds: int) -> dict[str, dict]:
    """``{size: {"ms": {detector: median ms a frame}, "ratio": {retinaface: MTCNN ms / its ms}}}``."""
    from synthetic.faces import group_picture

    from flipnet_rt.faces.detectors import load_detector

    detectors = {
        "mtcnn": load_detector("mtcnn"),
        "retinaface 1280": load_detector("retinaface"),
        "retinaface 640": load_detector("retinaface", detect_size=640),
    }
    out = {}
    for label, (height, width) in SIZES.items():
        rng = np.random.default_rng(SEEDS["speed"])
        k = height / 720
        images = [
            group_picture(
                photos[PER_FRAME * i : PER_FRAME * (i + 1)],
                rng,
                height=height,
                width=width,
                eye_distance=(20 * k, 110 * k),
            )[0]
            for i in range(frames)
        ]
        for detector in detectors.values():  # warm-up: ONNX Runtime's arenas, the priors of this size
            detector.detect(images[0])
        times: dict[str, list[float]] = {name: [] for name in detectors}
        for r in range(rounds):
            for name in list(detectors) if r % 2 == 0 else list(detectors)[::-1]:
                start = time.perf_counter()
                for image in images:
                    detectors[name].detect(image)
                times[name].append((time.perf_counter() - start) * 1e3 / frames)
        ms = {name: float(np.median(t)) for name, t in times.items()}
        ratio = {name: ms["mtcnn"] / ms[name] for name in detectors if name != "mtcnn"}
        out[label] = {"size": f"{width}x{height}", "ms": ms, "ratio": ratio, "rounds_ms": times}
        print(
            f"  {label}: "
            + ", ".join(f"{n} {v:.1f} ms" for n, v in ms.items())
            + "; MTCNN / "
            + ", ".join(f"{n} {v:.2f}x" for n, v in ratio.items()),
            flush=True,
        )
    return out


# ------------------------------------------------------------------------------ output
def accuracy_table(rows: dict[str, dict]) -> str:
    lines = [
        "| detector | recall | FP / frame | landmark error (median) | ms / frame |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['recall']:.3f} ({r['found']}/{r['faces']}) | {r['fp_per_frame']:.3f} "
            f"({r['false_positives']}) | {r['landmark_error_median']:.3f} | {r['ms_per_frame']:.0f} |"
        )
    return "\n".join(lines)


def speed_table(results: dict[str, dict]) -> str:
    lines = [
        "| frame | MTCNN ms | RetinaFace 1280 ms | RetinaFace 640 ms | MTCNN / RF 1280 | MTCNN / RF 640 |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        ms, ratio = r["ms"], r["ratio"]
        lines.append(
            f"| {label} ({r['size']}) | {ms['mtcnn']:.1f} | {ms['retinaface 1280']:.1f} | {ms['retinaface 640']:.1f} "
            f"| {ratio['retinaface 1280']:.2f}x | {ratio['retinaface 640']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import onnxruntime

    from flipnet_rt.imaging.io import load_image

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per accuracy set (3 faces each)")
    parser.add_argument("--speed-frames", type=int, default=3, help="frames per size in the speed runs")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved speed rounds")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=default_out())
    parser.add_argument("--skip", choices=("accuracy", "speed"), help="leave one part out")
    args = parser.parse_args(argv)

    files = sorted((args.data / "lfw" / "val").glob("*.jpg"))
    if len(files) < PER_FRAME * max(args.frames, args.speed_frames):
        print(f"{args.data / 'lfw' / 'val'}: {len(files)} photos, too few (real LFW faces beside the project)")
        return 2
    photos = [load_image(f) for f in files]
    record: dict = {"onnxruntime": onnxruntime.__version__, "frames": args.frames, "rounds": args.rounds}
    began = time.perf_counter()
    if args.skip != "accuracy":
        record["accuracy"] = {}
        for set_name, frames in frame_sets(photos, args.frames).items():
            faces = sum(len(t) for _, t in frames)
            print(f"\n### {set_name}: {len(frames)} frames of 1280x720, {faces} faces\n", flush=True)
            rows = {}
            for name, load in accuracy_detectors(set_name).items():
                detector = load()
                detector.detect(frames[0][0])  # warm-up, out of the timing
                rows[name] = accuracy(detector, frames)
            record["accuracy"][set_name] = rows
            print(accuracy_table(rows), flush=True)
    if args.skip != "speed":
        print(f"\n### speed: {args.speed_frames} frames a size, {args.rounds} interleaved rounds, median\n")
        record["speed"] = speed(photos, args.speed_frames, args.rounds)
        print("\n" + speed_table(record["speed"]))
    record["seconds"] = time.perf_counter() - began
    print(f"\n{record['seconds']:.0f} s; written to {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
