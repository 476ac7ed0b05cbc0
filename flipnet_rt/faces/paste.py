"""Paste restored faces back into the image through a feathered mask (DESIGN §6).

Pure functions (the native kernels port them and test parity). For each face, in the order
given (later faces are pasted over earlier ones; :class:`~flipnet_rt.faces.pipeline.FaceRestorer`
passes them by ascending area, then detector index, so the larger face wins an overlap):

1. ``inv = cv2.invertAffineTransform(A)``; the crop square's corners mapped through ``inv`` give
   the face's bounding box in the image, widened by :data:`BOX_MARGIN` px and clipped to the image:
   the region of interest ``[y0:y1, x0:x1]``. Everything below happens inside it only, with
   ``inv``'s translation shifted by ``(-x0, -y0)``.
2. ``face_roi = warpAffine(face, inv_roi)`` and ``mask = warpAffine(ones[S, S] float32, inv_roi)``:
   bilinear (``INTER_LINEAR``), constant border 0.
3. facexlib's feathering (``FaceRestoreHelper.paste_faces_to_input_image``): ``mask_e =
   erode(mask, ones(2, 2))`` removes the half-covered rim; ``w = int(sqrt(sum(mask_e))) // 20``
   (the sum in float64), at least 1; ``soft = GaussianBlur(erode(mask_e, ones(2w, 2w)),
   (2w + 1, 2w + 1), sigma=0)`` (OpenCV's default border ``BORDER_REFLECT_101`` for the blur,
   its erosion border leaves edges uneroded).
4. ``out = cv2.blendLinear(face_roi, image_roi, soft · mask_e, 1 − soft)``, i.e. per pixel and
   channel ``saturate_cast<uint8>((w1 · F + w2 · B) / (w1 + w2 + 1e-5))`` (OpenCV rounds half to
   even): facexlib's ``soft · (mask_e · F) + (1 − soft) · B`` within 1 grey level wherever ``mask_e``
   is 1, at 1/10 of the numpy cost. On the rim where ``soft > 0`` and ``mask_e < 1`` (the warped face's
   edge; wider where the frame cuts the face, as the blur reflects at the frame border) the weights
   are normalised instead of blending facexlib's black in (up to 3 grey levels apart there). Where ``soft`` is 0 the
   weights are ``(0, 1)``, so every pixel outside every face's soft mask is the input's, bit for bit.

Computing inside the box gives facexlib's full-frame result (the mask is zero around the box, the
box is clipped where the frame is): 1/20 of its cost for a 200-px face at 1080p.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Pixels added around the mapped crop square so bilinear taps and the blur see zeros beyond it.
BOX_MARGIN = 2


def paste_box(affine: np.ndarray, size: int, height: int, width: int) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of the region a crop of side ``size`` pastes into, or None if off-image."""
    import cv2

    inv = cv2.invertAffineTransform(np.asarray(affine, np.float64))
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
    x0 = max(int(np.floor(corners[:, 0].min())) - BOX_MARGIN, 0)
    y0 = max(int(np.floor(corners[:, 1].min())) - BOX_MARGIN, 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + BOX_MARGIN + 1, width)
    y1 = min(int(np.ceil(corners[:, 1].max())) + BOX_MARGIN + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def soft_mask(
    affine: np.ndarray, size: int, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paste mask of one face inside ``box``.

    Returns:
        ``(inv_roi, mask_e, soft)``: the crop -> box ``float64 [2, 3]`` affine, the eroded hard
        mask and the feathered mask, both ``float32 [y1 - y0, x1 - x0]``.
    """
    import cv2

    x0, y0, x1, y1 = box
    inv = cv2.invertAffineTransform(np.asarray(affine, np.float64))
    inv[:, 2] -= (x0, y0)
    ones = np.ones((size, size), np.float32)
    mask = cv2.warpAffine(
        ones, inv, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    mask_e = cv2.erode(mask, np.ones((2, 2), np.uint8))
    w_edge = max(int(np.sqrt(float(mask_e.sum(dtype=np.float64)))) // 20, 1)
    center = cv2.erode(mask_e, np.ones((2 * w_edge, 2 * w_edge), np.uint8))
    soft = cv2.GaussianBlur(center, (2 * w_edge + 1, 2 * w_edge + 1), 0)
    return inv, mask_e, soft


def paste_faces(
    image: np.ndarray, faces: Sequence[np.ndarray], affines: Sequence[np.ndarray], *, inplace: bool = False
) -> np.ndarray:
    """Paste ``faces`` (aligned crops after restoration) back into ``image``.

    Args:
        image: ``uint8 [H, W, 3]``, the original image.
        faces: ``uint8 [S_i, S_i, 3]`` restored crops, in paste order.
        affines: ``[2, 3]`` image -> crop affines, the ones their inputs were warped with
            (:func:`~flipnet_rt.faces.align.warp_faces`).
        inplace: write into ``image`` instead of a copy.

    Returns:
        ``uint8 [H, W, 3]``: ``image`` itself when ``inplace``, else a new array. See the module
        docstring for the exact rule.
    """
    import cv2

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"paste_faces: expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    if len(faces) != len(affines):
        raise ValueError(f"paste_faces: {len(faces)} faces for {len(affines)} affines")
    out = image if inplace else image.copy()
    height, width = out.shape[:2]
    for face, affine in zip(faces, affines):
        size = face.shape[0]
        if face.dtype != np.uint8 or face.shape != (size, size, 3):
            raise ValueError(f"paste_faces: expected uint8 [S, S, 3] faces, got {face.dtype} {face.shape}")
        box = paste_box(affine, size, height, width)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        inv, mask_e, soft = soft_mask(affine, size, box)
        warped = cv2.warpAffine(
            np.ascontiguousarray(face),
            inv,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        roi = out[y0:y1, x0:x1]
        roi[:] = cv2.blendLinear(warped, np.ascontiguousarray(roi), soft * mask_e, np.float32(1.0) - soft)
    return out
