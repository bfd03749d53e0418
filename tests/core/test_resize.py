"""Resize: OpenCV parity where the methods coincide, the pixel-centre geometry (measured on a blob's
centroid), the antialiasing filter, size rules and gradients.

Measured max abs differences against OpenCV 5.0 (float32 [0, 1] inputs): INTER_AREA at integer factors
~6e-8, INTER_LINEAR (``antialias=False``) ~1e-7 for downscales, 7.5e-7 for upscales.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from alignimate.core.resize import fit_size, rescale, resize, resize_to_fit, scaled_size


def _images(b: int, c: int, h: int, w: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)


def _cv_resize(images: torch.Tensor, size, interpolation) -> torch.Tensor:
    arr = images.permute(0, 2, 3, 1).numpy()
    out = np.stack([cv2.resize(a, (size[1], size[0]), interpolation=interpolation) for a in arr])
    return torch.from_numpy(out).permute(0, 3, 1, 2)


@pytest.mark.parametrize(("src", "dst"), [((24, 36), (12, 18)), ((24, 36), (8, 12)), ((24, 36), (6, 9))])
def test_area_matches_opencv_at_integer_factors(src, dst) -> None:
    x = _images(2, 3, *src)
    ref = _cv_resize(x, dst, cv2.INTER_AREA)
    assert (resize(x, dst, mode="area") - ref).abs().max().item() < 2e-7


@pytest.mark.parametrize(("src", "dst"), [((24, 36), (12, 18)), ((24, 36), (8, 12)), ((10, 14), (25, 21))])
def test_bilinear_without_antialias_matches_opencv_linear(src, dst) -> None:
    x = _images(2, 3, *src)
    ref = _cv_resize(x, dst, cv2.INTER_LINEAR)
    assert (resize(x, dst, antialias=False) - ref).abs().max().item() < 1e-6


def test_antialiased_half_size_is_1331_filter() -> None:
    # At exactly 1/2 the antialiased bilinear filter is a triangle two output pixels wide: taps
    # [1, 3, 3, 1] / 8 around each 2x2 block, independent of OpenCV and PyTorch internals.
    x = _images(1, 2, 16, 20, dtype=torch.float64)
    out = resize(x, (8, 10))
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64) / 8
    kernel = (taps[:, None] * taps[None, :])[None, None]
    expected = torch.nn.functional.conv2d(x.reshape(2, 1, 16, 20)[..., 1:, 1:], kernel, stride=2)
    # Output pixels 1..6 (rows) and 1..8 (columns) have their whole 4x4 support inside the image.
    torch.testing.assert_close(out[..., 1:7, 1:9], expected.reshape(1, 2, 6, 8), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "area"])
@pytest.mark.parametrize(("src", "dst"), [((64, 64), (40, 40)), ((60, 70), (37, 29)), ((30, 40), (45, 61))])
def test_geometry_maps_blob_centre(mode: str, src, dst) -> None:
    # Pixel-centre convention: x' = (x + 0.5) * w' / w - 0.5. Checked on the centroid of a smooth blob.
    h, w = src
    centre = (31.3 * w / 70, 27.6 * h / 64)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    blob = torch.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 4.0**2))[None, None]
    out = resize(blob, dst, mode=mode)[0, 0]
    h2, w2 = dst
    yy, xx = torch.meshgrid(
        torch.arange(h2, dtype=torch.float64), torch.arange(w2, dtype=torch.float64), indexing="ij"
    )
    got = ((out * xx).sum() / out.sum(), (out * yy).sum() / out.sum())
    expected = ((centre[0] + 0.5) * w2 / w - 0.5, (centre[1] + 0.5) * h2 / h - 0.5)
    # "area" with a non-integer factor rounds its bins to whole pixels: a looser bound (measured 0.029).
    tol = 0.05 if mode == "area" else 0.02
    assert abs(got[0] - expected[0]) < tol and abs(got[1] - expected[1]) < tol


def test_nearest_is_centre_aligned() -> None:
    x = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 2, 8)
    # Output pixel i covers input [2i - 0.5, 2i + 1.5]; its centre 2i + 0.5 rounds to the pixel 2i + 1.
    torch.testing.assert_close(resize(x, (1, 4), mode="nearest")[0, 0, 0], torch.tensor([1.0, 3.0, 5.0, 7.0]))


def test_identity_size_returns_input() -> None:
    x = _images(1, 3, 9, 11)
    assert resize(x, (9, 11)) is x


def test_size_rules() -> None:
    assert fit_size((100, 70), 50) == (50, 35)
    assert fit_size((70, 100), 50) == (35, 50)
    assert fit_size((33, 100), 50) == (17, 50)  # 16.5 rounds half up
    assert fit_size((20, 10), 50) == (20, 10)  # already fits
    assert fit_size((20, 10), 50, allow_upscale=True) == (50, 25)
    assert fit_size((1, 1000), 10) == (1, 10)  # never below 1
    assert scaled_size((25, 31), 0.5) == (13, 16)
    assert scaled_size((25, 31), (2.0, 0.1)) == (50, 3)
    x = _images(1, 3, 40, 30)
    assert resize_to_fit(x, 20).shape == (1, 3, 20, 15)
    assert rescale(x, 0.25).shape == (1, 3, 10, 8)
    with pytest.raises(ValueError, match="max_side"):
        fit_size((10, 10), 0)
    with pytest.raises(ValueError, match="factor"):
        scaled_size((10, 10), -1.0)
    with pytest.raises(ValueError, match="mode"):
        resize(x, (5, 5), mode="lanczos")
    with pytest.raises(ValueError, match="size"):
        resize(x, (5,))


def test_batch_equals_loop_and_float64() -> None:
    x = _images(3, 2, 21, 17)
    out = resize(x, (10, 8))
    for i in range(3):
        torch.testing.assert_close(out[i : i + 1], resize(x[i : i + 1], (10, 8)))
    torch.testing.assert_close(resize(x.double(), (10, 8)).float(), out)


def test_gradcheck() -> None:
    x = _images(1, 2, 9, 8, dtype=torch.float64).requires_grad_(True)
    for mode in ("bilinear", "bicubic"):
        for size in ((4, 5), (13, 11)):
            assert torch.autograd.gradcheck(
                lambda t, m=mode, s=size: resize(t, s, mode=m), (x,), fast_mode=True
            )
    assert torch.autograd.gradcheck(lambda t: resize(t, (3, 4), mode="area"), (x,), fast_mode=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    x = _images(2, 3, 40, 50)
    for mode in ("bilinear", "bicubic", "area", "nearest"):
        torch.testing.assert_close(
            resize(x.cuda(), (17, 23), mode=mode).cpu(), resize(x, (17, 23), mode=mode), rtol=0, atol=1e-5
        )
