"""Colour conversions and numpy/PIL <-> tensor helpers, checked against OpenCV and plain numpy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from alignimate.core.color import (
    bgr_to_rgb,
    image_to_tensor,
    rgb_to_bgr,
    rgb_to_grayscale,
    tensor_to_image,
    tensor_to_pil,
    to_float,
    to_uint8,
)


def _hwc_to_bchw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------- grayscale


@pytest.mark.parametrize(("channels", "code"), [(3, cv2.COLOR_RGB2GRAY), (4, cv2.COLOR_RGBA2GRAY)])
def test_rgb_to_grayscale_matches_opencv_float32(rng: np.random.Generator, channels: int, code: int) -> None:
    img = rng.random((37, 53, channels), dtype=np.float32)
    expected = cv2.cvtColor(img, code)
    got = rgb_to_grayscale(_hwc_to_bchw(img))
    assert got.shape == (1, 1, 37, 53)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got[0, 0].numpy(), expected, rtol=0, atol=1e-6)


def test_rgb_to_grayscale_batched_float64_and_passthrough(rng: np.random.Generator) -> None:
    images = torch.from_numpy(rng.random((3, 3, 8, 9)))
    gray = rgb_to_grayscale(images)
    expected = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    torch.testing.assert_close(gray[:, 0], expected, rtol=0, atol=1e-15)
    single = images[:, :1]
    assert rgb_to_grayscale(single) is single


def test_rgb_to_grayscale_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="channels"):
        rgb_to_grayscale(torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError, match="images"):
        rgb_to_grayscale(torch.rand(3, 4, 4))
    with pytest.raises(TypeError, match="floating"):
        rgb_to_grayscale(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


# --------------------------------------------------------------------------- channel order


def test_rgb_bgr_swap_matches_opencv(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    got = rgb_to_bgr(_hwc_to_bchw(img))
    np.testing.assert_array_equal(got[0].permute(1, 2, 0).numpy(), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    torch.testing.assert_close(bgr_to_rgb(got), _hwc_to_bchw(img), rtol=0, atol=0)


def test_rgba_swap_keeps_alpha_last(rng: np.random.Generator) -> None:
    img = rng.random((2, 4, 5, 5), dtype=np.float32)
    t = torch.from_numpy(img)
    got = rgb_to_bgr(t)
    np.testing.assert_array_equal(got.numpy(), img[:, [2, 1, 0, 3]])
    with pytest.raises(ValueError, match="3 or 4 channels"):
        bgr_to_rgb(torch.rand(1, 1, 3, 3))


# --------------------------------------------------------------------------- dtype conversions


def test_to_float_scales_integer_types() -> None:
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    torch.testing.assert_close(to_float(u8, torch.float64), u8.double() / 255.0, rtol=0, atol=0)
    u16 = torch.from_numpy(np.array([0, 1, 32768, 65535], dtype=np.uint16))
    got = to_float(u16, torch.float64)
    np.testing.assert_allclose(got.numpy(), np.array([0, 1, 32768, 65535]) / 65535.0, rtol=0, atol=1e-15)
    floats = torch.rand(2, 3, dtype=torch.float64)
    assert to_float(floats).dtype == torch.float32
    with pytest.raises(TypeError, match="uint8, uint16"):
        to_float(torch.zeros(3, dtype=torch.int32))
    with pytest.raises(TypeError, match="dtype"):
        to_float(u8, torch.int64)


def test_to_uint8_round_trip_rounding_and_clamping() -> None:
    levels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(to_float(levels)), levels)
    # Nearest level: +-0.4 of a level rounds back, values outside [0, 1] clamp, NaN -> 0.
    k = torch.arange(1, 255, dtype=torch.float32)
    assert torch.equal(to_uint8((k + 0.4) / 255.0), k.to(torch.uint8))
    assert torch.equal(to_uint8((k - 0.4) / 255.0), k.to(torch.uint8))
    special = to_uint8(torch.tensor([-0.3, 1.7, float("nan"), float("inf"), -float("inf")]))
    assert special.tolist() == [0, 255, 0, 255, 0]
    with pytest.raises(TypeError):
        to_uint8(torch.zeros(2, dtype=torch.int16))


# --------------------------------------------------------------------------- numpy / PIL round trips


def test_uint8_rgb_round_trip(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (11, 13, 3), dtype=np.uint8)
    t = image_to_tensor(img)
    assert t.shape == (1, 3, 11, 13)
    assert t.dtype == torch.float32
    np.testing.assert_allclose(t[0].permute(1, 2, 0).numpy(), img / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(tensor_to_image(t), img)
    np.testing.assert_array_equal(tensor_to_image(t[0]), img)


def test_uint16_round_trip(rng: np.random.Generator) -> None:
    img = rng.integers(0, 65536, (9, 10, 3), dtype=np.uint16)
    img[0, 0] = [0, 1, 65535]
    t = image_to_tensor(img)
    assert float(t.max()) <= 1.0
    np.testing.assert_array_equal(tensor_to_image(t, dtype=np.uint16), img)
    # 8-bit output of a 16-bit image is its nearest 8-bit level.
    np.testing.assert_array_equal(tensor_to_image(t), np.round(img / 65535.0 * 255.0).astype(np.uint8))


def test_gray_round_trip_keeps_2d_shape(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (7, 5), dtype=np.uint8)
    t = image_to_tensor(img)
    assert t.shape == (1, 1, 7, 5)
    out = tensor_to_image(t)
    assert out.shape == (7, 5)
    np.testing.assert_array_equal(out, img)
    assert tensor_to_image(t, squeeze_gray=False).shape == (7, 5, 1)


def test_rgba_round_trip(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    t = image_to_tensor(img, dtype=torch.float64)
    assert t.shape == (1, 4, 4, 6)
    assert t.dtype == torch.float64
    np.testing.assert_array_equal(tensor_to_image(t), img)


def test_float_input_is_not_rescaled_and_not_shared(rng: np.random.Generator) -> None:
    img = rng.random((5, 6, 3), dtype=np.float32)
    t = image_to_tensor(img)
    np.testing.assert_array_equal(t[0].permute(1, 2, 0).numpy(), img)
    img[...] = 0.0
    assert float(t.abs().sum()) > 0, "the tensor must own its memory"


def test_non_contiguous_bgr_view(rng: np.random.Generator) -> None:
    bgr = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    t = image_to_tensor(bgr[:, :, ::-1])
    np.testing.assert_array_equal(tensor_to_image(t), bgr[:, :, ::-1])
    np.testing.assert_array_equal(tensor_to_image(bgr_to_rgb(image_to_tensor(bgr))), bgr[:, :, ::-1])


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_pil_round_trip(rng: np.random.Generator, mode: str) -> None:
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (8, 9, channels), dtype=np.uint8).squeeze()
    pil = Image.fromarray(arr)
    assert pil.mode == mode
    t = image_to_tensor(pil)
    assert t.shape == (1, channels, 8, 9)
    back = tensor_to_pil(t)
    assert back.mode == mode
    np.testing.assert_array_equal(np.asarray(back), arr)


def test_pil_16_bit_and_palette(rng: np.random.Generator) -> None:
    arr16 = rng.integers(0, 65536, (6, 7), dtype=np.uint16)
    pil16 = Image.fromarray(arr16)
    assert pil16.mode.startswith("I")
    np.testing.assert_array_equal(tensor_to_image(image_to_tensor(pil16), dtype=np.uint16), arr16)

    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(colors=16)
    assert palette.mode == "P"
    expected = np.asarray(palette.convert("RGB"))
    np.testing.assert_array_equal(tensor_to_image(image_to_tensor(palette)), expected)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="uint8, uint16"):
        image_to_tensor(np.zeros((3, 3), dtype=np.int32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        image_to_tensor(np.zeros((1, 3, 3, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="numpy array or a PIL image"):
        image_to_tensor([[0, 1]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="single image"):
        tensor_to_image(torch.rand(2, 3, 4, 4))
    with pytest.raises(TypeError, match="dtype"):
        tensor_to_image(torch.rand(1, 3, 4, 4), dtype=np.float32)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 to 4 channels"):
        tensor_to_pil(torch.rand(5, 4, 4))
