"""Keypoint heatmaps: literal convention checks, a direct (non-separable) reference, weights, NaN
handling, sigma shapes, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from alignimate.core.heatmaps import keypoint_heatmaps


def _direct(keypoints: torch.Tensor, size, sigma: torch.Tensor) -> torch.Tensor:
    """Reference from the full distance map: exp(-|p - k|^2 / (2 sigma^2)), sigma (B, K)."""
    h, w = size
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=keypoints.dtype), torch.arange(w, dtype=keypoints.dtype), indexing="ij"
    )
    dx = xs[None, None] - keypoints[..., 0, None, None]
    dy = ys[None, None] - keypoints[..., 1, None, None]
    return torch.exp(-(dx**2 + dy**2) / (2 * sigma[..., None, None] ** 2))


def test_peak_exactly_at_integer_keypoint() -> None:
    kp = torch.tensor([[[3.0, 5.0], [0.0, 0.0], [9.0, 6.0]]])
    maps = keypoint_heatmaps(kp, (7, 10), 1.5)
    assert maps.shape == (1, 3, 7, 10)
    for k, (x, y) in enumerate([(3, 5), (0, 0), (9, 6)]):
        assert maps[0, k, y, x].item() == 1.0
        flat = maps[0, k].argmax().item()
        assert (flat % 10, flat // 10) == (x, y)
    # One pixel away along x: exp(-1 / (2 * 1.5^2)).
    assert maps[0, 0, 5, 4].item() == pytest.approx(math.exp(-1 / 4.5), rel=1e-6)


def test_matches_direct_formula_subpixel() -> None:
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(2, 4, 2, generator=g, dtype=torch.float64) * torch.tensor(
        [15.0, 11.0], dtype=torch.float64
    )
    sigma = torch.rand(2, 4, generator=g, dtype=torch.float64) + 0.5
    out = keypoint_heatmaps(kp, (12, 16), sigma)
    torch.testing.assert_close(out, _direct(kp, (12, 16), sigma), rtol=0, atol=1e-14)


def test_subpixel_centre_of_mass() -> None:
    # A symmetric Gaussian far from the borders has its centroid at the keypoint.
    kp = torch.tensor([[[20.3, 17.8]]], dtype=torch.float64)
    m = keypoint_heatmaps(kp, (40, 45), 2.0)[0, 0]
    ys, xs = torch.meshgrid(
        torch.arange(40.0, dtype=torch.float64), torch.arange(45.0, dtype=torch.float64), indexing="ij"
    )
    centroid = torch.stack([(m * xs).sum() / m.sum(), (m * ys).sum() / m.sum()])
    torch.testing.assert_close(centroid, kp[0, 0], rtol=0, atol=1e-9)


def test_sigma_shapes() -> None:
    kp = torch.tensor([[[3.0, 2.0], [5.0, 4.0]], [[1.0, 1.0], [6.0, 6.0]]])
    size = (8, 9)
    per_image = torch.tensor([1.0, 2.0])
    per_point = torch.tensor([[1.0, 1.5], [2.0, 0.7]])
    out_b = keypoint_heatmaps(kp, size, per_image)
    out_bk = keypoint_heatmaps(kp, size, per_point)
    torch.testing.assert_close(out_b, _direct(kp, size, per_image[:, None].expand(2, 2)))
    torch.testing.assert_close(out_bk, _direct(kp, size, per_point))
    torch.testing.assert_close(
        keypoint_heatmaps(kp, size, torch.tensor(1.3)), keypoint_heatmaps(kp, size, 1.3)
    )


def test_weights_and_nan_keypoints() -> None:
    kp = torch.tensor(
        [[[3.0, 2.0], [float("nan"), 4.0], [5.0, 5.0], [float("inf"), 0.0]]], requires_grad=True
    )
    weights = torch.tensor([[0.5, 1.0, 0.0, 1.0]])
    out = keypoint_heatmaps(kp, (7, 8), 1.0, weights=weights)
    assert torch.isfinite(out).all()
    assert out[0, 0].max().item() == pytest.approx(0.5)
    assert out[0, 1].abs().max().item() == 0.0  # NaN keypoint
    assert out[0, 2].abs().max().item() == 0.0  # weight 0
    assert out[0, 3].abs().max().item() == 0.0  # inf keypoint
    out.sum().backward()
    assert torch.isfinite(kp.grad).all()
    assert kp.grad[0, 1].abs().max().item() == 0.0


def test_sum_normalisation() -> None:
    kp = torch.tensor([[[3.2, 2.7], [0.0, 6.0]]])
    out = keypoint_heatmaps(kp, (9, 10), 1.2, weights=torch.tensor([[1.0, 0.25]]), normalize="sum")
    torch.testing.assert_close(out.sum(dim=(-1, -2)), torch.tensor([[1.0, 0.25]]))
    far = keypoint_heatmaps(torch.tensor([[[1e4, 1e4]]]), (5, 5), 0.5, normalize="sum")
    assert torch.isfinite(far).all()


def test_batch_equals_loop_and_dtype() -> None:
    kp = torch.rand(3, 5, 2, generator=torch.Generator().manual_seed(1)) * 10
    out = keypoint_heatmaps(kp, (11, 12), 1.7)
    for i in range(3):
        torch.testing.assert_close(out[i : i + 1], keypoint_heatmaps(kp[i : i + 1], (11, 12), 1.7))
    out64 = keypoint_heatmaps(kp.double(), (11, 12), 1.7)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out)


def test_gradcheck_keypoints_sigma_weights() -> None:
    g = torch.Generator().manual_seed(2)
    kp = (torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 6).requires_grad_(True)
    sigma = (torch.rand(2, 3, generator=g, dtype=torch.float64) + 0.8).requires_grad_(True)
    wt = torch.rand(2, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda k, s, w: keypoint_heatmaps(k, (6, 7), s, weights=w), (kp, sigma, wt)
    )
    per_image = torch.tensor([1.1, 0.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda k, s: keypoint_heatmaps(k, (6, 7), s, normalize="sum"), (kp, per_image)
    )


def test_bad_arguments() -> None:
    kp = torch.zeros(1, 2, 2)
    with pytest.raises(ValueError, match="keypoints"):
        keypoint_heatmaps(torch.zeros(2, 2), (4, 4), 1.0)
    with pytest.raises(ValueError, match="size"):
        keypoint_heatmaps(kp, (4, 0), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        keypoint_heatmaps(kp, (4, 4), -1.0)
    with pytest.raises(ValueError, match="sigma"):
        keypoint_heatmaps(kp, (4, 4), torch.ones(3))
    with pytest.raises(ValueError, match="normalize"):
        keypoint_heatmaps(kp, (4, 4), 1.0, normalize="max")
    with pytest.raises(ValueError, match="weights"):
        keypoint_heatmaps(kp, (4, 4), 1.0, weights=torch.ones(1, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    kp = torch.rand(2, 3, 2) * 8
    torch.testing.assert_close(
        keypoint_heatmaps(kp.cuda(), (9, 9), 1.5).cpu(), keypoint_heatmaps(kp, (9, 9), 1.5)
    )
