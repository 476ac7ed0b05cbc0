"""Step 3: RetinaFace (this prototype) against the package's MTCNN on synthetic LFW group pictures.

Sets (1280x720, 3 real lfw/val faces each, tests/synthetic/faces.py):
  standard  eye distance 20-110 px, +-30 deg (the package's recall test's setting)
  small     eye distance 8-20 px
  rotated   standard frames turned 90 / 180 / 270 deg clockwise (a third each); detected as they
            are, and with all four quarter turns tried and mapped back
Matching is tests/synthetic/faces.match_faces's rule (eye midpoint within half the true eye distance,
eye distance within 0.5-2x); landmark error = worst of the 5 points / true eye distance, in the
detector's landmark order (the truth's order is the face's own, so a swapped order counts as error).

RetinaFace runs once per setting with a low threshold (0.3); higher thresholds are applied after
NMS, which is exact for greedy NMS (a box is only ever suppressed by a higher-scored one).

Run: cd docs/studies/detector && PYTHONPATH=../../../tests:../../.. ../../../.venv/bin/python evaluate.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import retinaface as rf
from synthetic.faces import group_picture, match_faces

from flipnet_rt.faces.mtcnn import MtcnnConfig, MtcnnDetector
from flipnet_rt.faces.types import Face, sort_faces
from flipnet_rt.imaging.scene import PlacedFace

LFW = Path("/work/shared/data/lfw/val")
THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
LOW = min(THRESHOLDS)


def photos() -> list[np.ndarray]:
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(LFW.glob("*.jpg"))]


def frames(pics, n, seed, **kw):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pics))
    return [
        group_picture([pics[i] for i in order[3 * k % len(pics) : 3 * k % len(pics) + 3]], rng, **kw) for k in range(n)
    ]


def rotate_frame(image: np.ndarray, truth: list[PlacedFace], turn: int):
    """The frame turned ``turn`` deg clockwise, and its truth moved with it (continuous coordinates)."""
    h, w = image.shape[:2]
    out = np.ascontiguousarray(np.rot90(image, -turn // 90))
    moved = []
    for t in truth:
        x, y = t.landmarks[:, 0], t.landmarks[:, 1]
        if turn == 90:
            p = np.stack([h - y, x], 1)
        elif turn == 180:
            p = np.stack([w - x, h - y], 1)
        else:
            p = np.stack([y, w - x], 1)
        moved.append(PlacedFace(p.astype(np.float32), t.eye_distance, t.angle - turn))
    return out, moved


def match(truth, faces):
    """match_faces's rule, also returning the landmark errors of the matched faces."""
    used = [False] * len(truth)
    errors, fps = [], 0
    for f in faces:
        pts = f.landmarks
        mid, d = (pts[0] + pts[1]) / 2, float(np.linalg.norm(pts[1] - pts[0]))
        for t, face in enumerate(truth):
            if (
                not used[t]
                and np.linalg.norm(mid - face.eye_centre) < 0.5 * face.eye_distance
                and 0.5 <= d / face.eye_distance <= 2.0
            ):
                used[t] = True
                errors.append(float(np.abs(pts - face.landmarks).max()) / face.eye_distance)
                break
        else:
            fps += 1
    assert (sum(used), fps) == match_faces(truth, [f.landmarks for f in faces])
    return sum(used), fps, errors


def with_rotations(detect, image):
    """Any detector tried on the 4 quarter turns, points mapped back, merged by NMS (as RetinaFaceConfig.rotations)."""
    h, w = image.shape[:2]
    boxes, scores, points = [], [], []
    for turn in (0, 90, 180, 270):
        turned = np.ascontiguousarray(np.rot90(image, -turn // 90)) if turn else image
        faces = detect(turned)
        if not faces:
            continue
        b = np.stack([f.box for f in faces])
        p = np.stack([f.landmarks for f in faces])
        if turn:
            b, p = rf._unrotate(b, p, turn, h, w)
        boxes.append(b), points.append(p), scores.append(np.array([f.score for f in faces], np.float32))
    if not boxes:
        return []
    b, s, p = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
    keep = rf.nms(b, s, 0.4)
    return sort_faces([Face(box=b[k], score=float(s[k]), landmarks=p[k]) for k in keep])


def evaluate(name, detect, data, thresholds=(None,)):
    """``{threshold: (recall, fp per frame, median landmark error, p90 error)}`` and seconds per frame."""
    t0 = time.perf_counter()
    found = [detect(img) for img, _ in data]
    per_frame = (time.perf_counter() - t0) / len(data)
    out = {}
    total = sum(len(t) for _, t in data)
    for thr in thresholds:
        hit = fp = 0
        errs = []
        for (img, truth), faces in zip(data, found):
            keep = [f for f in faces if thr is None or f.score > thr]
            h, f_, e = match(truth, keep)
            hit, fp, errs = hit + h, fp + f_, errs + e
        out[thr] = (
            hit / total,
            fp / len(data),
            float(np.median(errs)) if errs else float("nan"),
            float(np.percentile(errs, 90)) if errs else float("nan"),
        )
    print(f"  {name}: {per_frame * 1000:.0f} ms/frame (not a benchmark: shared CPU, see timing.py)", flush=True)
    return out, per_frame


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--out", default="results_evaluate.json")
    args = ap.parse_args()
    pics = photos()
    sets = {
        "standard": frames(pics, args.frames, 0),
        "small": frames(pics, args.frames, 1, eye_distance=(8.0, 20.0)),
    }
    rot = []
    for k, (img, truth) in enumerate(frames(pics, args.frames, 2)):
        rot.append(rotate_frame(img, truth, (90, 180, 270)[k % 3]))
    sets["rotated"] = rot

    mtcnn = MtcnnDetector()
    mtcnn12 = MtcnnDetector(MtcnnConfig(min_face_size=12))
    run = rf.onnxruntime_runner()
    dets = {
        s: rf.RetinaFaceDetector(rf.RetinaFaceConfig(detect_size=s, score_threshold=LOW), run=run)
        for s in (640, 960, 1280, 1920)
    }
    rot4 = rf.RetinaFaceDetector(
        rf.RetinaFaceConfig(detect_size=640, score_threshold=LOW, rotations=(0, 90, 180, 270)), run=run
    )
    rot4_1280 = rf.RetinaFaceDetector(
        rf.RetinaFaceConfig(detect_size=1280, score_threshold=LOW, rotations=(0, 90, 180, 270)), run=run
    )
    # without the upright filter (max_roll=None): what the bare network + NMS gives
    raw = {
        s: rf.RetinaFaceDetector(rf.RetinaFaceConfig(detect_size=s, score_threshold=LOW, max_roll=None), run=run)
        for s in (640, 1280)
    }
    raw_rot4 = rf.RetinaFaceDetector(
        rf.RetinaFaceConfig(detect_size=1280, score_threshold=LOW, max_roll=None, rotations=(0, 90, 180, 270)), run=run
    )
    results = {}
    for set_name, data in sets.items():
        print(f"set {set_name} ({len(data)} frames, {sum(len(t) for _, t in data)} faces)", flush=True)
        rows = {}
        rows["mtcnn (min_face_size 20)"] = evaluate("mtcnn", mtcnn.detect, data)
        if set_name == "small":
            rows["mtcnn (min_face_size 12)"] = evaluate("mtcnn12", mtcnn12.detect, data)
        for size, det in dets.items():
            if set_name == "rotated" and size not in (640, 1280):
                continue
            rows[f"retinaface detect_size {size}"] = evaluate(f"retinaface {size}", det.detect, data, THRESHOLDS)
        if set_name != "small":
            for size, det in raw.items():
                rows[f"retinaface {size}, no upright filter"] = evaluate(
                    f"retinaface {size} raw", det.detect, data, THRESHOLDS
                )
        if set_name == "rotated":
            rows["retinaface 1280 + 4 rotations, no upright filter"] = evaluate(
                "retinaface 1280 rot4 raw", raw_rot4.detect, data, THRESHOLDS
            )
            rows["mtcnn + 4 rotations"] = evaluate("mtcnn rot4", lambda im: with_rotations(mtcnn.detect, im), data)
            rows["retinaface 640 + 4 rotations"] = evaluate("retinaface rot4", rot4.detect, data, THRESHOLDS)
            rows["retinaface 1280 + 4 rotations"] = evaluate("retinaface 1280 rot4", rot4_1280.detect, data, THRESHOLDS)
        results[set_name] = {
            k: {"per_frame_s": t, "by_threshold": {str(th): v for th, v in r.items()}} for k, (r, t) in rows.items()
        }
        for k, (r, _) in rows.items():
            for th, (rec, fp, med, p90) in r.items():
                print(
                    f"    {k:50s} thr {str(th):5s} recall {rec:.3f}  fp/frame {fp:.3f}  "
                    f"landmark err median {med:.3f} p90 {p90:.3f}",
                    flush=True,
                )
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
