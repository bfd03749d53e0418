"""Finding and reading photos: every bad input gives a PhotoError with its reason; every valid mode
reads as upright RGB uint8 with the right pixel values."""

from __future__ import annotations

import errno
import os
import pickle
import socket
import stat
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from alignimate.io.images import (
    SUPPORTED_SUFFIXES,
    PhotoError,
    UnusableEntry,
    find_images,
    probe_image,
    read_image,
    read_images_parallel,
    scan_folder,
)
from tests.helpers import finishes


def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) % 256], axis=2).astype(
        np.uint8
    )


def _quadrants(h: int, w: int) -> np.ndarray:
    """Four flat colours, so orientation errors and JPEG noise are easy to tell apart."""
    out = np.zeros((h, w, 3), np.uint8)
    out[: h // 2, : w // 2] = (255, 0, 0)
    out[: h // 2, w // 2 :] = (0, 255, 0)
    out[h // 2 :, : w // 2] = (0, 0, 255)
    out[h // 2 :, w // 2 :] = (255, 255, 255)
    return out


@pytest.fixture
def good_jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "good.jpg"
    Image.fromarray(_gradient(48, 64)).save(path, quality=90)
    return path


# --------------------------------------------------------------------------------------------
# Bad inputs


def _make_bad(kind: str, folder: Path, good: Path) -> Path:
    if kind == "random bytes":
        path = folder / "random.jpg"
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif kind == "truncated jpeg":
        path = folder / "truncated.jpg"
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated png":
        path = folder / "truncated.png"
        Image.fromarray(_gradient(48, 64)).save(folder / "full.png")
        data = (folder / "full.png").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero bytes":
        path = folder / "empty.jpg"
        path.write_bytes(b"")
    elif kind == "text renamed jpg":
        path = folder / "notes.jpg"
        path.write_text("shopping list\n" * 50)
    elif kind == "missing":
        path = folder / "missing.jpg"
    elif kind == "folder":
        path = folder / "folder.jpg"
        path.mkdir()
    else:
        raise AssertionError(kind)
    return path


BAD_INPUTS = {
    "random bytes": "not an image (unrecognised format)",
    "truncated jpeg": "truncated file",
    "truncated png": "truncated file",
    "zero bytes": "empty file (0 bytes)",
    "text renamed jpg": "not an image (unrecognised format)",
    "missing": "file not found",
    "folder": "is a folder, not a file",
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_gives_photo_error_with_reason(kind: str, tmp_path: Path, good_jpeg: Path) -> None:
    path = _make_bad(kind, tmp_path, good_jpeg)
    with pytest.raises(PhotoError) as caught:
        read_image(path)
    assert caught.value.reason == BAD_INPUTS[kind]
    assert caught.value.path == path
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("kind", ["random bytes", "zero bytes", "text renamed jpg", "missing", "folder"])
def test_probe_reports_header_problems(kind: str, tmp_path: Path, good_jpeg: Path) -> None:
    path = _make_bad(kind, tmp_path, good_jpeg)
    with pytest.raises(PhotoError) as caught:
        probe_image(path)
    assert caught.value.reason == BAD_INPUTS[kind]


def test_parallel_reader_reports_bad_files_in_place(tmp_path: Path, good_jpeg: Path) -> None:
    kinds = ["random bytes", "truncated jpeg", "zero bytes", "text renamed jpg", "missing"]
    bad = [_make_bad(kind, tmp_path, good_jpeg) for kind in kinds]
    paths = [good_jpeg, *bad, good_jpeg]
    results = list(read_images_parallel(paths, workers=2, prefetch=3))
    assert [p for p, _ in results] == paths
    assert isinstance(results[0][1], np.ndarray) and isinstance(results[-1][1], np.ndarray)
    np.testing.assert_array_equal(results[0][1], read_image(good_jpeg))
    assert [r.reason for _, r in results[1:-1]] == [BAD_INPUTS[k] for k in kinds]


def test_parallel_reader_can_stop_early(tmp_path: Path) -> None:
    paths = []
    for i in range(20):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(paths[-1])
    reader = read_images_parallel(paths, workers=2)
    first = [next(reader) for _ in range(3)]
    reader.close()  # must not hang or read the rest
    assert [int(a[0, 0, 0]) for _, a in first] == [0, 1, 2]


# --------------------------------------------------------------------------------------------
# Pixel limit


def test_image_over_max_pixels_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(_gradient(40, 50)).save(path)  # 2000 pixels
    with pytest.raises(PhotoError) as caught:
        read_image(path, max_pixels=1999)
    assert caught.value.reason.startswith("image too large (2000 pixels > limit 1999 pixels)")
    assert "--max-pixels" in caught.value.reason
    with pytest.raises(PhotoError, match="image too large"):
        probe_image(path, max_pixels=1999)
    assert read_image(path, max_pixels=2000).shape == (40, 50, 3)


def test_pillow_decompression_bomb_becomes_photo_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.png"
    Image.fromarray(_gradient(50, 50)).save(path)  # 2500 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    # Above twice Pillow's limit Pillow itself raises DecompressionBombError inside Image.open.
    with pytest.raises(PhotoError) as caught:
        read_image(path)
    assert caught.value.reason.startswith("image too large (2500 pixels > limit 1000 pixels)")
    assert isinstance(caught.value.__cause__, Image.DecompressionBombError)
    # Between the limit and twice it Pillow only warns; the default limit (Pillow's) still refuses.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(PhotoError, match=r"image too large \(2500 pixels > limit 2000 pixels\)"):
            read_image(path)
    # Raising max_pixels above Pillow's limit reads the image.
    assert read_image(path, max_pixels=3000).shape == (50, 50, 3)


def test_bad_arguments_raise_value_errors(good_jpeg: Path) -> None:
    with pytest.raises(ValueError, match="max_side"):
        read_image(good_jpeg, max_side=0)
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(good_jpeg, max_pixels=-5)
    with pytest.raises(TypeError, match="max_side"):
        read_image(good_jpeg, max_side=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        list(read_images_parallel([good_jpeg], workers=0))


# --------------------------------------------------------------------------------------------
# Modes


def test_rgb_png_reads_exactly(tmp_path: Path) -> None:
    rgb = _gradient(30, 40)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_greyscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = _gradient(20, 30)[:, :, 0]
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (20, 30, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


def test_one_bit_image(tmp_path: Path) -> None:
    bits = _gradient(16, 16)[:, :, 0] > 127
    Image.fromarray(bits).save(tmp_path / "b.png")
    out = read_image(tmp_path / "b.png")
    np.testing.assert_array_equal(out[:, :, 1], np.where(bits, 255, 0))


def test_rgba_composites_on_black_or_keeps_alpha(tmp_path: Path) -> None:
    rgba = np.concatenate([_gradient(20, 24), _gradient(20, 24)[:, :, 2:3]], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    out = read_image(tmp_path / "t.png")
    expected = np.rint(rgba[:, :, :3] * (rgba[:, :, 3:4] / 255.0))
    assert np.abs(out.astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(read_image(tmp_path / "t.png", alpha=True), rgba)


def test_opaque_image_gets_full_alpha(tmp_path: Path) -> None:
    rgb = _gradient(10, 12)
    Image.fromarray(rgb).save(tmp_path / "o.png")
    out = read_image(tmp_path / "o.png", alpha=True)
    np.testing.assert_array_equal(out[:, :, :3], rgb)
    assert (out[:, :, 3] == 255).all()


def test_grey_with_alpha(tmp_path: Path) -> None:
    grey = np.full((8, 8), 200, np.uint8)
    alpha = np.tile(np.array([0, 51, 102, 255], np.uint8), (8, 2))
    Image.fromarray(np.stack([grey, alpha], axis=2), mode="LA").save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out[:, :, 0], np.rint(200 * alpha.astype(float) / 255.0))


def test_palette_image_uses_its_palette(tmp_path: Path) -> None:
    indices = (np.arange(12 * 16).reshape(12, 16) % 4).astype(np.uint8)
    colours = np.array([[10, 20, 30], [200, 0, 0], [0, 180, 90], [255, 255, 255]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(colours.ravel().tolist())
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), colours[indices])


def test_palette_transparency_composites_on_black(tmp_path: Path) -> None:
    indices = (np.arange(8 * 8).reshape(8, 8) % 2).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([250, 100, 50, 30, 60, 90])
    image.save(tmp_path / "pt.png", transparency=0)
    out = read_image(tmp_path / "pt.png")
    expected = np.where(indices[:, :, None] == 0, 0, np.array([30, 60, 90]))
    np.testing.assert_array_equal(out, expected)


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 128, 129, 257, 1000, 30000, 65000, 65535]], np.uint16).repeat(3, axis=0)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = read_image(tmp_path / "deep.png")
    expected = np.rint(values / 257.0)
    np.testing.assert_array_equal(out[:, :, 0], expected)
    assert out[0, -1, 0] == 255 and out[0, 4, 0] == 4  # clipping would give 255 for 1000


def test_32bit_integer_and_float_tiffs(tmp_path: Path) -> None:
    ints = np.array([[0, 257, 65535, 70000, -5]], np.int32)
    Image.fromarray(ints, mode="I").save(tmp_path / "i.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "i.tif")[0, :, 0], [0, 1, 255, 255, 0])
    floats = np.array([[0.0, 0.5, 1.0, 2.0, -1.0]], np.float32)
    Image.fromarray(floats, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[0, :, 0], [0, 128, 255, 255, 0])


def test_cmyk_jpeg_converts_to_rgb(tmp_path: Path) -> None:
    cmyk_colours = [(0, 0, 0, 0), (255, 0, 0, 0), (0, 128, 255, 0), (0, 0, 0, 128), (60, 120, 0, 60)]
    block = np.zeros((16, 16 * len(cmyk_colours), 4), np.uint8)
    for i, colour in enumerate(cmyk_colours):
        block[:, 16 * i : 16 * (i + 1)] = colour
    Image.fromarray(block, mode="CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    out = read_image(tmp_path / "cmyk.jpg")
    assert out.shape == (16, 80, 3)
    for i, (c, m, y, k) in enumerate(cmyk_colours):
        # Naive CMYK -> RGB: channel = (255 - ink) * (255 - K) / 255.
        expected = np.array([(255 - v) * (255 - k) / 255 for v in (c, m, y)])
        centre = out[8, 16 * i + 8].astype(float)
        assert np.abs(centre - expected).max() <= 4, (i, centre, expected)


# --------------------------------------------------------------------------------------------
# Orientation and reduced-size reading


def _save_with_orientation(path: Path, array: np.ndarray, orientation: int, **kwargs) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif, **kwargs)


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [
        (1, lambda a: a),
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),
        (8, lambda a: np.rot90(a, 1)),
    ],
)
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, upright) -> None:
    stored = _quadrants(32, 64)
    # PNG keeps the pixels exact; orientation 6 means "rotate 90 degrees clockwise to display".
    _save_with_orientation(tmp_path / "o.png", stored, orientation)
    out = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(out, upright(stored))
    info = probe_image(tmp_path / "o.png")
    assert info.size_hw == out.shape[:2] and info.orientation == orientation


def test_exif_orientation_on_jpeg_with_reduced_read(tmp_path: Path) -> None:
    stored = _quadrants(400, 800)
    _save_with_orientation(tmp_path / "o6.jpg", stored, 6, quality=95)
    full = read_image(tmp_path / "o6.jpg")
    assert full.shape == (800, 400, 3)
    assert np.abs(full.astype(int) - np.rot90(stored, -1)).mean() < 2
    small = read_image(tmp_path / "o6.jpg", max_side=100)
    assert small.shape == (100, 50, 3)
    # Upright top-left quadrant is stored bottom-left (blue); top-right is stored top-left (red).
    np.testing.assert_allclose(small[10, 10], (0, 0, 255), atol=12)
    np.testing.assert_allclose(small[10, 40], (255, 0, 0), atol=12)


def test_draft_mode_decodes_large_jpeg_at_reduced_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h, w = 1333, 1999
    rgb = _gradient(h, w)
    path = tmp_path / "large.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    decoded_sizes = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original_draft(self, mode, size)
        decoded_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = read_image(path, max_side=240)
    assert out.shape == (round(h * 240 / w), 240, 3)
    # 240 / 1999 is under 1/8, so the decoder itself works at 1/8 size (rounded up).
    assert decoded_sizes == [(-(-w // 8), -(-h // 8))]
    reference = np.asarray(Image.fromarray(rgb).resize((240, out.shape[0]), Image.Resampling.LANCZOS))
    assert np.abs(out.astype(int) - reference).mean() < 3


def test_max_side_never_enlarges_and_keeps_aspect(tmp_path: Path) -> None:
    Image.fromarray(_gradient(30, 70)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", max_side=500).shape == (30, 70, 3)
    assert read_image(tmp_path / "a.png", max_side=35).shape == (15, 35, 3)


def test_probe_reads_size_and_date_without_decoding(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2021:03:04 05:06:07"
    Image.fromarray(_gradient(20, 30)).save(tmp_path / "d.jpg", exif=exif)
    info = probe_image(tmp_path / "d.jpg")
    assert info.size_hw == (20, 30) and info.orientation == 1 and info.format == "JPEG"
    assert info.datetime is not None and info.datetime.isoformat() == "2021-03-04T05:06:07"


def test_read_only_input_is_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "ro.jpg"
    _save_with_orientation(path, _quadrants(20, 40), 6)
    before = path.read_bytes()
    os.chmod(path, stat.S_IRUSR)
    past = time.time() - 1000
    os.utime(path, (past, past))
    try:
        read_image(path, max_side=10)
        probe_image(path)
        assert path.read_bytes() == before
        assert path.stat().st_mtime == pytest.approx(past)
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


# --------------------------------------------------------------------------------------------
# Discovery


def test_find_images_filters_sorts_and_excludes(tmp_path: Path) -> None:
    names = [
        "img10.jpg",
        "img2.JPG",
        "img1.png",
        ".hidden.jpg",
        ".img3.tmp-ab12.jpg",
        "notes.txt",
        "scan.TIFF",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "aligned.jpg").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.webp").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "c.jpg").write_bytes(b"x")

    flat = find_images(tmp_path)
    assert [p.name for p in flat] == ["img1.png", "img2.JPG", "img10.jpg", "scan.TIFF"]
    deep = find_images(tmp_path, recursive=True, exclude=tmp_path / "out")
    assert [p.relative_to(tmp_path).as_posix() for p in deep] == [
        "img1.png",
        "img2.JPG",
        "img10.jpg",
        "scan.TIFF",
        "sub/deep.webp",
    ]
    everything = find_images(tmp_path, recursive=True)
    assert tmp_path / "out" / "aligned.jpg" in everything
    assert all(s == s.lower() and s.startswith(".") for s in SUPPORTED_SUFFIXES)


def test_find_images_empty_folder_and_bad_folder(tmp_path: Path) -> None:
    assert find_images(tmp_path) == []
    with pytest.raises(ValueError, match="folder"):
        find_images(tmp_path / "nope")


def test_photo_error_pickles_for_process_pools(tmp_path: Path) -> None:
    error = PhotoError(tmp_path / "a.jpg", "truncated file")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, str(copy)) == (error.path, error.reason, str(error))


def test_multi_picture_jpeg_reads_first_picture(tmp_path: Path) -> None:
    first, second = _quadrants(40, 60), np.zeros((40, 60, 3), np.uint8)
    Image.fromarray(first).save(
        tmp_path / "m.jpg", format="MPO", save_all=True, append_images=[Image.fromarray(second)], quality=95
    )
    assert Image.open(tmp_path / "m.jpg").format == "MPO"
    out = read_image(tmp_path / "m.jpg", max_side=30)
    assert out.shape == (20, 30, 3)
    np.testing.assert_allclose(out[5, 5], (255, 0, 0), atol=16)


def test_heic_photos_are_listed_and_read_through_pillow_heif(tmp_path: Path) -> None:
    import pillow_heif  # a dev dependency, so this path is always tested

    pillow_heif.register_heif_opener()
    rng = np.random.default_rng(0)
    pixels = Image.fromarray(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)).resize((96, 64))
    pixels.save(tmp_path / "IMG_0001.HEIC", quality=95)
    assert find_images(tmp_path) == [tmp_path / "IMG_0001.HEIC"]
    assert probe_image(tmp_path / "IMG_0001.HEIC").size_hw == (64, 96)
    image = read_image(tmp_path / "IMG_0001.HEIC")
    assert image.shape == (64, 96, 3)
    # Lossy, but the same picture: mean error a few grey levels.
    assert np.abs(image.astype(float) - np.asarray(pixels, float)).mean() < 8


def test_heic_without_pillow_heif_is_skipped_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    import alignimate.io.images as images

    (tmp_path / "IMG_0002.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    monkeypatch.setitem(images._HEIF_STATE, "ok", False)  # as if pillow-heif were not installed
    assert find_images(tmp_path) == [tmp_path / "IMG_0002.heic"]
    with pytest.raises(PhotoError) as err:
        probe_image(tmp_path / "IMG_0002.heic")
    assert err.value.reason == images.HEIF_MISSING_REASON and "pip install pillow-heif" in str(err.value)


def test_png_with_damaged_pixel_data_is_refused(tmp_path: Path) -> None:
    # Random pixels do not compress, so a flipped byte still inflates: only the chunk CRC shows it.
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)).save(tmp_path / "good.png")
    data = bytearray((tmp_path / "good.png").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.png").write_bytes(bytes(data))
    assert read_image(tmp_path / "good.png").shape == (100, 150, 3)
    with pytest.raises(PhotoError) as err:
        read_image(tmp_path / "bad.png")
    assert err.value.reason.startswith("corrupt PNG data") and "checksum" in err.value.reason


# --------------------------------------------------------------------------------------------
# Entries that look like photos but are not regular files




def _tiny_photo(path: Path, value: int = 128) -> Path:
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path, format="JPEG")
    return path


def _unix_socket(folder: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket file ``folder/name``; bound by a relative name because AF_UNIX paths are short."""
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no AF_UNIX sockets on this platform")
    with monkeypatch.context() as m:
        m.chdir(folder)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(name)  # the socket file stays after the socket is closed


def _odd_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kind of entry a photo folder can hold (see the expectations in the tests)."""
    good = _tiny_photo(folder / "good.jpg")
    (folder / "a.jpg").mkdir()
    os.mkfifo(folder / "b.jpg")
    (folder / "c.jpg").symlink_to(folder / "gone.jpg")
    (folder / "d.jpg").symlink_to("d.jpg")
    (folder / "link.jpg").symlink_to(good)
    (folder / "null.jpg").symlink_to(os.devnull)  # a character device, without needing mknod
    _unix_socket(folder, "s.jpg", monkeypatch)
    _tiny_photo(folder / ".e.jpg")
    (folder / "notes.txt").write_text("not a photo")
    os.mkfifo(folder / "pipe.txt")  # not a photo suffix: ignored, and above all not opened
    (folder / "gone.txt").symlink_to(folder / "nothing")
    (folder / "sub").mkdir()
    _tiny_photo(folder / "sub" / "deep.jpg")
    (folder / "sub" / "c.png").symlink_to(folder / "sub" / "gone.png")


ODD_UNUSABLE = [
    ("a.jpg", "is a folder, not a file"),
    ("b.jpg", "not a regular file (FIFO)"),
    ("c.jpg", "broken symbolic link"),
    ("d.jpg", "symbolic link loop"),
    ("null.jpg", "not a regular file (device)"),
    ("s.jpg", "not a regular file (socket)"),
]


def _relative(entries: Iterable[Path | UnusableEntry], folder: Path) -> list[Any]:
    out: list[Any] = []
    for entry in entries:
        if isinstance(entry, UnusableEntry):
            out.append((entry.path.relative_to(folder).as_posix(), entry.reason))
        else:
            out.append(entry.relative_to(folder).as_posix())
    return out


def test_scan_folder_reports_photo_names_that_are_not_photo_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _odd_folder(tmp_path, monkeypatch)
    fifos = [tmp_path / "b.jpg", tmp_path / "pipe.txt"]
    photos, unusable = finishes(lambda: scan_folder(tmp_path), fifos)
    assert _relative(photos, tmp_path) == ["good.jpg", "link.jpg"]
    assert _relative(unusable, tmp_path) == ODD_UNUSABLE
    # Hidden files, other suffixes (including a FIFO and a broken link) and sub-folders: ignored.
    assert find_images(tmp_path) == photos
    assert all(isinstance(e, tuple) and len(e) == 2 for e in unusable)


def test_scan_folder_recursive_scans_folders_and_reports_unlistable_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _odd_folder(tmp_path, monkeypatch)
    (tmp_path / "locked").mkdir()
    _tiny_photo(tmp_path / "locked" / "hidden_from_us.jpg")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "a.jpg" / "inside.png").write_bytes((tmp_path / "good.jpg").read_bytes())
    (tmp_path / "linked").symlink_to(tmp_path / "sub", target_is_directory=True)
    (tmp_path / "out").mkdir()
    _tiny_photo(tmp_path / "out" / "aligned.jpg")
    (tmp_path / "to_out").symlink_to(tmp_path / "out", target_is_directory=True)

    # Running as root, chmod cannot make a folder unreadable: fail the listing the way the OS does.
    real_scandir = os.scandir
    listed: list[Path] = []

    def scandir(path: Any = ".") -> Any:
        listed.append(Path(path))
        if Path(path) in (tmp_path / "locked", tmp_path / ".cache"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    fifos = [tmp_path / "b.jpg", tmp_path / "pipe.txt"]
    out = tmp_path / "out"
    photos, unusable = finishes(lambda: scan_folder(tmp_path, recursive=True, exclude=out), fifos)
    assert _relative(photos, tmp_path) == ["a.jpg/inside.png", "good.jpg", "link.jpg", "sub/deep.jpg"]
    assert _relative(unusable, tmp_path) == [
        ("b.jpg", "not a regular file (FIFO)"),
        ("c.jpg", "broken symbolic link"),
        ("d.jpg", "symbolic link loop"),
        ("linked", "symbolic link to a folder (not followed)"),
        ("locked", "cannot list folder (permission denied)"),
        ("null.jpg", "not a regular file (device)"),
        ("s.jpg", "not a regular file (socket)"),
        ("sub/c.png", "broken symbolic link"),
    ]
    # Hidden and excluded folders are not even listed; a link to the excluded folder is not reported.
    assert tmp_path / ".cache" not in listed and tmp_path / "out" not in listed
    assert find_images(tmp_path, recursive=True, exclude=out) == photos


def test_scan_folder_reports_a_folder_it_cannot_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tiny_photo(tmp_path / "p.jpg")
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == tmp_path:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert scan_folder(tmp_path) == ([], [(tmp_path, "cannot list folder (permission denied)")])
    assert find_images(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can list any folder")
def test_scan_folder_unreadable_sub_folder_for_real(tmp_path: Path) -> None:
    _tiny_photo(tmp_path / "p.jpg")
    (tmp_path / "locked").mkdir()
    _tiny_photo(tmp_path / "locked" / "q.jpg")
    os.chmod(tmp_path / "locked", 0)
    try:
        photos, unusable = scan_folder(tmp_path, recursive=True)
    finally:
        os.chmod(tmp_path / "locked", stat.S_IRWXU)
    assert photos == [tmp_path / "p.jpg"]
    assert unusable == [(tmp_path / "locked", "cannot list folder (permission denied)")]


def test_scan_folder_checks_its_folder(tmp_path: Path) -> None:
    _tiny_photo(tmp_path / "p.jpg")
    assert scan_folder(tmp_path, exclude=tmp_path) == ([], [])
    with pytest.raises(ValueError, match="not a folder"):
        scan_folder(tmp_path / "p.jpg")
    with pytest.raises(ValueError, match="not a folder"):
        scan_folder(tmp_path / "nope")


SPECIAL_FILES = {
    "fifo": "not a regular file (FIFO)",
    "socket": "not a regular file (socket)",
    "device": "not a regular file (device)",
    "link to device": "not a regular file (device)",
    "link to fifo": "not a regular file (FIFO)",
    "broken link": "broken symbolic link",
    "link loop": "symbolic link loop",
    "link to folder": "is a folder, not a file",
}


def _make_special(kind: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = folder / "x.jpg"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        _unix_socket(folder, path.name, monkeypatch)
    elif kind == "device":
        path = Path(os.devnull)
    elif kind == "link to device":
        path.symlink_to(os.devnull)
    elif kind == "link to fifo":
        os.mkfifo(folder / "pipe")
        path.symlink_to(folder / "pipe")
    elif kind == "broken link":
        path.symlink_to(folder / "gone.jpg")
    elif kind == "link loop":
        path.symlink_to(folder / "y.jpg")
        (folder / "y.jpg").symlink_to(path)
    elif kind == "link to folder":
        (folder / "dir").mkdir()
        path.symlink_to(folder / "dir", target_is_directory=True)
    else:
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize("kind", sorted(SPECIAL_FILES))
def test_readers_refuse_special_files_without_opening_them(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _make_special(kind, tmp_path, monkeypatch)
    fifos = [tmp_path / "x.jpg", tmp_path / "pipe"]
    for reader in (read_image, probe_image):
        with pytest.raises(PhotoError) as caught:
            finishes(lambda reader=reader: reader(path), fifos)
        assert caught.value.reason == SPECIAL_FILES[kind]
        assert caught.value.path == path
    results = finishes(lambda: list(read_images_parallel([path, path])), fifos)
    assert [(p, r.reason) for p, r in results] == [(path, SPECIAL_FILES[kind])] * 2


def test_link_to_a_photo_reads_like_the_photo(tmp_path: Path) -> None:
    good = _tiny_photo(tmp_path / "good.jpg", value=77)
    (tmp_path / "link.jpg").symlink_to(good)
    np.testing.assert_array_equal(read_image(tmp_path / "link.jpg"), read_image(good))
    assert probe_image(tmp_path / "link.jpg").size_hw == (8, 8)
