"""Image files in and out, and the size policy for model input.

Reading
-------
:func:`load_image` returns RGB ``uint8 [H, W, 3]`` for any PNG, JPEG, BMP, WebP,
TIFF, GIF (first frame), PPM, TGA, JPEG 2000, AVIF or QOI file Pillow can decode.
Formats that run external programs (EPS via Ghostscript) or are rarely photos are
refused. The EXIF orientation tag is applied, so the array is upright as a viewer
shows it. Pixel formats are converted as follows:

* grayscale and bilevel images are repeated into three equal channels;
* 16-bit grayscale (``I;16``) and 32-bit integer (``I``, read as 16-bit data)
  images are scaled with ``round(v / 257)``, so 65535 becomes 255 (never clipped);
* 32-bit float (``F``) images are read as [0, 1] and scaled by 255;
* palette, CMYK, YCbCr, LAB and HSV images go through Pillow's RGB conversion;
* images with transparency (RGBA, LA, PA, palette with a transparent index) are
  composited over **black**: ``rgb * alpha / 255``, rounded. Fully opaque pixels
  keep their exact values, fully transparent pixels become black.

Images larger than :data:`MAX_PIXELS` are refused from the header, before any
pixel is decoded. Every problem with a file raises :class:`ImageError`, whose
message is one line: ``"<path>: <reason and fix>"``.

Size policy for model input
---------------------------
The network restores square images at one resolution (for example 512 x 512).
An input of any other size is fitted as follows:

1. A non-square image is padded to a square whose side is its longer side. The
   padding is split evenly between the two sides (the extra pixel, if any, goes
   to the bottom or right) and mirrors the image at its border (reflection
   without repeating the edge pixel). When the image is too thin to mirror (the
   padding on one side is wider than the image minus one pixel) the edge pixels
   are repeated instead.
2. The square is resized to resolution x resolution with Lanczos filtering. A
   square image already at the resolution passes through untouched.
3. After restoration the output is resized back to the padded square size with
   Lanczos filtering and the padding is cropped off, so the restored image has
   exactly the original height and width. An image already at the resolution
   comes back without any resampling.

Faces are never stretched: the aspect ratio is kept, and the mirrored border
gives the network plausible context instead of a flat colour. Images much larger
than the resolution are restored at the resolution and upsampled back, so fine
detail beyond the resolution is not recovered.

Writing
-------
:func:`save_image` writes atomically (temporary file in the same folder, fsync,
rename), so a crash or an encoder error never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Largest image :func:`load_image` accepts by default: 64 megapixels
#: (64,000,000 pixels, e.g. 8000 x 8000). An RGB image of this size takes 192 MB
#: decoded. Pillow's own decompression-bomb limit (2 x ``Image.MAX_IMAGE_PIXELS``,
#: about 179 megapixels) applies on top of any larger ``max_pixels``.
MAX_PIXELS: int = 64_000_000

#: Pillow formats :func:`load_image` reads. Others (EPS runs Ghostscript) are refused.
READ_FORMATS: tuple[str, ...] = (
    "PNG", "JPEG", "BMP", "DIB", "WEBP", "TIFF", "GIF", "PPM", "TGA", "JPEG2000", "AVIF", "QOI",
)

#: Output suffix -> (Pillow format, save options). An empty suffix writes PNG.
#: JPEG is written at quality 95 without chroma subsampling (4:4:4), so restored
#: colour detail is kept; WebP is written lossless.
SAVE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"lossless": True}),
    ".bmp": ("BMP", {}),
    ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {}),
}

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def format_path(path: str | os.PathLike[str]) -> str:
    """Return ``path`` as text safe for a one-line message (newlines escaped)."""
    return os.fspath(path).replace("\r", "\\r").replace("\n", "\\n")


class ImageError(ValueError):
    """A bad image file. ``str(error)`` is one line: ``"<path>: <reason and fix>"``.

    Attributes:
        path: the file that failed.
        reason: what is wrong and how to fix it, without the path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(reason.split())
        super().__init__(f"{format_path(path)}: {self.reason}")


@dataclass(frozen=True)
class Placement:
    """Where an original image sits inside the padded square made by :func:`fit`.

    Attributes:
        height, width: the original image size in pixels.
        pad_top, pad_bottom, pad_left, pad_right: padding added on each side;
            the padded square's side is ``max(height, width)``.
    """

    height: int
    width: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int

    @property
    def original_size(self) -> tuple[int, int]:
        """``(height, width)`` of the original image."""
        return self.height, self.width

    @property
    def side(self) -> int:
        """Side of the padded square in pixels."""
        return max(self.height, self.width)


# --------------------------------------------------------------------------- loading


def load_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as upright RGB.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this (checked from the
            header, before decoding).

    Returns:
        ``uint8 [H, W, 3]`` RGB, EXIF orientation applied; conversions as in the
        module docstring.

    Raises:
        ImageError: the file is missing, a folder, unreadable, not an image,
            corrupt or truncated, empty, or too large.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open(path, "rb") as fp:
            image = _exif_upright(path, _open_and_decode(path, fp, max_pixels))
            return _to_rgb_array(path, image)
    except PermissionError:
        raise ImageError(path, "permission denied; make the file readable (chmod +r)") from None
    except IsADirectoryError:
        raise ImageError(path, "is a directory, not an image file") from None
    except OSError as exc:  # raised by open() itself, e.g. EIO or a vanished file
        raise ImageError(path, f"cannot read the file ({_os_reason(exc)})") from None


def _check_file(path: Path) -> None:
    """Raise :class:`ImageError` unless ``path`` is a non-empty regular file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(path, "file not found; check the path") from None
    except NotADirectoryError:
        raise ImageError(path, "file not found (a parent in the path is a file, not a folder)") from None
    except PermissionError:
        raise ImageError(path, "permission denied on a parent folder; make it readable") from None
    except OSError as exc:
        raise ImageError(path, f"cannot access the file ({_os_reason(exc)})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(path, "is a directory, not an image file; pass an image file (folders are for batch input)")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(path, "is not a regular file (device, pipe or socket); pass an image file")
    if info.st_size == 0:
        raise ImageError(path, "empty file (0 bytes); re-export or re-download the image")


def _open_and_decode(path: Path, fp: Any, max_pixels: int) -> Image.Image:
    """Identify, size-check, then fully decode the image in ``fp``."""
    formats = _read_formats()
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below replaces Pillow's warning. (catch_warnings
            # swaps a process-wide filter list; a race with another thread can at worst
            # let one such warning through.)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp, formats=formats)
    except UnidentifiedImageError:
        raise ImageError(
            path, "not an image file Pillow can read (or a corrupt header); "
            f"supported formats: {', '.join(formats)}",
        ) from None
    except Image.DecompressionBombError as exc:
        # Pillow's hard limit (2 x MAX_IMAGE_PIXELS) fired before our own check could.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(found.group(1)):,} pixels" if found else _one_line(exc)
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageError(
            path, f"image too large: {count}, over Pillow's decompression-bomb limit of {limit:,}; downscale it first",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(path, f"corrupt image header ({_one_line(exc)}); re-export the image") from None

    width, height = image.size
    pixels = width * height
    if width <= 0 or height <= 0:
        raise ImageError(path, f"zero-sized image ({width}x{height}); re-export the image")
    if pixels > max_pixels:
        raise ImageError(
            path, f"image too large: {width}x{height} = {pixels:,} pixels, over the limit of "
            f"{max_pixels:,}; downscale it first or raise max_pixels",
        )
    try:
        image.load()
    except Exception as exc:  # noqa: BLE001 -- any decoder failure on untrusted bytes is bad input
        raise ImageError(
            path, f"corrupt or truncated image data ({type(exc).__name__}: {_one_line(exc)}); "
            "re-export or re-download the image",
        ) from None
    if getattr(image, "n_frames", 1) > 1:
        logger.debug("%s: %d frames, using the first", format_path(path), image.n_frames)
    return image


def _read_formats() -> list[str]:
    """The entries of :data:`READ_FORMATS` this Pillow build can open."""
    Image.init()
    return [name for name in READ_FORMATS if name in Image.OPEN]


def _exif_upright(path: Path, image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a malformed EXIF block is logged and ignored."""
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 -- broken metadata must not reject a good image
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", format_path(path), _one_line(exc))
        return image
    return image if upright is None else upright


def _to_rgb_array(path: Path, image: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any supported mode to ``uint8 [H, W, 3]``."""
    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:4]
        # Composite over black, rounded half up: exact for alpha 0 and 255.
        return ((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8)
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        gray = ((np.clip(values, 0, 65535) + 128) // 257).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        gray = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    try:
        rgb = image if mode == "RGB" else image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(path, f"unsupported pixel format {mode!r} ({_one_line(exc)}); convert the image to RGB") from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _os_reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, "") or _one_line(exc)


# --------------------------------------------------------------------------- size policy


def fit(image: np.ndarray, resolution: int) -> tuple[np.ndarray, Placement]:
    """Pad to a square with mirrored borders, then resize to the model resolution.

    Args:
        image: ``uint8 [H, W, 3]``.
        resolution: side of the model input, in pixels.

    Returns:
        ``(square, placement)``: ``square`` is ``uint8 [resolution, resolution, 3]``
        (the input array itself when it is already that size, not a copy);
        ``placement`` is what :func:`unfit` needs to undo it.
    """
    _check_rgb(image, "fit")
    if resolution < 1:
        raise ValueError(f"fit: resolution must be >= 1, got {resolution}")
    height, width = image.shape[:2]
    side = max(height, width)
    pad_h, pad_w = side - height, side - width
    placement = Placement(height, width, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
    square = image
    if pad_h or pad_w:
        widths = ((placement.pad_top, placement.pad_bottom), (placement.pad_left, placement.pad_right), (0, 0))
        thin = max(placement.pad_bottom, placement.pad_right) > min(height, width) - 1
        square = np.pad(image, widths, mode="edge" if thin else "reflect")
    if side != resolution:
        square = _resize(square, resolution)
    return square, placement


def unfit(restored: np.ndarray, placement: Placement) -> np.ndarray:
    """Undo :func:`fit`: resize back to the padded square and crop the padding off.

    Args:
        restored: ``uint8 [R, R, 3]``, the restored square at any resolution R.
        placement: from the :func:`fit` call that made the model input.

    Returns:
        ``uint8 [height, width, 3]`` with the original image's size, a new array
        (never a view of ``restored``). When R equals
        the padded square's side no resampling happens, so an image that went in
        at the model resolution comes back bit for bit.
    """
    _check_rgb(restored, "unfit")
    if restored.shape[0] != restored.shape[1]:
        raise ValueError(f"unfit: expected a square image, got {restored.shape[1]}x{restored.shape[0]}")
    square = restored if restored.shape[0] == placement.side else _resize(restored, placement.side)
    top, left = placement.pad_top, placement.pad_left
    # A copy, never a view: ``restored`` may be a buffer the runtime reuses for the next batch.
    return square[top : top + placement.height, left : left + placement.width].copy()


def prepare_square(
    image: np.ndarray, resolution: int, crop_box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Crop ``crop_box``, center-crop to a square, resize to ``resolution`` (Lanczos).

    Args:
        image: ``uint8 [H, W, 3]``.
        resolution: output side R.
        crop_box: ``(left, top, right, bottom)`` in pixels, clipped to the image
            (an empty intersection uses the whole image).

    Returns:
        ``uint8 [R, R, 3]``; faces are never stretched. The square is cut and resized
        in one Pillow call (``resize(box=...)``), so near its edges the filter reads
        the real pixels just outside the square (where the image has them) rather
        than repeating the edge.
    """
    h, w = image.shape[:2]
    left, top, right, bottom = 0, 0, w, h
    if crop_box is not None:
        l, t, r, b = (int(v) for v in crop_box)
        l, t, r, b = max(l, 0), max(t, 0), min(r, w), min(b, h)
        if r > l and b > t:
            left, top, right, bottom = l, t, r, b
    side = min(right - left, bottom - top)
    left += (right - left - side) // 2
    top += (bottom - top - side) // 2
    if side == resolution:
        return np.ascontiguousarray(image[top : top + side, left : left + side])
    pil = Image.fromarray(image)
    resized = pil.resize((resolution, resolution), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
    return np.asarray(resized, dtype=np.uint8)


def _resize(square: np.ndarray, side: int) -> np.ndarray:
    """Lanczos-resize ``uint8 [S, S, 3]`` to ``[side, side, 3]``."""
    pil = Image.fromarray(np.ascontiguousarray(square))
    return np.asarray(pil.resize((side, side), Image.Resampling.LANCZOS), dtype=np.uint8)


def _check_rgb(image: np.ndarray, where: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{where}: expected a uint8 [H, W, 3] array, got {dtype} {shape}; use load_image()")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{where}: image is empty ({image.shape[1]}x{image.shape[0]})")


# --------------------------------------------------------------------------- color fix


def wavelet_color_fix(image: np.ndarray, reference: np.ndarray, levels: int) -> np.ndarray:
    """The restored image's detail over the LQ input's colours (StableSR's wavelet color fix).

    Diffusion restorers drift in colour on faces unlike their training data; the LQ input keeps
    the right low frequencies. Both images are split by an ``levels``-level à trous wavelet
    decomposition (a 3x3 ``[1, 2, 1]/4`` binomial blur dilated 1, 2, 4, ... pixels, edges
    replicated, as StableSR's ``wavelet_reconstruction``); the result is ``image``'s high
    frequencies plus ``reference``'s residual low frequencies. Blurring a constant gives it back,
    so a uniform colour cast of ``image`` is removed exactly.

    Args:
        image: ``float [B, C, H, W]``, the decoded restoration.
        reference: same shape, the LQ input at the model resolution.
        levels: decomposition depth; 0 returns ``image`` unchanged. The low band left after ``n``
            levels is about ``2**n`` pixels wide.

    Returns:
        ``float32 [B, C, H, W]``, a new array.
    """
    if image.shape != reference.shape or image.ndim != 4:
        raise ValueError(f"wavelet_color_fix: expected two [B, C, H, W] arrays of one shape, got "
                         f"{image.shape} and {reference.shape}")
    if levels < 0:
        raise ValueError(f"wavelet_color_fix: levels must be >= 0, got {levels}")
    x = image.astype(np.float32)
    if levels == 0:
        return x
    return x - _wavelet_low(x, levels) + _wavelet_low(reference.astype(np.float32), levels)


def _wavelet_low(x: np.ndarray, levels: int) -> np.ndarray:
    """The low band of ``levels`` à trous levels over the last two axes."""
    for level in range(levels):
        r = 2**level
        p = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
        h = 0.25 * p[..., : -2 * r] + 0.5 * p[..., r:-r] + 0.25 * p[..., 2 * r :]
        x = 0.25 * h[..., : -2 * r, :] + 0.5 * h[..., r:-r, :] + 0.25 * h[..., 2 * r :, :]
    return x


# --------------------------------------------------------------------------- model tensors


def to_float(images: np.ndarray) -> np.ndarray:
    """``uint8 [B, H, W, 3]`` images -> ``float32 [B, 3, H, W]`` in [-1, 1] (``v / 127.5 - 1``)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"to_float: expected uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
    out = images.transpose(0, 3, 1, 2).astype(np.float32)
    out /= np.float32(127.5)
    out -= np.float32(1.0)
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    """``float [B, 3, H, W]`` in [-1, 1] -> ``uint8 [B, H, W, 3]``.

    Values are mapped with ``(x + 1) * 127.5``, clipped to [0, 255] and rounded
    half to even (``np.rint``). Exact inverse of :func:`to_float` on its outputs.
    Infinities clip to black or white.

    Raises:
        ValueError: on a wrong shape or dtype, or NaN values (a numerically broken
            model output is reported rather than written as black pixels).
    """
    if x.ndim != 4 or x.shape[1] != 3 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"to_uint8: expected float [B, 3, H, W], got {x.dtype} {x.shape}")
    nans = int(np.count_nonzero(np.isnan(x)))
    if nans:
        raise ValueError(
            f"to_uint8: model output has {nans} NaN values; the model overflowed, "
            "run it at a higher precision (float32)"
        )
    work = x.astype(np.result_type(x.dtype, np.float32))
    work += 1.0
    work *= 127.5
    np.clip(work, 0.0, 255.0, out=work)
    return np.rint(work).astype(np.uint8).transpose(0, 2, 3, 1).copy()


# --------------------------------------------------------------------------- saving


def save_image(image: np.ndarray, path: Path) -> None:
    """Write ``uint8 [H, W, 3]`` RGB to ``path`` atomically, creating parent folders.

    The format follows the suffix (case-insensitive): ``.png`` (also for no
    suffix), ``.jpg``/``.jpeg`` (quality 95, 4:4:4), ``.webp`` (lossless),
    ``.bmp``, ``.tif``/``.tiff``. The image is encoded into a hidden temporary
    file in the same folder (``.<name>.<random>.tmp``), fsynced and renamed over
    ``path``. On any error the temporary file is removed, ``path`` is left as it
    was (absent, or the previous file), and the error propagates.

    Raises:
        ValueError: unsupported suffix or not a ``uint8 [H, W, 3]`` array.
        OSError: the folder or file cannot be written.
    """
    path = Path(path)
    _check_rgb(image, "save_image")
    fmt, options = _save_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fp:
            Image.fromarray(np.ascontiguousarray(image)).save(fp, format=fmt, **options)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _save_format(path: Path) -> tuple[str, dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == "":
        return SAVE_FORMATS[".png"]
    if suffix not in SAVE_FORMATS:
        raise ValueError(
            f"{format_path(path)}: cannot write {suffix!r} images; use one of {', '.join(SAVE_FORMATS)}"
        )
    return SAVE_FORMATS[suffix]


def _create_temp(path: Path) -> tuple[Path, int]:
    """Create ``.<name>.<random>.tmp`` next to ``path`` (mode 0666 minus umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a unique temporary file", str(path.parent))


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; not possible on every platform, so best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
