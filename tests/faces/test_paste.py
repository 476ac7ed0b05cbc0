"""Paste-back: untouched pixels outside the masks, identity round trip, seams, facexlib parity."""

from __future__ import annotations

import numpy as np
import pytest
from faces.support import ShiftRestorer

from flipnet_rt.faces.paste import paste_box, paste_faces, soft_mask
from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _union_mask(shape, results) -> tuple[np.ndarray, np.ndarray]:
    """Union of every pasted face's soft > 0 and of its 0 < soft < 1 band, in image coordinates."""
    inside, band = np.zeros(shape[:2], bool), np.zeros(shape[:2], bool)
    for r in results:
        box = paste_box(r.affine, r.crop_size, *shape[:2])
        _, _, soft = soft_mask(r.affine, r.crop_size, box)
        x0, y0, x1, y1 = box
        inside[y0:y1, x0:x1] |= soft > 0
        band[y0:y1, x0:x1] |= (soft > 0) & (soft < 1)
    return inside, band


@pytest.mark.parametrize("resolution,keep_detail", [(64, True), (512, False)])
def test_identity_restorer_paste(astronaut_group, resolution, keep_detail):
    """Restored face = aligned input: at 64 px through keep-detail (crops at the faces' own size),
    at 512 px without it (every crop at 512 >= the face)."""
    image, faces = astronaut_group
    restorer = ShiftRestorer(resolution)
    fr = FaceRestorer(restorer, options=FaceOptions(keep_detail=keep_detail))
    ((out, results),) = fr.restore_faces([image], [faces], [[1, 2, 3]])
    inside, _ = _union_mask(image.shape, results)
    psnr = _psnr(out, image)
    face_psnr = _psnr(out[inside], image[inside])
    print(
        f"R={resolution} keep_detail={keep_detail}: crop sizes {[r.crop_size for r in results]}, whole-image PSNR "
        f"{psnr:.2f} dB, inside the masks {face_psnr:.2f} dB, {inside.mean():.1%} of pixels in a mask"
    )
    assert restorer.calls == [3]  # one batch
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~inside], image[~inside])  # bit-identical outside every mask
    assert psnr >= 50.0


def test_seams_with_a_brightened_face(astronaut_group):
    """+20 grey levels on every face: the Laplacian of the change across the blend band stays small.

    Measure: ``d = grey(out_+20) - grey(out_identity)`` (the change the brightening makes, free of the
    warp round trip and of the texture), Gaussian-smoothed with sigma 1 px (the two outputs are rounded
    to uint8; the ksize-3 Laplacian of that +-1 rounding alone reaches 16), then ``cv2.Laplacian``
    ksize 3; the largest absolute value where ``0 < soft < 1``. The same measure on a hard paste
    (the +20 inside the mask at once) must be large, or the measure would not see a seam.
    """
    import cv2

    image, faces = astronaut_group
    outs = {}
    for offset in (0, 20):
        ((outs[offset], results),) = FaceRestorer(ShiftRestorer(64, offset=offset)).restore_faces(
            [image], [faces], [[1, 2, 3]]
        )
    inside, band = _union_mask(image.shape, results)

    def grey(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32).mean(axis=2)

    def laplacian(d: np.ndarray, smooth: bool = True) -> np.ndarray:
        return np.abs(cv2.Laplacian(cv2.GaussianBlur(d, (0, 0), 1.0) if smooth else d, cv2.CV_32F, ksize=3))

    change = grey(outs[20]) - grey(outs[0])
    per_face = []
    for r in results:
        x0, y0, x1, y1 = box = paste_box(r.affine, r.crop_size, *image.shape[:2])
        soft = soft_mask(r.affine, r.crop_size, box)[2]
        per_face.append(float(laplacian(change)[y0:y1, x0:x1][(soft > 0) & (soft < 1)].max()))
    seam = float(laplacian(change)[band].max())
    hard = grey(np.clip(outs[0].astype(np.int16) + 20 * inside[..., None], 0, 255)) - grey(outs[0])
    hard_seam = float(laplacian(hard).max())
    print(
        f"max |delta Laplacian| in the blend band: feathered {seam:.2f} (per face, eye distance 30/60/100 px: "
        f"{', '.join(f'{v:.2f}' for v in per_face)}; unsmoothed {float(laplacian(change, False)[band].max()):.2f}), "
        f"hard paste {hard_seam:.2f} (unsmoothed {float(laplacian(hard, False).max()):.2f})"
    )
    assert seam <= 10.0
    assert hard_seam > 20.0  # the measure sees a hard seam at twice the bound and more


def _facexlib_full_frame(image: np.ndarray, face: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """facexlib's paste_faces_to_input_image (upscale 1) over the whole frame, for parity."""
    import cv2

    h, w = image.shape[:2]
    inv = cv2.invertAffineTransform(affine)
    restored = cv2.warpAffine(face, inv, (w, h)).astype(np.float32)
    mask = cv2.warpAffine(np.ones(face.shape[:2], np.float32), inv, (w, h))
    mask_e = cv2.erode(mask, np.ones((2, 2), np.uint8))
    w_edge = max(int(np.sqrt(float(mask_e.sum(dtype=np.float64)))) // 20, 1)
    soft = cv2.GaussianBlur(
        cv2.erode(mask_e, np.ones((2 * w_edge, 2 * w_edge), np.uint8)), (2 * w_edge + 1, 2 * w_edge + 1), 0
    )[..., None]
    return np.clip(np.rint(soft * mask_e[..., None] * restored + (1 - soft) * image), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("where", ["inside", "cut by the frame"])
def test_box_bounded_paste_matches_full_frame(where):
    import cv2

    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (0, 0), 2)
    face = cv2.GaussianBlur(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), (0, 0), 1)
    a = np.deg2rad(17.0)
    tx, ty = (-150.0, -80.0) if where == "inside" else (20.0, 30.0)
    affine = np.array([[0.8 * np.cos(a), -0.8 * np.sin(a), tx], [0.8 * np.sin(a), 0.8 * np.cos(a), ty]])
    ours = paste_faces(image, [face], [affine])
    reference = _facexlib_full_frame(image, face, affine)
    diff = np.abs(ours.astype(np.int16) - reference).max(axis=2)
    x0, y0, x1, y1 = box = paste_box(affine, 96, *image.shape[:2])
    _, mask_e, soft = soft_mask(affine, 96, box)
    rim = np.zeros(image.shape[:2], bool)
    rim[y0:y1, x0:x1] = (soft > 0) & (mask_e < 1)
    black = np.zeros(image.shape[:2], np.float32)  # what facexlib blends in there: soft * (1 - mask_e) of black
    black[y0:y1, x0:x1] = 255 * soft * (1 - mask_e)
    print(
        f"{where}: max |box-bounded - full frame| = {diff[~rim].max()} grey levels where mask_e = 1 "
        f"({int((diff[~rim] > 0).sum())} pixels), "
        f"{diff[rim].max() if rim.any() else 0} on the {int(rim.sum())}-pixel rim"
    )
    assert diff[~rim].max() <= 1  # blendLinear's normalised weights and OpenCV's fixed-point warp: rounding only
    # On the rim (mask_e < 1) we normalise the weights instead of blending facexlib's black in.
    assert (diff[rim] <= np.ceil(black[rim]) + 1).all()


def test_paste_in_place_and_bad_input():
    image = np.zeros((50, 50, 3), np.uint8)
    face = np.full((16, 16, 3), 255, np.uint8)
    affine = np.array([[1.0, 0, -10], [0, 1.0, -10]])
    out = paste_faces(image, [face], [affine], inplace=True)
    assert out is image and image[18, 18].tolist() == [255, 255, 255]
    assert paste_faces(image, [face], [np.array([[1.0, 0, 500], [0, 1.0, 500]])]) is not image  # off-image: a copy
    with pytest.raises(ValueError, match="affines"):
        paste_faces(image, [face], [])
    with pytest.raises(ValueError, match="uint8"):
        paste_faces(image.astype(np.float32), [face], [affine])
