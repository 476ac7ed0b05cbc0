"""Alignment: the template, the similarity fit, the warp's semantics, re-aligning aligned faces."""

from __future__ import annotations

import math

import numpy as np
import pytest
from faces.support import load_rgb

from flipnet_rt.faces.align import (
    CONSTANT_BORDER,
    FFHQ_TEMPLATE_512,
    affine_scale,
    estimate_affine,
    face_extent,
    template,
    warp_faces,
)
from flipnet_rt.faces.types import BorderMode


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]])


def test_template_scales_with_the_crop():
    np.testing.assert_allclose(template(512), FFHQ_TEMPLATE_512)
    np.testing.assert_allclose(template(64), FFHQ_TEMPLATE_512 / 8, rtol=1e-6)


@pytest.mark.parametrize("angle,scale", [(0.0, 1.0), (27.0, 0.31), (-40.0, 2.5)])
def test_estimate_affine_inverts_a_known_similarity(angle, scale):
    # Landmarks = the template at 128 moved by a known similarity M; the fit must give M^-1.
    m = _similarity(angle, scale, 300.0, 170.0)
    points = np.c_[template(128), np.ones(5)] @ m.T
    affine = estimate_affine(points, 128)
    back = np.c_[points, np.ones(5)] @ affine.T
    err = float(np.abs(back - template(128)).max())
    print(f"angle {angle} scale {scale}: max template error {err:.2e} px, scale {affine_scale(affine):.5f}")
    assert err < 1e-3  # exact points: only float32 rounding of the inputs
    assert affine_scale(affine) == pytest.approx(1 / scale, rel=1e-5)
    assert face_extent(affine, 128) == pytest.approx(128 * scale, rel=1e-5)


def test_estimate_affine_is_deterministic_and_rejects_bad_points():
    rng = np.random.default_rng(0)
    points = template(512) * 0.4 + 100 + rng.normal(0, 2, (5, 2)).astype(np.float32)
    np.testing.assert_array_equal(estimate_affine(points, 64), estimate_affine(points, 64))
    with pytest.raises(ValueError, match="NaN"):
        estimate_affine(np.full((5, 2), np.nan), 64)


def test_warp_samples_the_inverse_map_bilinearly():
    # A linear ramp is reproduced exactly by bilinear sampling: crop(x, y) = ramp(A^-1 (x, y)).
    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.stack([xx * 0.5, yy * 0.7, xx * 0.2 + yy * 0.3], axis=-1).astype(np.float32)
    affine = _similarity(12.0, 0.8, -40.0, -20.0)
    crop = warp_faces(ramp, [affine], 64)[0]
    inv = np.linalg.inv(np.r_[affine, [[0, 0, 1]]])[:2]
    cy, cx = np.mgrid[10:50, 10:50]
    src = np.stack([cx, cy, np.ones_like(cx)], -1) @ inv.T
    expected = np.stack([src[..., 0] * 0.5, src[..., 1] * 0.7, src[..., 0] * 0.2 + src[..., 1] * 0.3], -1)
    err = float(np.abs(crop[10:50, 10:50] - expected).max())
    print(f"bilinear ramp error {err:.4f} (OpenCV quantises coordinates to 1/32 px)")
    assert err < 0.05  # 1/32 px coordinate quantisation x slope 0.7 = 0.022


def test_border_modes():
    image = np.repeat(np.repeat((np.arange(40, dtype=np.uint8) * 5)[None, :, None], 40, 0), 3, 2)  # value = 5 x
    shift = np.array([[1.0, 0, 30.0], [0, 1.0, 0]])  # crop x = image x + 30: 30 columns left of the image
    reflect, constant = (warp_faces(image, [shift], 64, b)[0] for b in (BorderMode.REFLECT, "constant"))
    assert (constant[:40, :29] == CONSTANT_BORDER).all()
    np.testing.assert_array_equal(constant[:40, 30:64], image[:, :34])
    # BORDER_REFLECT_101: image x = -k reads x = k (crop column 30 - k)
    np.testing.assert_array_equal(reflect[:40, 30 - np.arange(1, 30)], image[:, np.arange(1, 30)])
    with pytest.raises(ValueError, match="sizes"):
        warp_faces(image, [shift, shift], [64])


def test_realigning_aligned_real_lq_faces(real_lq, mtcnn):
    """Already FFHQ-aligned 512 px faces re-align to nearly the identity (issue 15's bounds)."""
    worst = {"scale": 0.0, "rotation": 0.0, "shift": 0.0}
    for path in real_lq:
        image = load_rgb(path)
        faces = mtcnn.detect(image)
        assert faces, f"{path.name}: no face found"
        centre = np.array([256.0, 256.0])
        face = min(faces, key=lambda f: float(np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre)))
        affine = estimate_affine(face.landmarks, 512)
        scale = affine_scale(affine) - 1.0
        rotation = math.degrees(math.atan2(affine[1, 0], affine[0, 0]))
        shift = float(np.linalg.norm(affine @ [256.0, 256.0, 1.0] - centre))
        print(f"{path.name}: scale {scale:+.3f}, rotation {rotation:+.2f} deg, centre shift {shift:.1f} px")
        worst = {
            "scale": max(worst["scale"], abs(scale)),
            "rotation": max(worst["rotation"], abs(rotation)),
            "shift": max(worst["shift"], shift),
        }
    print(f"worst over {len(real_lq)}: {worst}")
    assert worst["scale"] <= 0.15 and worst["rotation"] <= 5.0 and worst["shift"] <= 10.0


def test_least_squares_fallback_matches_lmeds_on_exact_points():
    from flipnet_rt.faces.align import _least_squares_similarity

    m = _similarity(10.0, 0.5, 40.0, 20.0)
    points = (np.c_[template(64), np.ones(5)] @ m.T).astype(np.float32)
    np.testing.assert_allclose(_least_squares_similarity(points, template(64)), estimate_affine(points, 64), atol=1e-4)
