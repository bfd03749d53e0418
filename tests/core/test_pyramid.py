"""Pyramids: OpenCV parity of the "opencv" mode, the pixel map of both modes (measured on a blob's
centroid), sizes, batching and gradients.

Measured max abs differences against OpenCV 5.0 (float32 [0, 1] inputs): pyrDown 1.2e-7, pyrUp 1.2e-7
(even and odd sizes, and pyrUp's odd ``dstsize``).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from alignimate.core import filters as filters_module
from alignimate.core.pyramid import build_pyramid, pyramid_depth, pyramid_level_matrix, pyrdown, pyrup

SIZES = [(32, 32), (37, 29), (6, 5), (3, 3), (2, 2), (1, 4)]


def _images(b: int, c: int, h: int, w: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)


def _per_image(images: torch.Tensor, fn) -> torch.Tensor:
    arr = images.permute(0, 2, 3, 1).numpy()
    out = np.stack([fn(np.ascontiguousarray(a)) for a in arr])
    if out.ndim == 3:  # OpenCV drops a single channel
        out = out[..., None]
    return torch.from_numpy(out).permute(0, 3, 1, 2)


@pytest.mark.parametrize("size", SIZES)
def test_pyrdown_opencv_mode_matches_cv2(size) -> None:
    x = _images(2, 3, *size)
    ref = _per_image(x, cv2.pyrDown)
    out = pyrdown(x, mode="opencv")
    assert out.shape == ref.shape == (2, 3, (size[0] + 1) // 2, (size[1] + 1) // 2)
    assert (out - ref).abs().max().item() < 3e-7


@pytest.mark.parametrize("size", SIZES)
def test_pyrup_opencv_mode_matches_cv2(size) -> None:
    x = _images(2, 3, *size)
    ref = _per_image(x, cv2.pyrUp)
    out = pyrup(x, mode="opencv")
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < 3e-7
    h, w = size
    if h > 1 and w > 1:
        odd = _per_image(x, lambda a: cv2.pyrUp(a, dstsize=(2 * w - 1, 2 * h - 1)))
        assert (pyrup(x, mode="opencv", size=(2 * h - 1, 2 * w - 1)) - odd).abs().max().item() < 3e-7


@pytest.mark.parametrize("size", [(16, 16), (15, 9)])
def test_centered_pyrdown_is_blur_then_2x2_average(size) -> None:
    # The 6-tap binomial with stride 2 = 5-tap binomial blur, then the mean of each 2x2 block (reflect
    # border; odd sizes get one reflected row/column). Built here from torch primitives independently.
    x = _images(1, 2, *size, dtype=torch.float64)
    h, w = size
    k5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16
    padded = torch.nn.functional.pad(x, (2, 3, 2, 3), mode="reflect")
    blurred = torch.nn.functional.conv2d(padded.reshape(2, 1, h + 5, w + 5), (k5[:, None] * k5)[None, None])
    blocks = torch.nn.functional.avg_pool2d(blurred, 2, ceil_mode=False).reshape(
        1, 2, -1, blurred.shape[-1] // 2
    )
    expected = blocks[..., : (h + 1) // 2, : (w + 1) // 2]
    torch.testing.assert_close(pyrdown(x), expected, rtol=0, atol=1e-14)


def _centroid(img: torch.Tensor) -> torch.Tensor:
    h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=img.dtype), torch.arange(w, dtype=img.dtype), indexing="ij")
    total = img.sum()
    return torch.stack([(img * xs).sum() / total, (img * ys).sum() / total])


@pytest.mark.parametrize("mode", ["centered", "opencv"])
@pytest.mark.parametrize("size", [(64, 64), (61, 67)])
def test_level_matrix_maps_blob_centre(mode: str, size) -> None:
    # A Gaussian blob at a sub-pixel position, far from the borders: after k pyrdowns its centroid must
    # sit where pyramid_level_matrix(k) maps the level-0 centre.
    h, w = size
    centre = torch.tensor([29.3, 33.7], dtype=torch.float64)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    blob = torch.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 4.0**2))
    levels = build_pyramid(blob[None, None], levels=3, mode=mode)
    for k, level in enumerate(levels):
        m = pyramid_level_matrix(k, mode)
        expected = (m @ torch.cat([centre, centre.new_ones(1)]))[:2]
        torch.testing.assert_close(_centroid(level[0, 0]), expected, rtol=0, atol=2e-3)


def test_level_matrix_literals() -> None:
    torch.testing.assert_close(pyramid_level_matrix(0), torch.eye(3, dtype=torch.float64))
    # Level 1, centered: x1 = (x0 + 0.5) / 2 - 0.5 -> pixel 0.5 (boundary of level-0 pixels 0 and 1) -> 0.
    m1 = pyramid_level_matrix(1)
    torch.testing.assert_close(
        m1 @ torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64),
        torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
    )
    # Edges map to edges: -0.5 -> -0.5 at every level.
    m3 = pyramid_level_matrix(3)
    torch.testing.assert_close(
        m3 @ torch.tensor([-0.5, -0.5, 1.0], dtype=torch.float64),
        torch.tensor([-0.5, -0.5, 1.0], dtype=torch.float64),
    )
    # OpenCV: pixel 2 of level 0 is pixel 1 of level 1.
    mo = pyramid_level_matrix(1, "opencv", dtype=torch.float32)
    assert mo.dtype == torch.float32
    torch.testing.assert_close(mo @ torch.tensor([2.0, 4.0, 1.0]), torch.tensor([1.0, 2.0, 1.0]))
    # Composition: level 2 = level 1 applied twice.
    torch.testing.assert_close(pyramid_level_matrix(2), m1 @ m1)


def test_centered_pyrup_inverts_geometry() -> None:
    # pyrup(centered) of a smooth ramp reproduces the ramp at level-0 positions (interior).
    h, w = 12, 10
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    ramp0 = (0.1 * xs + 0.05 * ys)[None, None]
    m = pyramid_level_matrix(1)
    ramp1 = 0.1 * (torch.arange(w // 2, dtype=torch.float64) - m[0, 2]) / m[0, 0]
    ramp1 = (
        ramp1[None, :] + 0.05 * ((torch.arange(h // 2, dtype=torch.float64)[:, None] - m[1, 2]) / m[1, 1])
    )[None, None]
    up = pyrup(ramp1)
    # The outer two rows/columns read the reflected border of level 1.
    torch.testing.assert_close(up[..., 2:-2, 2:-2], ramp0[..., 2:-2, 2:-2], rtol=0, atol=1e-12)


def test_build_pyramid_depth_and_sizes() -> None:
    x = _images(2, 3, 100, 70)
    levels = build_pyramid(x)
    assert levels[0] is x
    sizes = [tuple(t.shape[-2:]) for t in levels]
    assert sizes == [(100, 70), (50, 35), (25, 18)]  # next would be (13, 9): shorter side < 16
    assert pyramid_depth((100, 70)) == 3
    assert pyramid_depth((10, 10)) == 1
    assert pyramid_depth((64, 64), min_size=8) == 4
    assert len(build_pyramid(x, levels=5)) == 5
    assert [tuple(t.shape[-2:]) for t in build_pyramid(x, levels=2, mode="opencv")] == [(100, 70), (50, 35)]
    with pytest.raises(ValueError, match="levels"):
        build_pyramid(x, levels=0)
    with pytest.raises(ValueError, match="mode"):
        pyrdown(x, mode="bilinear")
    with pytest.raises(ValueError, match="size"):
        pyrup(x, size=(10, 10))
    with pytest.raises(ValueError, match="level"):
        pyramid_level_matrix(-1)


@pytest.mark.parametrize("mode", ["centered", "opencv"])
def test_batch_equals_loop_and_dtypes(mode: str) -> None:
    x = _images(3, 2, 19, 22)
    down = pyrdown(x, mode=mode)
    up = pyrup(x, mode=mode)
    for i in range(3):
        torch.testing.assert_close(down[i : i + 1], pyrdown(x[i : i + 1], mode=mode), rtol=0, atol=1e-7)
        torch.testing.assert_close(up[i : i + 1], pyrup(x[i : i + 1], mode=mode), rtol=0, atol=1e-7)
    down64 = pyrdown(x.double(), mode=mode)
    assert down64.dtype == torch.float64
    torch.testing.assert_close(down64, down.double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["centered", "opencv"])
def test_pyrdown_in_chunks_of_planes_equals_one_chunk(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    # float32 on the CPU filters a few planes at a time; the split must not show in the result (beyond
    # rounding: the strided pass's summation order depends on how many planes it sees at once).
    x = _images(3, 2, 37, 29)
    whole = pyrdown(x, mode=mode)
    monkeypatch.setattr(filters_module, "_CHUNK_BYTES", 1)
    torch.testing.assert_close(pyrdown(x, mode=mode), whole, rtol=0, atol=3e-7)


@pytest.mark.parametrize("border", ["reflect", "replicate", "symmetric"])
@pytest.mark.parametrize("mode", ["centered", "opencv"])
def test_constant_image_stays_constant(border: str, mode: str) -> None:
    x = torch.full((1, 1, 9, 7), 0.3)
    torch.testing.assert_close(pyrdown(x, border, mode), torch.full((1, 1, 5, 4), 0.3))
    torch.testing.assert_close(pyrup(x, border, mode), torch.full((1, 1, 18, 14), 0.3))


def test_empty_batch() -> None:
    x = torch.zeros(0, 3, 9, 8)
    assert pyrdown(x).shape == (0, 3, 5, 4)
    assert pyrup(x).shape == (0, 3, 18, 16)


def test_gradcheck() -> None:
    x = _images(1, 2, 7, 6, dtype=torch.float64).requires_grad_(True)
    for mode in ("centered", "opencv"):
        assert torch.autograd.gradcheck(lambda t, m=mode: pyrdown(t, mode=m), (x,), fast_mode=True)
        assert torch.autograd.gradcheck(
            lambda t, m=mode: pyrup(t, mode=m, size=(13, 12)), (x,), fast_mode=True
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    x = _images(2, 3, 37, 29)
    for mode in ("centered", "opencv"):
        torch.testing.assert_close(
            pyrdown(x.cuda(), mode=mode).cpu(), pyrdown(x, mode=mode), rtol=0, atol=1e-6
        )
        torch.testing.assert_close(pyrup(x.cuda(), mode=mode).cpu(), pyrup(x, mode=mode), rtol=0, atol=1e-6)
