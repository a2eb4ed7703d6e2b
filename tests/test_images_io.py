"""vqtok.io.images against real files written by Pillow: conversions, every failure mode, atomic saves, listing."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqtok.errors import FileFormatError, InputError
from vqtok.io import images as io_images
from vqtok.io.images import array_to_pil, image_extensions, list_images, pil_to_array, read_image, save_image


def write(path: Path, img: Image.Image, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


# --- conversions -------------------------------------------------------------------------------------------


def test_rgb_png_round_trips_exactly(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = read_image(write(tmp_path / "a.png", Image.fromarray(pixels)))
    assert x.dtype == np.float32 and x.shape == (5, 7, 3) and x.flags.c_contiguous
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), pixels)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)  # H=20, W=40
    pixels[:4, :4] = (255, 0, 0)  # red marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: display rotated 90° clockwise
    x = read_image(write(tmp_path / "rot.jpg", Image.fromarray(pixels), exif=exif.tobytes(), quality=95))
    assert x.shape == (40, 20, 3)
    assert x[1, -2, 0] > 0.8 and x[1, -2, 1] < 0.2  # the marker is now top-right
    assert x[-2, 1].max() < 0.2


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128]]], dtype=np.uint8)  # (1, 3, 4)
    x = read_image(write(tmp_path / "a.png", Image.fromarray(rgba, "RGBA")))
    np.testing.assert_allclose(x[0, 0], [1, 1, 1])  # fully transparent -> white background
    np.testing.assert_allclose(x[0, 1], [1, 0, 0])  # opaque red stays red
    np.testing.assert_allclose(x[0, 2], [1 - 128 / 255] * 3, atol=1e-6)  # half-transparent black -> grey


def test_grey_alpha_is_composited_over_white(tmp_path):
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), "LA")
    x = read_image(write(tmp_path / "la.png", la))
    np.testing.assert_allclose(x[0, 0], [1, 1, 1])
    np.testing.assert_allclose(x[0, 1], [0, 0, 0])


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    x = read_image(write(tmp_path / "p.png", img, transparency=0))
    np.testing.assert_allclose(x[0, 0], [1, 1, 1])  # transparent index -> white
    np.testing.assert_allclose(x[0, 1], [0, 1, 0])


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535, 255]], dtype=np.uint16)
    path = write(tmp_path / "deep.png", Image.fromarray(values))
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # really a 16-bit file
    x = read_image(path)
    assert x.shape == (1, 4, 3)
    np.testing.assert_allclose(x[0, :, 0], [0.0, 32768 / 65535, 1.0, 255 / 65535], atol=1e-6)
    assert np.all(x[0, :, 0] == x[0, :, 2])


@pytest.mark.parametrize("mode", ["1", "L", "CMYK", "YCbCr", "RGB"])
def test_8_bit_modes_become_rgb(mode):
    x = pil_to_array(Image.new("RGB", (3, 2), (255, 255, 255)).convert(mode))
    assert x.shape == (2, 3, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x, 1.0, atol=2 / 255)


def test_float_mode_ranges():
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    np.testing.assert_allclose(pil_to_array(unit)[0, :, 0], [0, 0.5, 1])
    bytes_range = Image.fromarray(np.array([[0.0, 255.0]], dtype=np.float32), "F")
    np.testing.assert_allclose(pil_to_array(bytes_range)[0, :, 0], [0, 1])
    with_nan = Image.fromarray(np.array([[np.nan, 0.25]], dtype=np.float32), "F")
    np.testing.assert_allclose(pil_to_array(with_nan)[0, :, 0], [0, 0.25])


def test_array_to_pil():
    x = np.array([[[0.0, 0.5, 1.0], [-0.2, 1.3, 0.499 / 255]]], dtype=np.float64)
    np.testing.assert_array_equal(np.asarray(array_to_pil(x)), [[[0, 128, 255], [0, 255, 0]]])
    u8 = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(np.asarray(array_to_pil(u8)), u8)
    for bad in (np.zeros((4, 4)), np.zeros((4, 4, 4)), np.zeros((4, 4, 3), np.int32), np.full((1, 1, 3), np.nan)):
        with pytest.raises(InputError):
            array_to_pil(bad)


# --- failures ----------------------------------------------------------------------------------------------


def assert_read_fails(path: Path, *words: str, **kwargs) -> FileFormatError:
    with pytest.raises(FileFormatError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message
    assert isinstance(info.value, ValueError)  # callers that only know builtins can still catch it
    return info.value


def test_missing_file(tmp_path):
    assert_read_fails(tmp_path / "nope.png", "does not exist")


def test_directory(tmp_path):
    assert_read_fails(tmp_path, "directory")


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert_read_fails(tmp_path / "empty.jpg", "empty")


def test_non_image_bytes(tmp_path):
    (tmp_path / "fake.png").write_bytes(b"this is not an image at all, just some text" * 10)
    assert_read_fails(tmp_path / "fake.png", "not an image")


def test_truncated_jpeg(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = write(tmp_path / "full.jpg", Image.fromarray(noise), quality=90)
    data = path.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with Image.open(tmp_path / "cut.jpg") as img:  # the header alone looks fine
        assert img.size == (64, 64)
    assert_read_fails(tmp_path / "cut.jpg", "truncated")


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    path = write(tmp_path / "big.png", Image.new("RGB", (20, 10)))
    before = Image.MAX_IMAGE_PIXELS
    assert_read_fails(path, "200 pixels", "limit of 100", "decompression bomb", max_pixels=100)
    assert before == Image.MAX_IMAGE_PIXELS
    assert read_image(path, max_pixels=200).shape == (10, 20, 3)


def test_pillow_global_limit_is_neither_used_nor_changed(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow would refuse anything above 20 pixels
    path = write(tmp_path / "a.png", Image.new("RGB", (30, 30)))
    assert read_image(path).shape == (30, 30, 3)
    assert read_image(path, max_pixels=None).shape == (30, 30, 3)
    assert Image.MAX_IMAGE_PIXELS == 10


def test_zero_size_image(tmp_path, monkeypatch):
    path = write(tmp_path / "a.png", Image.new("RGB", (3, 3)))
    real_open = io_images._open_image

    def open_zero_width(p):  # Pillow's own decoders refuse 0-pixel files, so fake the header
        img = real_open(p)
        img._size = (0, 3)
        return img

    monkeypatch.setattr(io_images, "_open_image", open_zero_width)
    assert_read_fails(path, "zero size")


# --- saving ------------------------------------------------------------------------------------------------


def test_save_image_round_trip_and_leaves_no_temp_files(tmp_path):
    x = np.random.default_rng(1).random((6, 5, 3)).astype(np.float32)
    save_image(tmp_path / "a.png", x)
    save_image(tmp_path / "b.PNG", array_to_pil(x))
    save_image(tmp_path / "c.jpg", x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.PNG", "c.jpg"]
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), x, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), read_image(tmp_path / "b.PNG"))


def test_save_image_replaces_atomically_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "out.jpg"
    save_image(target, np.zeros((4, 4, 3), np.uint8))
    before = target.read_bytes()
    with pytest.raises(FileFormatError, match="out.jpg"):  # JPEG cannot store RGBA: the encoder fails
        save_image(target, Image.new("RGBA", (4, 4)))
    assert target.read_bytes() == before
    with pytest.raises(FileFormatError, match="suffix"):
        save_image(tmp_path / "out.unknown", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FileFormatError):
        save_image(tmp_path / "missing_dir" / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError):
        save_image(tmp_path / "bad.png", np.zeros((4, 4)))
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]


# --- listing -----------------------------------------------------------------------------------------------


def test_image_extensions():
    extensions = image_extensions()
    assert {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif"} <= extensions
    assert ".eps" not in extensions and ".mpg" not in extensions  # Ghostscript / decoder-less formats
    assert extensions == io_images.IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in extensions)


def test_list_images_recursive_sorted_and_filtered(tmp_path):
    for rel in ["b.png", "a/c.JPG", "a/deep/d.webp", ".hidden/e.png", "a/.f.png", "notes.txt", "a/g.jpeg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a/c.JPG", "a/deep/d.webp", "a/g.jpeg", "b.png"]
    assert all(isinstance(p, Path) for p in list_images(str(tmp_path)))


def test_list_images_survives_symlink_loops(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")  # sub/loop -> root: a cycle
    outside = tmp_path.parent / f"{tmp_path.name}_outside"
    outside.mkdir()
    (outside / "b.png").write_bytes(b"x")
    os.symlink(outside, tmp_path / "linked")  # a symlinked directory outside the root is followed
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["linked/b.png", "sub/a.png"]


def test_list_images_bad_root(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        list_images(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(FileFormatError, match="not a directory"):
        list_images(tmp_path / "file.png")
