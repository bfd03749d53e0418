"""The fast full-resolution path: JPEGs decoded and encoded as (C, H, W) planes give exactly what the
Pillow path gives (pixels when reading, bytes when writing), and everything else falls back to it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alignimate.io.planes as planes_module
from alignimate.io import PhotoError, read_image, read_image_planes, save_image, save_image_planes
from alignimate.io.planes import fast_jpeg_available, read_image_pixels


def _photo(h: int = 45, w: int = 67, seed: int = 0) -> np.ndarray:
    """Smooth colours plus noise: every JPEG coding stage (chroma, DCT rounding) has work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    smooth = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], axis=2)
    return np.clip(smooth + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _as_hwc(planes: torch.Tensor) -> np.ndarray:
    return planes.permute(1, 2, 0).numpy()


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records the files the fast JPEG decoder handled (so a test can tell which path ran)."""
    seen: list[Path] = []
    real = planes_module._decode_jpeg

    def spy(path: Path, scale: int = 1, grey: bool = False) -> np.ndarray | None:
        result = real(path, scale, grey)
        if result is not None:
            seen.append(path)
        return result

    monkeypatch.setattr(planes_module, "_decode_jpeg", spy)
    return seen


def test_the_fast_codec_is_available_here() -> None:
    # OpenCV (5 or later) is a dependency; if this fails, every test below checks only the fallback.
    assert fast_jpeg_available()


JPEG_VARIANTS = {
    "baseline 4:2:0": {"quality": 90},
    "progressive": {"quality": 85, "progressive": True},
    "4:4:4": {"quality": 92, "subsampling": 0},
    "4:2:2": {"quality": 80, "subsampling": 1},
    "restart markers": {"quality": 75, "restart_marker_blocks": 2},
}


@pytest.mark.parametrize("variant", sorted(JPEG_VARIANTS))
def test_jpeg_planes_equal_pillow_pixels(variant: str, tmp_path: Path, decodes: list[Path]) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(_photo()).save(path, **JPEG_VARIANTS[variant])
    planes = read_image_planes(path)
    assert planes.dtype == torch.uint8 and tuple(planes.shape) == (3, 45, 67)
    np.testing.assert_array_equal(_as_hwc(planes), read_image(path))
    assert decodes == [path]


def test_grey_jpeg_becomes_three_equal_planes(tmp_path: Path, decodes: list[Path]) -> None:
    path = tmp_path / "grey.jpg"
    Image.fromarray(_photo()[..., 0]).save(path, quality=90)
    planes = read_image_planes(path)
    np.testing.assert_array_equal(_as_hwc(planes), read_image(path))
    assert torch.equal(planes[0], planes[1]) and torch.equal(planes[0], planes[2])
    assert decodes == [path]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(orientation: int, tmp_path: Path, decodes: list[Path]) -> None:
    path = tmp_path / f"o{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_photo(30, 52)).save(path, quality=90, exif=exif)
    planes = read_image_planes(path)
    np.testing.assert_array_equal(_as_hwc(planes), read_image(path))
    assert decodes == [path]


# Long sides for a photo of 245 x 367: Pillow's draft mode decodes it at 1/1, 1/2, 1/4 and 1/8.
WORKING_SIDES = {1: 300, 2: 150, 4: 80, 8: 40}


@pytest.mark.parametrize("grey", [False, True])
@pytest.mark.parametrize("scale", sorted(WORKING_SIDES))
@pytest.mark.parametrize("variant", sorted(JPEG_VARIANTS))
def test_working_copies_equal_pillows(
    variant: str, scale: int, grey: bool, tmp_path: Path, decodes: list[Path]
) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(_photo(245, 367, seed=scale)).save(path, **JPEG_VARIANTS[variant])
    side = WORKING_SIDES[scale]
    pixels = read_image_pixels(path, max_side=side, grey=grey)
    expected = read_image(path, max_side=side, grey=grey)
    assert pixels.dtype == np.uint8 and max(pixels.shape[:2]) == side
    assert pixels.shape[2] == (1 if grey else 3)
    np.testing.assert_array_equal(pixels, expected)
    assert decodes == [path]


@pytest.mark.parametrize("grey", [False, True])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_working_copies_are_upright_like_pillows(
    orientation: int, grey: bool, tmp_path: Path, decodes: list[Path]
) -> None:
    path = tmp_path / f"o{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_photo(98, 171)).save(path, quality=90, exif=exif)
    np.testing.assert_array_equal(
        read_image_pixels(path, max_side=40, grey=grey), read_image(path, max_side=40, grey=grey)
    )
    assert decodes == [path]


@pytest.mark.parametrize("grey", [False, True])
def test_grey_and_other_working_copies_equal_pillows(tmp_path: Path, grey: bool) -> None:
    Image.fromarray(_photo(245, 367)[..., 0]).save(tmp_path / "grey.jpg", quality=90)
    Image.fromarray(_photo(245, 367)).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    Image.fromarray(_photo(245, 367)).save(tmp_path / "photo.png")
    for name in ("grey.jpg", "cmyk.jpg", "photo.png"):
        np.testing.assert_array_equal(
            read_image_pixels(tmp_path / name, max_side=80, grey=grey),
            read_image(tmp_path / name, max_side=80, grey=grey),
        )
    with pytest.raises(ValueError, match="max_side"):
        read_image_pixels(tmp_path / "grey.jpg", max_side=0)


@pytest.mark.parametrize("max_side", [None, 90])
def test_the_luma_of_a_colour_jpeg_is_its_rgbs_luma(tmp_path: Path, max_side: int | None) -> None:
    """``grey`` decodes a colour JPEG's luma channel alone; it is the BT.601 luma of the RGB decode up
    to the rounding of the chroma's round trip and the RGB decode's clipping of out-of-gamut colours
    (full size and reduced alike, fast path and Pillow's)."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(_photo(180, 240)).save(path, quality=92)
    luma = read_image_pixels(path, max_side=max_side, grey=True)
    np.testing.assert_array_equal(luma, read_image(path, max_side=max_side, grey=True))
    rgb = read_image_pixels(path, max_side=max_side).astype(np.float64)
    assert luma.shape == (*rgb.shape[:2], 1)
    difference = np.abs(luma[..., 0] - rgb @ np.array([0.299, 0.587, 0.114]))
    assert difference.mean() < 0.5 and np.percentile(difference, 90) <= 1.0


def test_grey_and_alpha_are_not_asked_for_together(tmp_path: Path) -> None:
    Image.fromarray(_photo()).save(tmp_path / "photo.png")
    with pytest.raises(ValueError, match="alpha and grey"):
        read_image(tmp_path / "photo.png", alpha=True, grey=True)


def test_other_formats_and_cmyk_jpegs_take_the_pillow_path(tmp_path: Path, decodes: list[Path]) -> None:
    rgba = np.concatenate([_photo(), np.full((45, 67, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    Image.fromarray(_photo()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    Image.fromarray(_photo()).save(tmp_path / "photo.webp", quality=90)
    for name in ("alpha.png", "cmyk.jpg", "photo.webp"):
        np.testing.assert_array_equal(
            _as_hwc(read_image_planes(tmp_path / name)), read_image(tmp_path / name)
        )
    assert decodes == []


def test_the_pillow_path_alone_gives_the_same_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(_photo()).save(path, quality=90)
    fast = read_image_planes(path)
    monkeypatch.setattr(planes_module, "_jpeg_codec", lambda: None)  # as without a usable OpenCV
    assert not planes_module.fast_jpeg_available()
    assert torch.equal(read_image_planes(path), fast)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("truncated", "truncated file"),
        ("empty", "empty file (0 bytes)"),
        ("text", "not an image (unrecognised format)"),
        ("missing", "file not found"),
    ],
)
def test_unreadable_photos_give_the_pillow_reason(kind: str, reason: str, tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.fromarray(_photo()).save(good, quality=90)
    path = tmp_path / f"{kind}.jpg"
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a photo\n" * 20)
    with pytest.raises(PhotoError) as caught:
        read_image_planes(path)
    assert caught.value.reason == reason and caught.value.path == path


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(_photo(40, 50)).save(path, quality=90)
    with pytest.raises(PhotoError, match="image too large"):
        read_image_planes(path, max_pixels=1000)


# ------------------------------------------------------------------------------------------------
# saving
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", [60, 95])
def test_jpeg_bytes_equal_pillows(quality: int, tmp_path: Path) -> None:
    photo = _photo()
    save_image(tmp_path / "pillow.jpg", photo, quality=quality)
    interleaved = torch.from_numpy(photo).permute(2, 0, 1)  # the renderer's frames: a view
    save_image_planes(tmp_path / "view.jpg", interleaved, quality=quality)
    save_image_planes(tmp_path / "planar.jpg", interleaved.contiguous(), quality=quality)
    expected = (tmp_path / "pillow.jpg").read_bytes()
    assert (tmp_path / "view.jpg").read_bytes() == expected
    assert (tmp_path / "planar.jpg").read_bytes() == expected
    assert not list(tmp_path.glob(".*"))  # written through a temporary name, renamed


def test_grey_planes_save_like_a_grey_array(tmp_path: Path) -> None:
    grey = _photo()[..., 1]
    save_image(tmp_path / "pillow.jpg", grey)
    save_image_planes(tmp_path / "planes.jpg", torch.from_numpy(grey).unsqueeze(0))
    with Image.open(tmp_path / "pillow.jpg") as a, Image.open(tmp_path / "planes.jpg") as b:
        assert a.mode == b.mode == "L"
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_other_outputs_go_through_save_image(tmp_path: Path) -> None:
    rgba = np.concatenate([_photo(), np.full((45, 67, 1), 77, np.uint8)], axis=2)
    save_image_planes(tmp_path / "alpha.png", torch.from_numpy(rgba).permute(2, 0, 1))
    with Image.open(tmp_path / "alpha.png") as image:
        np.testing.assert_array_equal(np.asarray(image), rgba)
    # EXIF is only written by Pillow.
    exif = Image.Exif()
    exif[0x0132] = "2020:01:02 03:04:05"
    save_image_planes(
        tmp_path / "dated.jpg", torch.from_numpy(_photo()).permute(2, 0, 1), exif=exif.tobytes()
    )
    with Image.open(tmp_path / "dated.jpg") as image:
        assert image.getexif()[0x0132] == "2020:01:02 03:04:05"


def test_save_rejects_bad_planes(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="planes"):
        save_image_planes(tmp_path / "a.jpg", _photo())  # a numpy array
    with pytest.raises(TypeError, match="planes"):
        save_image_planes(tmp_path / "a.jpg", torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="planes"):
        save_image_planes(tmp_path / "a.jpg", torch.zeros(2, 4, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="alpha channel"):
        save_image_planes(tmp_path / "a.jpg", torch.zeros(4, 4, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="quality"):
        save_image_planes(tmp_path / "a.jpg", torch.zeros(3, 4, 5, dtype=torch.uint8), quality=0)
    with pytest.raises(ValueError, match="suffix"):
        save_image_planes(tmp_path / "a.gif", torch.zeros(3, 4, 5, dtype=torch.uint8))
    assert not list(tmp_path.iterdir())


def test_a_frame_saved_as_planes_reads_back_as_pillow_reads_it(tmp_path: Path) -> None:
    photo = _photo(64, 80, seed=3)
    save_image_planes(tmp_path / "a.jpg", torch.from_numpy(photo).permute(2, 0, 1), quality=95)
    back = read_image_planes(tmp_path / "a.jpg")
    with Image.open(io.BytesIO((tmp_path / "a.jpg").read_bytes())) as image:
        np.testing.assert_array_equal(_as_hwc(back), np.asarray(image.convert("RGB")))
