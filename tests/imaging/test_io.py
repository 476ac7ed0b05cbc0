"""Tests for flipnet_rt.imaging.io: loading any format, errors, atomic saving.

Every fixture image is written in code into pytest's tmp_path.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from flipnet_rt.imaging import io as image_io
from flipnet_rt.imaging.io import MAX_PIXELS, ImageError, load_image, save_image


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _load_error(path: Path, **kwargs: int) -> str:
    """Load ``path`` expecting an ImageError; check its message is one line naming the file."""
    with pytest.raises(ImageError) as info:
        load_image(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert path.name in message
    assert message.startswith(f"{path}: ")
    return message


def _png_with_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR claims ``width x height`` (CRC fixed up)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (10, 20, 30)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_rgb_round_trips_exactly(tmp_path: Path, suffix: str) -> None:
    pixels = _noise(13, 17)
    path = tmp_path / f"a{suffix}"
    Image.fromarray(pixels).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    loaded = load_image(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (13, 17, 3)
    np.testing.assert_array_equal(loaded, pixels)


def test_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    pixels = np.full((16, 24, 3), (200, 100, 50), np.uint8)
    path = tmp_path / "a.jpg"
    Image.fromarray(pixels).save(path, quality=100)
    loaded = load_image(str(path))
    assert loaded.shape == (16, 24, 3) and loaded.dtype == np.uint8
    assert np.abs(loaded.astype(int) - pixels).max() <= 3


def test_grayscale_repeats_channels(tmp_path: Path) -> None:
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    path = tmp_path / "g.png"
    Image.fromarray(gray).save(path)
    loaded = load_image(path)
    assert loaded.shape == (6, 10, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], gray)


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 257, 257 * 128, 65535, 65535 - 200, 300]], dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    loaded = load_image(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (1, 6, 3)
    np.testing.assert_array_equal(loaded[0, :, 0], [0, 1, 128, 255, 254, 1])
    np.testing.assert_array_equal(loaded[..., 0], loaded[..., 2])


def test_thirty_two_bit_integer_read_as_sixteen_bit(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 10, 65535, 100000, -5]], dtype=np.int32)
    path = tmp_path / "int.tif"
    Image.fromarray(values).save(path)
    np.testing.assert_array_equal(load_image(path)[0, :, 1], [0, 10, 255, 255, 0])


def test_float_image_read_as_unit_range(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5, 1.0, 2.0, -1.0]], dtype=np.float32)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    np.testing.assert_array_equal(load_image(path)[0, :, 0], [0, 128, 255, 255, 0])


def test_rgba_composited_over_black(tmp_path: Path) -> None:
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]], dtype=np.uint8)
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    loaded = load_image(path)
    assert loaded.shape == (1, 3, 3)
    np.testing.assert_array_equal(loaded[0, 0], [200, 100, 50])  # opaque: exact
    np.testing.assert_array_equal(loaded[0, 1], [0, 0, 0])  # transparent: black
    np.testing.assert_array_equal(loaded[0, 2], [100, 50, 25])  # half: rgb * 128 / 255, rounded


def test_gray_alpha_composited_over_black(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    Image.fromarray(np.array([[[90, 255], [90, 0]]], dtype=np.uint8), mode="LA").save(path)
    np.testing.assert_array_equal(load_image(path)[0], [[90, 90, 90], [0, 0, 0]])


def test_palette_image(tmp_path: Path) -> None:
    image = Image.new("P", (4, 2))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    image.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    path = tmp_path / "pal.png"
    image.save(path)
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(loaded[0, 1], [0, 255, 0])


def test_palette_transparency_composited_over_black(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    image.putdata([0, 1])
    path = tmp_path / "pal_t.png"
    image.save(path, transparency=1)
    np.testing.assert_array_equal(load_image(path)[0], [[255, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("mode", ["1", "CMYK"])
def test_other_modes_convert_to_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / ("m.jpg" if mode == "CMYK" else "m.png")
    Image.new(mode, (5, 3)).save(path)
    loaded = load_image(path)
    assert loaded.shape == (3, 5, 3) and loaded.dtype == np.uint8


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = (255, 0, 0)  # left half red
    pixels[:, 10:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, quality=100, exif=exif)
    loaded = load_image(path)
    assert loaded.shape == (20, 10, 3)  # upright: portrait
    top, bottom = loaded[2, 5].astype(int), loaded[17, 5].astype(int)
    assert top[0] > 200 and top[2] < 50  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _load_error(tmp_path / "missing.png")


def test_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"x")
    assert "not found" in _load_error(tmp_path / "plain" / "child.png")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "y.png"
    folder.mkdir()
    assert "is a directory" in _load_error(folder)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty file" in _load_error(path)


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    path.write_text("this is not an image\nsecond line\n")
    assert "not an image" in _load_error(path)


def test_truncated_jpeg_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(_noise(64, 64)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _load_error(path)


def test_truncated_png_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(_noise(64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _load_error(path)
    assert "corrupt or truncated" in message


def test_eps_is_refused_without_running_ghostscript(tmp_path: Path) -> None:
    path = tmp_path / "doc.jpg"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    assert "not an image" in _load_error(path)


def test_size_limit_fires_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(_noise(100, 100)).save(path)

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("decoded an image that is over the size limit")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    message = _load_error(path, max_pixels=5_000)
    assert "too large" in message and "10,000 pixels" in message and "5,000" in message


def test_huge_header_refused_by_max_pixels(tmp_path: Path) -> None:
    # 81 megapixels: above MAX_PIXELS, below Pillow's own limits. Only the header exists,
    # so decoding would fail with "truncated": "too large" proves the check comes first.
    path = tmp_path / "claims_9000x9000.png"
    path.write_bytes(_png_with_size(9000, 9000))
    message = _load_error(path)
    assert "too large" in message and "81,000,000 pixels" in message and f"{MAX_PIXELS:,}" in message


def test_decompression_bomb_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_size(100_000, 100_000))
    message = _load_error(path, max_pixels=10**12)
    assert "too large" in message and "10,000,000,000 pixels" in message


def test_patched_header_at_real_size_loads(tmp_path: Path) -> None:
    path = tmp_path / "one.png"
    path.write_bytes(_png_with_size(1, 1))
    np.testing.assert_array_equal(load_image(path), [[[10, 20, 30]]])


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    Image.fromarray(_noise(4, 4)).save(path)
    path.chmod(0)
    try:
        assert "permission denied" in _load_error(path)
    finally:
        path.chmod(0o644)


def test_permission_error_on_open_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    Image.fromarray(_noise(4, 4)).save(path)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(image_io, "open", denied, raising=False)
    assert "permission denied" in _load_error(path)


def test_newline_in_file_name_stays_one_line(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines.png"
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert "\n" not in str(info.value) and "two\\nlines.png" in str(info.value)
    assert info.value.path == path


def test_image_error_is_value_error() -> None:
    error = ImageError("a/b.png", "bad\nthing  here")
    assert isinstance(error, ValueError)
    assert str(error) == "a/b.png: bad thing here"


# --------------------------------------------------------------------------- saving


@pytest.mark.parametrize("suffix", [".png", ".PNG", ".webp", ".bmp", ".tiff", ""])
def test_save_lossless_round_trip(tmp_path: Path, suffix: str) -> None:
    pixels = _noise(11, 7)
    path = tmp_path / "deep" / "er" / f"out{suffix}"
    save_image(pixels, path)
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temp file left
    np.testing.assert_array_equal(load_image(path), pixels)


@pytest.mark.parametrize("suffix", [".jpg", ".JPEG"])
def test_save_jpeg(tmp_path: Path, suffix: str) -> None:
    pixels = np.full((16, 16, 3), (30, 160, 220), np.uint8)
    path = tmp_path / f"out{suffix}"
    save_image(pixels, path)
    with Image.open(path) as check:
        assert check.format == "JPEG"
    assert np.abs(load_image(path).astype(int) - pixels).max() <= 2


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    save_image(_noise(4, 4, 1), path)
    save_image(_noise(4, 4, 2), path)
    np.testing.assert_array_equal(load_image(path), _noise(4, 4, 2))
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def failing_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        seen.extend(os.listdir(tmp_path))  # the temp file exists while encoding
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    path = tmp_path / "out.png"
    with pytest.raises(RuntimeError, match="encoder exploded"):
        save_image(_noise(4, 4), path)
    assert len(seen) == 1 and seen[0].startswith(".out.png.") and seen[0].endswith(".tmp")
    assert os.listdir(tmp_path) == []
    assert not path.exists()


def test_save_failure_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.png"
    save_image(_noise(4, 4, 1), path)

    def failing_save(self: Image.Image, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(_noise(4, 4, 2), path)
    assert os.listdir(tmp_path) == ["out.png"]
    np.testing.assert_array_equal(load_image(path), _noise(4, 4, 1))


def test_save_rejects_unknown_suffix_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.gif"
    with pytest.raises(ValueError, match=r"\.gif") as info:
        save_image(_noise(2, 2), path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "sub").exists()


def test_save_rejects_bad_array(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "a.png")
    assert os.listdir(tmp_path) == []


def test_saved_file_permissions_follow_umask(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    save_image(_noise(2, 2), path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_multi_frame_image_says_which_frame_it_gives(tmp_path, caplog):
    """An animated GIF gives its first frame and says so in the debug log; a still image says nothing."""
    import logging

    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "two.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "one.png")
    frames[0].save(tmp_path / "one.jpg")  # Pillow's JPEG has no n_frames at all
    with caplog.at_level(logging.DEBUG, logger=image_io.__name__):
        first = image_io.load_image(tmp_path / "two.gif")
        image_io.load_image(tmp_path / "one.png")
        image_io.load_image(tmp_path / "one.jpg")
    assert first.shape == (6, 8, 3) and first[0, 0, 0] > 200 and first[0, 0, 2] < 50  # red: the first frame
    messages = [r.getMessage() for r in caplog.records if r.name == image_io.__name__]
    assert messages == [f"{tmp_path / 'two.gif'}: 2 frames, using the first"], messages
