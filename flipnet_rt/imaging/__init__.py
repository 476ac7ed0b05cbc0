"""Images around the model: files, the size policy, colour correction, tensor layout.

- :mod:`.io`: ``load_image`` (any common format -> RGB ``uint8 [H, W, 3]``), ``save_image`` (atomic), ``ImageError``.
- :mod:`.geometry`: ``fit`` / ``unfit`` (any size <-> the model's square resolution), ``prepare_square``.
- :mod:`.colour`: ``wavelet_color_fix`` (StableSR's colour fix).
- :mod:`.tensor`: ``to_float`` / ``to_uint8`` (``uint8 [B, H, W, 3]`` <-> ``float32 [B, 3, H, W]`` in [-1, 1]).

Face alignment (an affine warp with its inverse) lives with the faces: :mod:`flipnet_rt.faces`.
"""
