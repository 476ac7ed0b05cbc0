"""The per-track filter of the faces' input crops (issue 25, item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from flipnet_rt.video.stabilise import CropStabiliser


def test_noise_is_averaged_and_a_real_change_shows_at_once():
    rng = np.random.default_rng(0)
    face = rng.integers(40, 200, (32, 32, 3)).astype(np.float32)
    stab = CropStabiliser()
    out = []
    for t in range(30):
        crop = np.clip(np.rint(face + rng.normal(0, 4, face.shape)), 0, 255).astype(np.uint8)
        out.append(stab(1, crop, t).astype(np.float32))
    residual = float(np.std(np.stack(out[10:]) - face))
    print(f"noise sigma 4 -> {residual:.2f} after the filter (theory 0.38 x 4 = 1.51, plus rounding)")
    assert residual < 2.0
    changed = np.clip(face + 80, 0, 255).astype(np.uint8)  # a cut: every pixel moves by 80 grey levels
    assert np.array_equal(stab(1, changed, 30), changed)


def test_tracks_are_separate_restart_on_a_new_size_and_are_forgotten():
    stab = CropStabiliser(max_age=5)
    a, b = np.full((8, 8, 3), 100, np.uint8), np.full((8, 8, 3), 110, np.uint8)
    assert np.array_equal(stab(0, a, 0), a) and np.array_equal(stab(1, b, 0), b)  # first crops pass as they are
    assert np.all(stab(0, b, 1) == 102)  # 100 + 0.25 * 10, rounded
    big = np.full((12, 12, 3), 50, np.uint8)
    assert np.array_equal(stab(0, big, 2), big)  # a new crop size starts the track again
    stab(1, b, 9)
    assert stab.tracks == 1  # track 0 last seen at frame 2, more than 5 frames ago


@pytest.mark.parametrize("alpha, threshold", [(0.0, 12), (1.5, 12), (0.3, 0)])
def test_bad_settings_are_refused(alpha, threshold):
    with pytest.raises(ValueError):
        CropStabiliser(alpha, threshold)
