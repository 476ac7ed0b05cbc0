"""Image files in and out: decoding any common format to RGB uint8, atomic saving.

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
    "PNG",
    "JPEG",
    "BMP",
    "DIB",
    "WEBP",
    "TIFF",
    "GIF",
    "PPM",
    "TGA",
    "JPEG2000",
    "AVIF",
    "QOI",
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
            path,
            f"not an image file Pillow can read (or a corrupt header); supported formats: {', '.join(formats)}",
        ) from None
    except Image.DecompressionBombError as exc:
        # Pillow's hard limit (2 x MAX_IMAGE_PIXELS) fired before our own check could.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(found.group(1)):,} pixels" if found else _one_line(exc)
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageError(
            path,
            f"image too large: {count}, over Pillow's decompression-bomb limit of {limit:,}; downscale it first",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(path, f"corrupt image header ({_one_line(exc)}); re-export the image") from None

    width, height = image.size
    pixels = width * height
    if width <= 0 or height <= 0:
        raise ImageError(path, f"zero-sized image ({width}x{height}); re-export the image")
    if pixels > max_pixels:
        raise ImageError(
            path,
            f"image too large: {width}x{height} = {pixels:,} pixels, over the limit of "
            f"{max_pixels:,}; downscale it first or raise max_pixels",
        )
    try:
        image.load()
    except Exception as exc:  # noqa: BLE001 -- any decoder failure on untrusted bytes is bad input
        raise ImageError(
            path,
            f"corrupt or truncated image data ({type(exc).__name__}: {_one_line(exc)}); "
            "re-export or re-download the image",
        ) from None
    frames = getattr(image, "n_frames", 1)  # multi-frame formats only
    if frames > 1:
        logger.debug("%s: %d frames, using the first", format_path(path), frames)
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
        raise ImageError(
            path, f"unsupported pixel format {mode!r} ({_one_line(exc)}); convert the image to RGB"
        ) from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _os_reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, "") or _one_line(exc)


def check_rgb(image: np.ndarray, where: str) -> None:
    """Raise ValueError unless ``image`` is a non-empty ``uint8 [H, W, 3]`` array (``where`` names the caller)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{where}: expected a uint8 [H, W, 3] array, got {dtype} {shape}; use load_image()")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{where}: image is empty ({image.shape[1]}x{image.shape[0]})")


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
    check_rgb(image, "save_image")
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
        raise ValueError(f"{format_path(path)}: cannot write {suffix!r} images; use one of {', '.join(SAVE_FORMATS)}")
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
