"""flipnet_rt.imaging at its edges: the exact one-line error of every failure path, the padding rule's
boundary, prepare_square's crop arithmetic, the temporary-file rule of save_image, and precision
(issue 19: each test kills mutants that survived the other imaging tests)."""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from flipnet_rt.imaging import io as image_io
from flipnet_rt.imaging.geometry import fit, prepare_square, unfit
from flipnet_rt.imaging.io import READ_FORMATS, ImageError, check_rgb, load_image, save_image
from flipnet_rt.imaging.tensor import to_float, to_uint8


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _error(path: Path, **kwargs) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(path, **kwargs)
    assert info.value.path == path
    return info.value


def _png(tmp_path: Path, name: str = "a.png", h: int = 4, w: int = 4) -> Path:
    path = tmp_path / name
    Image.fromarray(_image(h, w)).save(path)
    return path


# ------------------------------------------------------------------ load_image: every error, exactly


def test_missing_parent_file_folder_fifo_and_empty(tmp_path: Path) -> None:
    assert _error(tmp_path / "x.png").reason == "file not found; check the path"
    (tmp_path / "plain").write_bytes(b"x")
    assert _error(tmp_path / "plain" / "c.png").reason == (
        "file not found (a parent in the path is a file, not a folder)"
    )
    (tmp_path / "d.png").mkdir()
    assert _error(tmp_path / "d.png").reason == (
        "is a directory, not an image file; pass an image file (folders are for batch input)"
    )
    os.mkfifo(tmp_path / "pipe.png")
    assert _error(tmp_path / "pipe.png").reason == (
        "is not a regular file (device, pipe or socket); pass an image file"
    )
    (tmp_path / "e.png").write_bytes(b"")
    assert _error(tmp_path / "e.png").reason == "empty file (0 bytes); re-export or re-download the image"


@pytest.mark.parametrize(
    "exc, reason",
    [
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied on a parent folder; make it readable"),
        (OSError(errno.EIO, "Input/output error"), "cannot access the file (Input/output error)"),
        (OSError(errno.EIO, None), "cannot access the file (EIO)"),  # no strerror: the errno's name
    ],
)
def test_stat_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: OSError, reason: str) -> None:
    path = _png(tmp_path)
    real = pathlib.Path.stat

    def stat(self, *args, **kwargs):
        if self == path:
            raise exc
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "stat", stat)
    assert _error(path).reason == reason


@pytest.mark.parametrize(
    "exc, reason",
    [
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied; make the file readable (chmod +r)"),
        (IsADirectoryError(errno.EISDIR, "Is a directory"), "is a directory, not an image file"),
        (OSError(errno.EIO, "Input/output error"), "cannot read the file (Input/output error)"),
        (OSError("vanished"), "cannot read the file (vanished)"),  # neither strerror nor errno
    ],
)
def test_open_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: OSError, reason: str) -> None:
    path = _png(tmp_path)

    def failing_open(*args, **kwargs):
        raise exc

    monkeypatch.setattr(image_io, "open", failing_open, raising=False)
    error = _error(path)
    assert error.reason == reason and str(error) == f"{path}: {reason}"


def test_not_an_image_lists_the_formats_this_pillow_reads(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    path.write_text("not an image")
    Image.init()
    formats = ", ".join(f for f in READ_FORMATS if f in Image.OPEN)
    assert _error(path).reason == (
        f"not an image file Pillow can read (or a corrupt header); supported formats: {formats}"
    )


@pytest.mark.parametrize(
    "exc, reason",
    [
        (SyntaxError("bad\n  header"), "corrupt image header (bad header); re-export the image"),
        (EOFError(), "corrupt image header (EOFError); re-export the image"),  # empty text: the type's name
    ],
)
def test_corrupt_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception, reason: str) -> None:
    path = _png(tmp_path)

    def failing(*args, **kwargs):
        raise exc

    monkeypatch.setattr(Image, "open", failing)
    assert _error(path).reason == reason


def test_decompression_bomb_without_a_pixel_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _png(tmp_path)

    def bomb(*args, **kwargs):
        raise Image.DecompressionBombError("too   big")

    monkeypatch.setattr(Image, "open", bomb)
    assert _error(path).reason == (
        f"image too large: too big, over Pillow's decompression-bomb limit of {2 * Image.MAX_IMAGE_PIXELS:,}; "
        "downscale it first"
    )


def test_only_the_bomb_warning_is_silenced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between Pillow's warning and error limits our own max_pixels check answers (no warning
    escapes, even as an error); any other warning Image.open raises still reaches the caller."""
    path = tmp_path / "big.png"
    big = _png(tmp_path, "one.png", 1, 1).read_bytes()
    import struct
    import zlib

    data = bytearray(big)
    data[16:24] = struct.pack(">II", 10_000, 10_000)  # 100 MP: over MAX_IMAGE_PIXELS (~89 MP), under 2x
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "image too large: 10000x10000" in _error(path).reason
    real_open = Image.open

    def noisy_open(*args, **kwargs):
        warnings.warn("something else", UserWarning, stacklevel=2)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", noisy_open)
    with pytest.warns(UserWarning, match="something else"):
        load_image(_png(tmp_path, "two.png"))


class _FakeImage:
    def __init__(self, size):
        self.size, self.mode, self.info = size, "RGB", {}

    def load(self):
        raise ValueError("decoder\nbroke")


@pytest.mark.parametrize("size", [(0, 5), (5, 0), (0, 0)])
def test_zero_sized_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size) -> None:
    path = _png(tmp_path)
    monkeypatch.setattr(Image, "open", lambda *a, **k: _FakeImage(size))
    assert _error(path).reason == f"zero-sized image ({size[0]}x{size[1]}); re-export the image"


def test_decoder_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _png(tmp_path)
    monkeypatch.setattr(Image, "open", lambda *a, **k: _FakeImage((3, 2)))
    assert _error(path).reason == (
        "corrupt or truncated image data (ValueError: decoder broke); re-export or re-download the image"
    )


def test_max_pixels_is_inclusive(tmp_path: Path) -> None:
    path = _png(tmp_path, h=10, w=10)
    assert load_image(path, max_pixels=100).shape == (10, 10, 3)
    assert "100 pixels, over the limit of 99" in _error(path, max_pixels=99).reason


def test_multi_frame_gif_uses_the_first_frame_and_logs_it(tmp_path: Path, caplog) -> None:
    path = tmp_path / "two.gif"
    frames = [Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with caplog.at_level(logging.DEBUG, logger="flipnet_rt.imaging.io"):
        out = load_image(path)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert [r.getMessage() for r in caplog.records] == [f"{path}: 2 frames, using the first"]


def test_unreadable_exif_is_logged_and_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    path = _png(tmp_path)

    def broken(image, *args, **kwargs):
        raise ValueError("bad\nexif")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    with caplog.at_level(logging.WARNING, logger="flipnet_rt.imaging.io"):
        out = load_image(path)
    np.testing.assert_array_equal(out, np.asarray(Image.open(path).convert("RGB")))
    assert [r.getMessage() for r in caplog.records] == [f"{path}: ignoring unreadable EXIF orientation (bad exif)"]


def test_unsupported_pixel_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_convert(self, *args, **kwargs):
        raise ValueError("conversion\nnot supported")

    monkeypatch.setattr(Image.Image, "convert", no_convert)
    gray = tmp_path / "g.png"
    Image.fromarray(_image(2, 2)[..., 0]).save(gray)
    assert _error(gray).reason == "unsupported pixel format 'L' (conversion not supported); convert the image to RGB"


# ------------------------------------------------------------------ pixel conversions at their edges


def test_rgb_is_returned_as_a_writable_copy(tmp_path: Path) -> None:
    path = _png(tmp_path)
    out = load_image(path)
    np.testing.assert_array_equal(out, np.asarray(Image.open(path)))
    assert out.dtype == np.uint8 and out.flags.writeable


def test_a_transparent_colour_key_outside_palettes_is_ignored(tmp_path: Path) -> None:
    """Only alpha channels and palette transparency are composited (module docstring): an RGB or
    grayscale PNG's tRNS colour key keeps its colour."""
    rgb = np.array([[[10, 20, 30], [200, 100, 50]]], np.uint8)
    path = tmp_path / "key.png"
    Image.fromarray(rgb).save(path, transparency=(10, 20, 30))
    assert "transparency" in Image.open(path).info
    np.testing.assert_array_equal(load_image(path), rgb)
    gray = tmp_path / "gkey.png"
    Image.fromarray(np.array([[7, 90]], np.uint8)).save(gray, transparency=7)
    assert load_image(gray)[0, :, 0].tolist() == [7, 90]


def test_opaque_palette_keeps_its_colours(tmp_path: Path) -> None:
    """A palette image without transparency is not composited (no alpha): colours exact."""
    path = tmp_path / "p.png"
    Image.fromarray(_image(6, 6)).quantize(8).save(path)
    expected = np.asarray(Image.open(path).convert("RGB"))
    out = load_image(path)
    np.testing.assert_array_equal(out, expected)


def test_alpha_compositing_rounds_half_up_exactly(tmp_path: Path) -> None:
    """rgb * alpha / 255 rounded: every (value, alpha) pair against a float reference."""
    v, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgba = np.stack([v, v, v, a], axis=-1).astype(np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = load_image(path)
    expected = np.floor(v * a / 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert out.dtype == np.uint8 and out.shape == (256, 256, 3)


def test_sixteen_bit_rounding_and_clipping(tmp_path: Path) -> None:
    """round(v / 257) for every 16-bit value (Python's round on exact halves: none occur)."""
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    out = load_image(path)
    expected = np.array([int(v / 257 + 0.5) for v in range(65536)], np.uint8).reshape(256, 256)
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 2], expected)


def test_thirty_two_bit_values_are_clipped_to_sixteen_bit(tmp_path: Path) -> None:
    values = np.array([[-1000, 0, 65535, 70000]], np.int32)
    path = tmp_path / "i.tif"
    Image.fromarray(values, "I").save(path)
    assert load_image(path)[0, :, 0].tolist() == [0, 0, 255, 255]


def test_float_image_nan_is_black(tmp_path: Path) -> None:
    values = np.array([[np.nan, 0.5, 2.0, -1.0]], np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(values, "F").save(path)
    out = load_image(path)
    assert out[0, :, 0].tolist() == [0, 128, 255, 0] and out.dtype == np.uint8 and out.shape == (1, 4, 3)


# ------------------------------------------------------------------ check_rgb and its callers' names


@pytest.mark.parametrize(
    "call, where",
    [
        (lambda a: fit(a, 4), "fit"),
        (lambda a: unfit(a, fit(_image(4, 4), 4)[1]), "unfit"),
        (lambda a: save_image(a, Path("/nonexistent/x.png")), "save_image"),
    ],
)
def test_array_errors_name_the_caller(call, where) -> None:
    with pytest.raises(ValueError) as info:
        call(np.zeros((2, 2, 3)))
    assert str(info.value) == f"{where}: expected a uint8 [H, W, 3] array, got float64 (2, 2, 3); use load_image()"


def test_check_rgb_messages() -> None:
    with pytest.raises(ValueError) as info:
        check_rgb([[1, 2]], "here")  # type: ignore[arg-type]
    assert str(info.value) == "here: expected a uint8 [H, W, 3] array, got list None; use load_image()"
    for shape, size in (((0, 5, 3), "5x0"), ((5, 0, 3), "0x5"), ((0, 0, 3), "0x0")):
        with pytest.raises(ValueError) as info:
            check_rgb(np.zeros(shape, np.uint8), "here")
        assert str(info.value) == f"here: image is empty ({size})"


def test_format_path_escapes_carriage_returns() -> None:
    assert image_io.format_path("a\rb\nc") == "a\\rb\\nc"


# ------------------------------------------------------------------ geometry


def test_padding_mirrors_up_to_the_edge_then_repeats() -> None:
    """Padding of p per side mirrors while p <= min(h, w) - 1, repeats the edge beyond that."""
    mirror = _image(3, 7)  # pads 2 + 2 rows: exactly min(h, w) - 1
    square, _ = fit(mirror, 7)
    np.testing.assert_array_equal(square, mirror[[2, 1, 0, 1, 2, 1, 0]])
    thin = _image(3, 9)  # pads 3 + 3 rows: one more than that
    square, _ = fit(thin, 9)
    np.testing.assert_array_equal(square, thin[[0, 0, 0, 0, 1, 2, 2, 2, 2]])
    tall = _image(8, 4)  # columns: 2 + 2, min - 1 = 3: mirrored
    square, _ = fit(tall, 8)
    np.testing.assert_array_equal(square, tall[:, [2, 1, 0, 1, 2, 3, 2, 1]])


def test_unfit_resizes_with_lanczos_and_refuses_non_squares() -> None:
    _, placement = fit(_image(12, 9), 8)
    restored = _image(8, 8, seed=1)
    expected = np.asarray(Image.fromarray(restored).resize((12, 12), Image.Resampling.LANCZOS))[:, 1:10]
    np.testing.assert_array_equal(unfit(restored, placement), expected)
    with pytest.raises(ValueError) as info:
        unfit(_image(4, 5), placement)
    assert str(info.value) == "unfit: expected a square image, got 5x4"


def test_prepare_square_center_crops_at_the_resolution() -> None:
    image = _image(10, 14)
    np.testing.assert_array_equal(prepare_square(image, 10), image[0:10, 2:12])
    tall = _image(14, 10)
    np.testing.assert_array_equal(prepare_square(tall, 10), tall[2:12, 0:10])
    # crop box (left, top, right, bottom) 8 x 6: its centered 6 x 6 square
    np.testing.assert_array_equal(prepare_square(image, 6, (1, 2, 9, 8)), image[2:8, 2:8])
    np.testing.assert_array_equal(prepare_square(image, 3, (5, 4, 8, 9)), image[5:8, 5:8])
    np.testing.assert_array_equal(prepare_square(image, 6, (0, 0, 6, 10)), image[2:8, 0:6])  # a box at the edge
    # clipped to the image; an empty or inverted box means the whole image
    for box in ((-3, -2, 20, 30), (20, 20, 30, 30), (9, 8, 1, 2), (3, 3, 3, 9), (3, 3, 9, 3)):
        np.testing.assert_array_equal(prepare_square(image, 10, box), image[0:10, 2:12])
    np.testing.assert_array_equal(prepare_square(image, 4, (1.7, 0, 5.2, 10)), image[3:7, 1:5])
    assert prepare_square(image, 10).flags.c_contiguous


def test_prepare_square_resizes_the_box_in_one_lanczos_call() -> None:
    image = _image(10, 14)
    got = prepare_square(image, 4, (1, 1, 13, 9))  # 12 x 8 box -> square 8 at left 3, top 1
    expected = np.asarray(Image.fromarray(image).resize((4, 4), Image.Resampling.LANCZOS, box=(3, 1, 11, 9)))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint8 and got.shape == (4, 4, 3)


# ------------------------------------------------------------------ save_image's temporary file


def test_an_existing_temporary_name_is_never_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """O_EXCL: with every random name taken, save_image gives up after 100 names, raising EEXIST,
    and the file that held the name is untouched."""
    taken = tmp_path / ".out.png.abcd.tmp"
    taken.write_bytes(b"someone else's")
    calls = []
    monkeypatch.setattr(image_io.secrets, "token_hex", lambda n: calls.append(n) or "abcd")
    with pytest.raises(FileExistsError) as info:
        save_image(_image(2, 2), tmp_path / "out.png")
    assert info.value.errno == errno.EEXIST and info.value.filename == str(tmp_path)
    assert info.value.strerror == "could not create a unique temporary file"
    assert len(calls) == 100 and taken.read_bytes() == b"someone else's"
    assert not (tmp_path / "out.png").exists()


def test_unknown_suffix_lists_the_writable_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        save_image(_image(2, 2), tmp_path / "x.gif")
    assert str(info.value) == (
        f"{tmp_path / 'x.gif'}: cannot write '.gif' images; use one of .png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff"
    )


# ------------------------------------------------------------------ tensor conversions


def test_tensor_shape_and_dtype_errors() -> None:
    with pytest.raises(ValueError) as info:
        to_float(np.zeros((1, 2, 2, 4), np.uint8))
    assert str(info.value) == "to_float: expected uint8 [B, H, W, 3], got uint8 (1, 2, 2, 4)"
    with pytest.raises(ValueError) as info:
        to_uint8(np.zeros((1, 3, 2, 2), np.int64))
    assert str(info.value) == "to_uint8: expected float [B, 3, H, W], got int64 (1, 3, 2, 2)"
    x = np.zeros((1, 3, 2, 2), np.float16)
    x[0, 1, 0, :] = np.nan
    with pytest.raises(ValueError) as info:
        to_uint8(x)
    assert str(info.value) == (
        "to_uint8: model output has 2 NaN values; the model overflowed, run it at a higher precision (float32)"
    )


def test_to_uint8_computes_half_precision_input_in_float32() -> None:
    """An fp16 model output converts exactly like its float32 copy (fp16 arithmetic would round
    (x + 1) * 127.5 differently for hundreds of inputs, e.g. -0.863 -> 18 instead of 17)."""
    x = np.unique(np.arange(-1, 1, 2**-12).astype(np.float16)).reshape(1, 1, 1, -1).repeat(3, axis=1)
    out = to_uint8(x)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, to_uint8(x.astype(np.float32)))


def test_a_failed_cleanup_does_not_hide_the_encoder_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """save_image removes its temporary file on any error; when even that fails (the file is
    already gone), the caller still gets the original error, not the cleanup's."""

    def failing_save(self, *args, **kwargs):
        raise RuntimeError("encoder exploded")

    def failing_unlink(path, *args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))

    monkeypatch.setattr(Image.Image, "save", failing_save)
    monkeypatch.setattr(image_io.os, "unlink", failing_unlink)
    with pytest.raises(RuntimeError, match="encoder exploded"):
        save_image(_image(2, 2), tmp_path / "x.png")


def test_float_image_scaling_is_exactly_rounded(tmp_path: Path) -> None:
    """v * 255 rounded half to even, exactly (fractions): float32 arithmetic would round the product
    first and get values such as (k + 0.5) / 255 wrong by one grey level."""
    from fractions import Fraction

    k = np.arange(256)
    near_halves = ((k + 0.5) / 255).astype(np.float32)
    values = np.concatenate(
        [np.nextafter(near_halves, np.float32(0)), near_halves, np.nextafter(near_halves, np.float32(1))]
    ).reshape(3, 256)
    values = np.clip(values, 0, 1).astype(np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(values, "F").save(path)
    out = load_image(path)[..., 0]
    expected = [[round(Fraction(float(v)) * 255) for v in row] for row in values]
    assert out.tolist() == expected
