"""Step 3 timing: seconds per frame, MTCNN vs RetinaFace, same frames, same process, interleaved.

Frames are generated at each size (720p, 1080p, 4K; eye distances 20-110 px scaled with the height)
so both detectors see the same faces at every size. Each measurement is the median of ``--reps``
passes over the frames (time.perf_counter); detectors are interleaved inside every repetition so
that the shared machine's load hits all of them alike. Ratios are the numbers to read.

Run: cd docs/studies/detector && PYTHONPATH=../../../tests:../../.. ../../../.venv/bin/python timing.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import retinaface as rf
from synthetic.faces import group_picture

from flipnet_rt.faces.mtcnn import MtcnnDetector

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "4K": (2160, 3840)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="results_timing.json")
    args = ap.parse_args()
    pics = [
        cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        for p in sorted(Path("/work/shared/data/lfw/val").glob("*.jpg"))[: 3 * args.frames]
    ]
    run = rf.onnxruntime_runner()
    mtcnn = MtcnnDetector()
    retina = {
        s: rf.RetinaFaceDetector(rf.RetinaFaceConfig(detect_size=s, score_threshold=0.5), run=run) for s in (640, 1280)
    }
    print(f"onnxruntime {ort.__version__}; MTCNN default (min_face_size 20); RetinaFace threshold 0.5", flush=True)
    results = {}
    for label, (h, w) in SIZES.items():
        rng = np.random.default_rng(7)
        k = h / 720
        frames = [
            group_picture(pics[3 * i : 3 * i + 3], rng, height=h, width=w, eye_distance=(20 * k, 110 * k))[0]
            for i in range(args.frames)
        ]
        tasks = {
            "mtcnn": lambda: [mtcnn.detect(f) for f in frames],
            "retinaface 640": lambda: [retina[640].detect(f) for f in frames],
            "retinaface 640, batch of all frames": lambda: retina[640].detect_batch(frames),
            "retinaface 1280": lambda: [retina[1280].detect(f) for f in frames],
            "  of which preprocess 640 (resize, BGR, mean)": lambda: [rf.preprocess([f], 640) for f in frames],
            "  of which preprocess 1280": lambda: [rf.preprocess([f], 1280) for f in frames],
        }
        for fn in tasks.values():  # warm-up: sessions, priors cache, allocations
            fn()
        times: dict[str, list[float]] = {n: [] for n in tasks}
        for _ in range(args.reps):
            for name, fn in tasks.items():
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) / len(frames))
        med = {n: float(np.median(v)) for n, v in times.items()}
        results[label] = med
        base = med["mtcnn"]
        print(f"{label} ({w}x{h}, {args.frames} frames x {args.reps} reps):", flush=True)
        for n, v in med.items():
            print(f"  {n:48s} {v * 1000:8.1f} ms/frame   mtcnn / this = {base / v:6.1f}x", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
