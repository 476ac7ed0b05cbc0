"""Which border fill to align with (issue 15): faces whose aligned crop runs off the image, restored
by the 64-px demo engine with ``reflect`` and with facexlib's grey ``constant``; scored against the HQ."""

from __future__ import annotations

import numpy as np
import pytest
from faces.support import load_rgb
from synthetic.faces import LFW_LANDMARKS

from flipnet_rt.config.options import image_seed
from flipnet_rt.evaluation.scoring import psnr, ssim, synthesise_lq
from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer
from flipnet_rt.faces.types import BorderMode, Face

TIGHT = (50, 45, 200, 195)  # the LFW face box: the FFHQ crop of these faces (~170 px) runs ~10 px past it
COUNT = 24


@pytest.mark.slow
def test_reflect_border_restores_better_than_grey(demo_restorer, lfw_val):
    x0, y0, x1, y1 = TIGHT
    hqs = [load_rgb(p)[y0:y1, x0:x1].copy() for p in lfw_val[:COUNT]]
    lqs = [synthesise_lq(hq, 0, i) for i, hq in enumerate(hqs)]
    points = LFW_LANDMARKS - np.array([x0, y0], np.float32)  # known landmarks: no detector in the loop
    faces = [[Face(box=[0, 0, x1 - x0, y1 - y0], score=1.0, landmarks=points)] for _ in lqs]
    seeds = [[image_seed(0, i)] for i in range(len(lqs))]
    scores = {}
    for border in BorderMode:
        fr = FaceRestorer(demo_restorer, options=FaceOptions(border=border))
        outs = [out for out, _ in fr.restore_faces(lqs, faces, seeds)]
        scores[border] = (
            float(np.mean([psnr(o, h) for o, h in zip(outs, hqs)])),
            float(np.mean([ssim(o, h) for o, h in zip(outs, hqs)])),
        )
    lq = (
        float(np.mean([psnr(x, h) for x, h in zip(lqs, hqs)])),
        float(np.mean([ssim(x, h) for x, h in zip(lqs, hqs)])),
    )
    print(
        f"lfw/val x{COUNT}, 150-px tight crops, training degradation: LQ {lq[0]:.2f} dB / {lq[1]:.4f}; "
        + "; ".join(f"{b.value} {p:.2f} dB / {s:.4f}" for b, (p, s) in scores.items())
    )
    assert scores[BorderMode.REFLECT][0] >= scores[BorderMode.CONSTANT][0]  # the default follows this measurement
