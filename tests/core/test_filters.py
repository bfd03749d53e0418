"""Filters: agreement with OpenCV on the same float inputs, gradients, batching and argument checks.

Measured max abs differences against OpenCV 5.0 (float32 [0, 1] inputs) when these tests were written:
GaussianBlur 1.2e-7 .. 2.4e-7 for every size (3..21) and border, filter2D 0 .. 2.4e-7, boxFilter ~1.2e-7,
Sobel/8 ~6e-8, Laplacian ~4.8e-7; float64 ~6e-16. The bounds below sit a little above these.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from alignimate.core import filters as filters_module
from alignimate.core.filters import (
    BORDER_TYPES,
    box_blur,
    filter2d,
    filter2d_separable,
    gaussian_blur2d,
    gaussian_kernel1d,
    gaussian_kernel_size,
    laplacian,
    sobel,
    spatial_gradient,
)

F32_TOL = 5e-7
F64_TOL = 1e-12

CV_BORDERS = {
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
    "symmetric": cv2.BORDER_REFLECT,
}


def _images(
    b: int = 2, c: int = 3, h: int = 23, w: int = 31, dtype=torch.float32, seed: int = 0
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)


def _per_plane(images: torch.Tensor, fn) -> torch.Tensor:
    """Apply an OpenCV function to every (H, W) plane, return (B, C, H', W')."""
    arr = images.detach().cpu().numpy()
    out = [[fn(np.ascontiguousarray(arr[i, j])) for j in range(arr.shape[1])] for i in range(arr.shape[0])]
    return torch.from_numpy(np.asarray(out))


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


# ---------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "sigma"), [(3, 0.8), (5, 1.5), (7, 2.0), (11, 3.0), (9, 0.5), (21, 2.5)])
def test_gaussian_kernel_matches_opencv(size: int, sigma: float) -> None:
    ours = gaussian_kernel1d(sigma, size, dtype=torch.float64)
    ref = torch.from_numpy(cv2.getGaussianKernel(size, sigma, ktype=cv2.CV_64F)[:, 0])
    assert _maxdiff(ours, ref) < 1e-15
    assert abs(ours.sum().item() - 1.0) < 1e-15


def test_gaussian_kernel_size_rule() -> None:
    # 2 * ceil(3 sigma) + 1, odd, covering +-3 sigma.
    assert [gaussian_kernel_size(s) for s in (0.3, 1.0, 1.1, 1.5, 3.0)] == [3, 7, 9, 11, 19]
    assert gaussian_kernel1d(1.5).shape == (11,)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel_size(0.0)


def test_gaussian_kernel_tensor_sigma_rows_equal_scalar_kernels() -> None:
    sigmas = torch.tensor([0.7, 1.5, 2.2], dtype=torch.float64)
    rows = gaussian_kernel1d(sigmas, 9, dtype=torch.float64)
    assert rows.shape == (3, 9)
    for s, row in zip(sigmas.tolist(), rows, strict=True):
        assert _maxdiff(row, gaussian_kernel1d(s, 9, dtype=torch.float64)) < 1e-15
    # Derived size follows the largest sigma.
    assert gaussian_kernel1d(sigmas).shape == (3, gaussian_kernel_size(2.2))


def test_cached_kernel_is_not_shared_with_caller() -> None:
    k = gaussian_kernel1d(1.5, 5)
    k.mul_(0.0)
    assert gaussian_kernel1d(1.5, 5).sum().item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------
# OpenCV agreement
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("border", list(CV_BORDERS))
@pytest.mark.parametrize(
    ("ksize", "sigma"), [(3, 0.8), (5, 1.5), (11, 3.0), ((5, 9), (1.2, 2.5)), ((7, 3), (2.0, 0.6))]
)
def test_gaussian_blur_matches_opencv(ksize, sigma, border: str) -> None:
    x = _images()
    kh, kw = (ksize, ksize) if isinstance(ksize, int) else ksize
    sy, sx = (sigma, sigma) if isinstance(sigma, float) else sigma
    ref = _per_plane(
        x, lambda a: cv2.GaussianBlur(a, (kw, kh), sigmaX=sx, sigmaY=sy, borderType=CV_BORDERS[border])
    )
    assert _maxdiff(gaussian_blur2d(x, ksize, sigma, border), ref) < F32_TOL


@pytest.mark.parametrize("border", list(CV_BORDERS))
@pytest.mark.parametrize("size", [(1, 1), (1, 4), (2, 3), (4, 5)])
def test_gaussian_blur_tiny_images_match_opencv(size, border: str) -> None:
    # Kernels far wider than the image: reflections repeat like OpenCV's borderInterpolate.
    x = _images(1, 2, *size)
    ref = _per_plane(x, lambda a: cv2.GaussianBlur(a, (11, 11), 3.0, borderType=CV_BORDERS[border]))
    assert _maxdiff(gaussian_blur2d(x, 11, 3.0, border), ref) < F32_TOL


def test_gaussian_blur_float64_matches_opencv() -> None:
    x = _images(dtype=torch.float64)
    ref = _per_plane(x, lambda a: cv2.GaussianBlur(a, (7, 7), 1.7))
    out = gaussian_blur2d(x, 7, 1.7)
    assert out.dtype == torch.float64
    assert _maxdiff(out, ref) < F64_TOL


@pytest.mark.parametrize("border", list(CV_BORDERS))
@pytest.mark.parametrize("ksize", [(3, 5), (4, 4), (1, 3), (5, 1)])
def test_filter2d_matches_opencv(ksize, border: str) -> None:
    x = _images()
    kernel = torch.randn(*ksize, generator=torch.Generator().manual_seed(1))
    kn = kernel.numpy()
    ref = _per_plane(x, lambda a: cv2.filter2D(a, -1, kn, borderType=CV_BORDERS[border]))
    assert _maxdiff(filter2d(x, kernel, border), ref) < 1e-6


def test_circular_border_matches_opencv_wrap() -> None:
    x = _images(h=9, w=12)
    kernel = torch.rand(5, 7, generator=torch.Generator().manual_seed(2))
    kn = kernel.numpy()

    def wrapped(a: np.ndarray) -> np.ndarray:
        padded = cv2.copyMakeBorder(a, 2, 2, 3, 3, cv2.BORDER_WRAP)
        return cv2.filter2D(padded, -1, kn, borderType=cv2.BORDER_CONSTANT)[2:-2, 3:-3]

    assert _maxdiff(filter2d(x, kernel, "circular"), _per_plane(x, wrapped)) < 1e-6


@pytest.mark.parametrize("border", list(CV_BORDERS))
@pytest.mark.parametrize(("kx_len", "ky_len"), [(5, 3), (4, 6), (1, 7), (9, 1)])
def test_filter2d_separable_matches_opencv(kx_len: int, ky_len: int, border: str) -> None:
    x = _images()
    g = torch.Generator().manual_seed(3)
    kx, ky = torch.randn(kx_len, generator=g), torch.randn(ky_len, generator=g)
    ref = _per_plane(
        x, lambda a: cv2.sepFilter2D(a, -1, kx.numpy(), ky.numpy(), borderType=CV_BORDERS[border])
    )
    assert _maxdiff(filter2d_separable(x, kx, ky, border), ref) < 1e-6


@pytest.mark.parametrize("border", list(CV_BORDERS))
@pytest.mark.parametrize("ksize", [3, 4, (3, 5), (6, 2)])
def test_box_blur_matches_opencv(ksize, border: str) -> None:
    x = _images()
    kh, kw = (ksize, ksize) if isinstance(ksize, int) else ksize
    ref = _per_plane(
        x, lambda a: cv2.boxFilter(a, -1, (kw, kh), normalize=True, borderType=CV_BORDERS[border])
    )
    assert _maxdiff(box_blur(x, ksize, border), ref) < F32_TOL


@pytest.mark.parametrize("border", ["reflect", "replicate"])
def test_sobel_first_order_matches_opencv(border: str) -> None:
    x = _images()
    cb = CV_BORDERS[border]
    gx = _per_plane(x, lambda a: cv2.Sobel(a, -1, 1, 0, ksize=3, borderType=cb))
    gy = _per_plane(x, lambda a: cv2.Sobel(a, -1, 0, 1, ksize=3, borderType=cb))
    grad = spatial_gradient(x, border_type=border)
    assert grad.shape == (2, 3, 2, 23, 31)
    assert _maxdiff(grad[:, :, 0], gx / 8) < 2e-7
    assert _maxdiff(grad[:, :, 1], gy / 8) < 2e-7
    raw = spatial_gradient(x, normalized=False, border_type=border)
    assert _maxdiff(raw[:, :, 0], gx) < 1e-6
    assert _maxdiff(raw[:, :, 1], gy) < 1e-6


def test_sobel_default_border_is_opencv_default() -> None:
    x = _images()
    gx = _per_plane(x, lambda a: cv2.Sobel(a, -1, 1, 0, ksize=3))
    assert _maxdiff(spatial_gradient(x)[:, :, 0], gx / 8) < 2e-7


@pytest.mark.parametrize("normalized", [True, False])
def test_sobel_second_order_matches_opencv(normalized: bool) -> None:
    x = _images()
    scale = 0.25 if normalized else 1.0
    refs = [
        _per_plane(x, lambda a, d=d: cv2.Sobel(a, -1, d[0], d[1], ksize=3)) for d in ((2, 0), (1, 1), (0, 2))
    ]
    grad = spatial_gradient(x, order=2, normalized=normalized)
    assert grad.shape == (2, 3, 3, 23, 31)
    for i, ref in enumerate(refs):
        assert _maxdiff(grad[:, :, i], ref * scale) < 1e-6


def test_diff_mode_matches_opencv_kernels() -> None:
    x = _images()
    d1 = np.array([[-0.5, 0.0, 0.5]], dtype=np.float32)
    d2 = np.array([[1.0, -2.0, 1.0]], dtype=np.float32)
    dxy = np.outer([-0.5, 0.0, 0.5], [-0.5, 0.0, 0.5]).astype(np.float32)
    first = spatial_gradient(x, mode="diff")
    second = spatial_gradient(x, mode="diff", order=2)
    assert _maxdiff(first[:, :, 0], _per_plane(x, lambda a: cv2.filter2D(a, -1, d1))) < 2e-7
    assert _maxdiff(first[:, :, 1], _per_plane(x, lambda a: cv2.filter2D(a, -1, d1.T))) < 2e-7
    assert _maxdiff(second[:, :, 0], _per_plane(x, lambda a: cv2.filter2D(a, -1, d2))) < 5e-7
    assert _maxdiff(second[:, :, 1], _per_plane(x, lambda a: cv2.filter2D(a, -1, dxy))) < 2e-7
    assert _maxdiff(second[:, :, 2], _per_plane(x, lambda a: cv2.filter2D(a, -1, d2.T))) < 5e-7


def test_normalized_gradient_is_true_derivative_of_a_ramp() -> None:
    # A ramp 0.3 x - 0.2 y has derivatives (0.3, -0.2) at every interior pixel (replicate keeps the border
    # one-sided, so check the interior).
    ys, xs = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing="ij")
    ramp = (0.3 * xs - 0.2 * ys).expand(1, 1, 10, 12)
    for mode in ("sobel", "diff"):
        grad = spatial_gradient(ramp, mode=mode)[0, 0, :, 1:-1, 1:-1]
        torch.testing.assert_close(grad[0], torch.full_like(grad[0], 0.3))
        torch.testing.assert_close(grad[1], torch.full_like(grad[1], -0.2))


def test_sobel_magnitude() -> None:
    x = _images()
    gx = _per_plane(x, lambda a: cv2.Sobel(a, -1, 1, 0, ksize=3)).double() / 8
    gy = _per_plane(x, lambda a: cv2.Sobel(a, -1, 0, 1, ksize=3)).double() / 8
    ref = torch.sqrt(gx**2 + gy**2 + 1e-6)
    assert _maxdiff(sobel(x), ref) < 2e-7
    assert _maxdiff(sobel(x, eps=0.0, normalized=False), torch.sqrt(gx**2 + gy**2) * 8) < 1e-6
    flat = torch.full((1, 1, 6, 6), 0.4)
    torch.testing.assert_close(sobel(flat), torch.full_like(flat, 1e-3))


@pytest.mark.parametrize("border", ["reflect", "replicate", "constant"])
@pytest.mark.parametrize("ksize", [1, 3])
def test_laplacian_matches_opencv(ksize: int, border: str) -> None:
    x = _images()
    ref = _per_plane(x, lambda a: cv2.Laplacian(a, -1, ksize=ksize, borderType=CV_BORDERS[border]))
    assert _maxdiff(laplacian(x, normalized=False, border_type=border, kernel_size=ksize), ref) < 1e-6
    norm = 1.0 if ksize == 1 else 0.25
    assert _maxdiff(laplacian(x, border_type=border, kernel_size=ksize), ref * norm) < 1e-6


def test_laplacian_of_parabola_is_its_second_derivative() -> None:
    ys, xs = torch.meshgrid(
        torch.arange(9.0, dtype=torch.float64), torch.arange(9.0, dtype=torch.float64), indexing="ij"
    )
    bowl = (0.5 * xs**2 + 1.5 * ys**2).expand(1, 1, 9, 9)  # Laplacian = 1 + 3 = 4
    for ksize in (1, 3):
        inner = laplacian(bowl, kernel_size=ksize)[0, 0, 1:-1, 1:-1]
        torch.testing.assert_close(inner, torch.full_like(inner, 4.0))


# ---------------------------------------------------------------------------------------------------
# Batching, per-image kernels, dtypes, layouts
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(23, 31), (3, 5), (1, 6)])
def test_batch_equals_loop(size) -> None:
    # The vertical pass stacks all planes; no tap may leak from one image into the next.
    x = _images(4, 3, *size)
    for fn in (
        lambda t: gaussian_blur2d(t, 11, 3.0),
        lambda t: gaussian_blur2d(t, (5, 3), (1.0, 0.7), "constant"),
        lambda t: box_blur(t, 4, "symmetric"),
        lambda t: filter2d(t, torch.arange(12.0).view(3, 4)),
        lambda t: sobel(t),
        lambda t: spatial_gradient(t, order=2),
        lambda t: laplacian(t),
    ):
        batched = fn(x)
        looped = torch.cat([fn(x[i : i + 1]) for i in range(x.shape[0])])
        torch.testing.assert_close(batched, looped, rtol=0, atol=1e-6)


def test_per_image_sigma_equals_separate_calls() -> None:
    x = _images(3)
    sig = torch.tensor([0.8, 1.5, 2.4])
    out = gaussian_blur2d(x, 9, sig)
    for i, s in enumerate(sig.tolist()):
        torch.testing.assert_close(out[i : i + 1], gaussian_blur2d(x[i : i + 1], 9, s), rtol=0, atol=1e-6)
    anis = torch.tensor([[0.8, 2.0], [1.5, 0.5], [2.4, 2.4]])
    out2 = gaussian_blur2d(x, (9, 7), anis, "replicate")
    for i, (sy, sx) in enumerate(anis.tolist()):
        ref = gaussian_blur2d(x[i : i + 1], (9, 7), (sy, sx), "replicate")
        torch.testing.assert_close(out2[i : i + 1], ref, rtol=0, atol=1e-6)


def test_per_image_kernels_equal_separate_calls() -> None:
    x = _images(2)
    g = torch.Generator().manual_seed(4)
    kx, ky = torch.randn(2, 5, generator=g), torch.randn(2, 3, generator=g)
    k2 = torch.randn(2, 3, 4, generator=g)
    sep = filter2d_separable(x, kx, ky)
    full = filter2d(x, k2, "replicate")
    for i in range(2):
        torch.testing.assert_close(
            sep[i : i + 1], filter2d_separable(x[i : i + 1], kx[i], ky[i]), rtol=1e-6, atol=1e-6
        )
        torch.testing.assert_close(
            full[i : i + 1], filter2d(x[i : i + 1], k2[i], "replicate"), rtol=1e-6, atol=1e-6
        )


def test_scalar_tensor_sigma_equals_float_sigma() -> None:
    x = _images()
    torch.testing.assert_close(gaussian_blur2d(x, 7, torch.tensor(1.3)), gaussian_blur2d(x, 7, 1.3))
    # kernel_size=None derives the same size from a float or a tensor.
    torch.testing.assert_close(gaussian_blur2d(x, None, torch.tensor([1.3])), gaussian_blur2d(x, None, 1.3))


def test_float64_and_float32_agree() -> None:
    x = _images(dtype=torch.float64)
    for fn in (lambda t: gaussian_blur2d(t, 5, 1.5), lambda t: sobel(t), lambda t: box_blur(t, 3)):
        out64 = fn(x)
        assert out64.dtype == torch.float64
        torch.testing.assert_close(fn(x.float()).double(), out64, rtol=0, atol=1e-6)


def test_non_contiguous_inputs() -> None:
    x = _images(2, 3, 20, 24)
    views = [x.contiguous(memory_format=torch.channels_last), x[..., ::2], x.transpose(-1, -2)]
    for v in views:
        torch.testing.assert_close(gaussian_blur2d(v, 5, 1.5), gaussian_blur2d(v.contiguous(), 5, 1.5))
        torch.testing.assert_close(sobel(v), sobel(v.contiguous()))


def test_empty_batch() -> None:
    x = torch.zeros(0, 3, 8, 8)
    assert gaussian_blur2d(x, 5, 1.0).shape == x.shape
    assert sobel(x).shape == x.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    x = _images()
    for fn in (
        lambda t: gaussian_blur2d(t, 11, 3.0),
        lambda t: gaussian_blur2d(t, 5, torch.tensor([1.0, 2.0], device=t.device)),
        lambda t: filter2d(t, torch.ones(3, 3, device=t.device) / 9),
        lambda t: sobel(t),
        lambda t: laplacian(t),
    ):
        torch.testing.assert_close(fn(x.cuda()).cpu(), fn(x), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# The float32 CPU path: chunks of planes, polyphase rows, channels-last columns
# ---------------------------------------------------------------------------------------------------


def _one_plane_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filters_module, "_CHUNK_BYTES", 1)


@pytest.mark.parametrize("size", [(23, 31), (16, 24), (4, 3), (1, 9)])
@pytest.mark.parametrize("border", ["reflect", "replicate", "constant", "symmetric", "circular"])
def test_chunked_float32_path_equals_one_chunk_and_float64(
    monkeypatch: pytest.MonkeyPatch, size, border: str
) -> None:
    # Widths that are and are not whole blocks of 8, kernels shorter and longer than a block, even sizes.
    x = _images(3, 2, *size)
    g = torch.Generator().manual_seed(9)
    kernels = [(torch.rand(n, generator=g), torch.rand(m, generator=g)) for n, m in [(5, 3), (4, 12)]]
    kernels = [(kx / kx.sum(), ky / ky.sum()) for kx, ky in kernels]  # outputs in [0, 1], like a blur
    one_chunk = [filter2d_separable(x, kx, ky, border) for kx, ky in kernels]
    _one_plane_per_chunk(monkeypatch)
    for (kx, ky), whole in zip(kernels, one_chunk, strict=True):
        chunked = filter2d_separable(x, kx, ky, border)
        assert chunked.is_contiguous()
        torch.testing.assert_close(chunked, whole, rtol=0, atol=0)
        ref = filter2d_separable(x.double(), kx.double(), ky.double(), border)
        assert _maxdiff(chunked, ref) < 2 * F32_TOL


def test_float32_path_gradients_match_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    # gradcheck runs in float64, which takes the plain-convolution path; this checks the backward of the
    # float32 path (polyphase weights built from the kernel, chunks joined by cat) against it.
    g = torch.Generator().manual_seed(11)
    x64 = _images(2, 3, 14, 19, dtype=torch.float64)
    kx64 = torch.rand(11, generator=g, dtype=torch.float64)
    ky64 = torch.rand(4, generator=g, dtype=torch.float64)
    weights = torch.randn(2, 3, 14, 19, generator=g, dtype=torch.float64)

    def grads(dtype: torch.dtype) -> list[torch.Tensor]:
        leaves = [t.to(dtype).requires_grad_(True) for t in (x64, kx64, ky64)]
        out = filter2d_separable(leaves[0], leaves[1], leaves[2], "replicate")
        return list(torch.autograd.grad((out * weights.to(dtype)).sum(), leaves))

    expected = grads(torch.float64)
    for chunks in ("one", "per plane"):
        if chunks == "per plane":
            _one_plane_per_chunk(monkeypatch)
        for got, ref in zip(grads(torch.float32), expected, strict=True):
            torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("size", [(23, 31), (11, 8), (40, 64)])
def test_valid_filter_is_the_interior_of_the_full_filter(size) -> None:
    x = _images(2, 3, *size)
    k = gaussian_kernel1d(1.5, 7)
    full = filter2d_separable(x, k, k)
    valid = filters_module._filter_valid(x, k)
    torch.testing.assert_close(valid, full[..., 3:-3, 3:-3], rtol=0, atol=1e-6)
    # The row-buffer form reads a few columns past the image; what they hold must not matter.
    b, c, h, w = x.shape
    length = filters_module._valid_row_length(w, 7, x)
    rows = torch.full((b * c, h, length), 1e6)
    rows[..., :w] = x.reshape(b * c, h, w)
    got = filters_module._filter_valid_rows(rows, k, w).reshape(valid.shape)
    torch.testing.assert_close(got, valid, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Gradients (float64)
# ---------------------------------------------------------------------------------------------------


def _grad_image(h: int = 12, w: int = 13) -> torch.Tensor:
    # Larger than the kernels used below, so the borders and the interior are both exercised.
    return _images(2, 2, h, w, dtype=torch.float64).requires_grad_(True)


def _gradcheck(fn, inputs) -> bool:
    # fast_mode checks a random projection of the Jacobian: one pass instead of one per input element.
    return torch.autograd.gradcheck(fn, inputs, fast_mode=True)


def test_gradcheck_full_jacobian_small() -> None:
    x = _images(1, 1, 4, 5, dtype=torch.float64).requires_grad_(True)
    sig = torch.tensor([1.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, s: gaussian_blur2d(t, (3, 5), s), (x, sig))
    assert torch.autograd.gradcheck(lambda t: sobel(t, eps=1e-3), (x,))


@pytest.mark.parametrize("border", BORDER_TYPES)
def test_gradcheck_gaussian_blur_image(border: str) -> None:
    x = _grad_image()
    assert _gradcheck(lambda t: gaussian_blur2d(t, (5, 3), (1.2, 0.8), border), (x,))


def test_gradcheck_gaussian_blur_tensor_sigma() -> None:
    x = _grad_image()
    sig = torch.tensor([0.9, 1.6], dtype=torch.float64, requires_grad=True)
    assert _gradcheck(lambda t, s: gaussian_blur2d(t, 5, s), (x, sig))
    shared = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    assert _gradcheck(lambda s: gaussian_blur2d(x.detach(), 5, s), (shared,))
    anis = torch.tensor([[0.9, 1.4], [1.6, 0.7]], dtype=torch.float64, requires_grad=True)
    assert _gradcheck(lambda s: gaussian_blur2d(x.detach(), (5, 3), s, "replicate"), (anis,))


def test_gradcheck_filter2d_and_separable() -> None:
    x = _grad_image()
    g = torch.Generator().manual_seed(5)
    k = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    kb = torch.randn(2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    kx = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    ky = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert _gradcheck(lambda t, kk: filter2d(t, kk, "symmetric"), (x, k))
    assert _gradcheck(lambda t, kk: filter2d(t, kk), (x, kb))
    assert _gradcheck(lambda t, a: filter2d_separable(t, a, a.flip(0)), (x, kx))
    assert _gradcheck(lambda t, a, b: filter2d_separable(t, a, b, "constant"), (x, kx, ky))


def test_gradcheck_derivatives_and_box() -> None:
    x = _grad_image()
    assert _gradcheck(lambda t: box_blur(t, (3, 4)), (x,))
    for mode in ("sobel", "diff"):
        for order in (1, 2):
            assert _gradcheck(lambda t, m=mode, o=order: spatial_gradient(t, m, o), (x,))
    assert _gradcheck(lambda t: sobel(t, eps=1e-3), (x,))
    assert _gradcheck(lambda t: laplacian(t, kernel_size=3, border_type="replicate"), (x,))
    assert _gradcheck(lambda t: laplacian(t), (x,))


# ---------------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------------


def test_bad_arguments_raise() -> None:
    x = _images()
    with pytest.raises(ValueError, match="border_type"):
        gaussian_blur2d(x, 5, 1.0, "mirror")
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur2d(x, 5, 0.0)
    with pytest.raises(ValueError, match="kernel_size"):
        gaussian_blur2d(x, 0, 1.0)
    with pytest.raises(TypeError, match="kernel_size"):
        gaussian_blur2d(x, 2.5, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur2d(x, 5, torch.ones(3, 2))
    with pytest.raises(ValueError, match="images"):
        gaussian_blur2d(x[0], 5, 1.0)
    with pytest.raises(TypeError, match="images"):
        sobel(torch.zeros(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="kernel_x"):
        filter2d_separable(x, torch.ones(3, 3), torch.ones(3))
    with pytest.raises(ValueError, match="kernel"):
        filter2d(x, torch.ones(3))
    with pytest.raises(ValueError, match="mode"):
        spatial_gradient(x, mode="scharr")
    with pytest.raises(ValueError, match="order"):
        spatial_gradient(x, order=3)
    with pytest.raises(ValueError, match="kernel_size"):
        laplacian(x, kernel_size=5)
