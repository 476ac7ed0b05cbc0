"""How small a face RetinaFace finds, in *network-input* pixels: recall per bin of the true eye
distance times the resize scale, over the standard + small sets at several scales. This is what
the detect-size default should come from (the smallest face wanted, not a fixed 640).

Also the ratio RetinaFace box side (shorter) / eye distance, to translate the package's
``min_face_size`` (a box side) into an eye distance.

Run: cd docs/studies/detector && PYTHONPATH=../../../tests:../../.. ../../../.venv/bin/python analyze_scale.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import retinaface as rf
from evaluate import frames, photos

from flipnet_rt.faces.mtcnn import MtcnnDetector

BINS = (0, 6, 8, 10, 12, 14, 16, 20, 25, 30, 40, 60, 1000)


def main() -> None:
    pics = photos()
    data = frames(pics, 30, 0) + frames(pics, 30, 1, eye_distance=(8.0, 20.0))
    run = rf.onnxruntime_runner()
    width = data[0][0].shape[1]
    out = {}
    ratios, mt_ratios = [], []
    mtcnn = MtcnnDetector()
    for img, truth in data[:20]:  # box / eye distance: RetinaFace at full size and MTCNN
        for f in rf.RetinaFaceDetector(rf.RetinaFaceConfig(detect_size=1920, score_threshold=0.7), run=run).detect(img):
            ratios.append(f.size / f.eye_distance)
        for f in mtcnn.detect(img):
            mt_ratios.append(f.size / f.eye_distance)
    print(
        f"box shorter side / eye distance: RetinaFace median {np.median(ratios):.2f} "
        f"(p10 {np.percentile(ratios, 10):.2f}, p90 {np.percentile(ratios, 90):.2f}); "
        f"MTCNN median {np.median(mt_ratios):.2f}"
    )
    out["box_over_eye"] = {"retinaface": float(np.median(ratios)), "mtcnn": float(np.median(mt_ratios))}
    for scale in (0.5, 0.75, 1.0, 1.5):
        det = rf.RetinaFaceDetector(rf.RetinaFaceConfig(detect_size=round(width * scale), score_threshold=0.3), run=run)
        rows = {thr: np.zeros((len(BINS) - 1, 2), int) for thr in (0.5, 0.7, 0.9)}
        for img, truth in data:
            faces = det.detect(img)
            for t in truth:
                b = np.searchsorted(BINS, t.eye_distance * scale, side="right") - 1
                for thr, table in rows.items():
                    hit = any(
                        np.linalg.norm((f.landmarks[0] + f.landmarks[1]) / 2 - t.eye_centre) < 0.5 * t.eye_distance
                        and 0.5 <= f.eye_distance / t.eye_distance <= 2
                        for f in faces
                        if f.score > thr
                    )
                    table[b] += (int(hit), 1)
        out[str(scale)] = {str(thr): t.tolist() for thr, t in rows.items()}
        print(f"scale {scale} (detect_size {round(width * scale)}):")
        for b in range(len(BINS) - 1):
            if rows[0.5][b, 1]:
                cells = "  ".join(f"thr {thr}: {t[b, 0]:3d}/{t[b, 1]:3d}" for thr, t in rows.items())
                print(f"  input eye distance [{BINS[b]:3d}, {BINS[b + 1]:4d}) px  {cells}")
    Path("results_analyze_scale.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
