"""Losses and metrics: agreement with scikit-image and numpy, gradients, invariances, masks."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.filters import gaussian as sk_gaussian
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from alignimate.core import losses as losses_module
from alignimate.core.losses import (
    LOSS_NAMES,
    CharbonnierLoss,
    L1Loss,
    LocalZNCCLoss,
    MSELoss,
    SSIMLoss,
    ZNCCLoss,
    charbonnier_loss,
    get_loss,
    l1_loss,
    local_zncc,
    local_zncc_loss,
    mask_weight_sum,
    masked_mean,
    mse_loss,
    psnr,
    ssim,
    ssim_loss,
    ssim_map,
    total_variation,
    zncc,
    zncc_loss,
)

Pair = Callable[..., torch.Tensor]

# Small windows keep gradcheck on 12x12 images meaningful (the default 11-tap SSIM window with
# border cropping would leave only 2x2 pixels).
PAIR_FUNCTIONS: dict[str, Pair] = {
    "l1_loss": l1_loss,
    "mse_loss": mse_loss,
    "charbonnier_loss": lambda a, b, m=None: charbonnier_loss(a, b, m, scale=0.05),
    "zncc": zncc,
    "zncc_loss": zncc_loss,
    "local_zncc": lambda a, b, m=None: local_zncc(a, b, m, window_size=5),
    "local_zncc_loss": lambda a, b, m=None: local_zncc_loss(a, b, m, window_size=5),
    "ssim": lambda a, b, m=None: ssim(a, b, m, window_size=5, sigma=1.0),
    "ssim_default_window": ssim,
    "ssim_uncropped": lambda a, b, m=None: ssim(a, b, m, window_size=5, sigma=1.0, crop_border=False),
    "ssim_loss": lambda a, b, m=None: ssim_loss(a, b, m, window_size=5, sigma=1.0),
    "psnr": psnr,
}
LOSSES = {"l1_loss", "mse_loss", "charbonnier_loss", "zncc_loss", "local_zncc_loss", "ssim_loss"}
SIMILARITIES = {"zncc", "local_zncc", "ssim", "ssim_default_window", "ssim_uncropped"}


def _smooth_images(batch: int, channels: int, size: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Random smooth images in [0, 1] (blurred noise, contrast-stretched), made with skimage."""
    rng = np.random.default_rng(seed)
    noise = rng.random((batch, channels, size, size))
    smooth = np.stack([[sk_gaussian(ch, sigma=1.5) for ch in img] for img in noise])
    lo = smooth.min(axis=(2, 3), keepdims=True)
    hi = smooth.max(axis=(2, 3), keepdims=True)
    return torch.from_numpy((smooth - lo) / (hi - lo)).to(dtype)


def _half_mask(batch: int, size: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    mask = torch.zeros(batch, 1, size, size, dtype=dtype)
    mask[..., : size // 2 + 1, :] = 1.0
    mask[..., :, : size // 3] = 0.0
    return mask


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return resize(skdata.camera().astype(np.float64) / 255.0, (96, 96), anti_aliasing=True)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return resize(skdata.astronaut().astype(np.float64) / 255.0, (96, 96), anti_aliasing=True)


def _distorted(img: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.8 * img + 0.1 + rng.normal(0.0, 0.05, img.shape), 0.0, 1.0)


def _to_bchw(img: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(img))
    return t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    channel_axis = -1 if a.ndim == 3 else None
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=channel_axis,
    )


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize("name", ["camera", "astronaut"])
def test_ssim_and_psnr_match_skimage_on_real_images(request: pytest.FixtureRequest, name: str) -> None:
    img = request.getfixturevalue(name)
    other = _distorted(img, seed=3)
    a, b = _to_bchw(img), _to_bchw(other)
    expected_ssim = _sk_ssim(img, other)
    expected_psnr = peak_signal_noise_ratio(img, other, data_range=1.0)
    # float64 differs from skimage only by summation order.
    assert abs(float(ssim(a, b)[0]) - expected_ssim) < 1e-12
    assert abs(float(psnr(a, b)[0]) - expected_psnr) < 1e-10
    # float32 (measured about 1e-7 for SSIM, 2e-6 dB for PSNR).
    assert abs(float(ssim(a.float(), b.float())[0]) - expected_ssim) < 2e-6
    assert abs(float(psnr(a.float(), b.float())[0]) - expected_psnr) < 2e-4


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_and_psnr_match_skimage_per_image_on_smooth_batches(channels: int) -> None:
    a = _smooth_images(3, channels, 40, seed=1, dtype=torch.float64)
    b = (0.6 * a + 0.4 * _smooth_images(3, channels, 40, seed=2, dtype=torch.float64)).clamp(0, 1)
    got_ssim, got_psnr = ssim(a, b), psnr(a, b)
    assert got_ssim.shape == got_psnr.shape == (3,)
    for i in range(3):
        ai = a[i].permute(1, 2, 0).numpy().squeeze()
        bi = b[i].permute(1, 2, 0).numpy().squeeze()
        assert abs(float(got_ssim[i]) - _sk_ssim(ai, bi)) < 1e-12
        assert abs(float(got_psnr[i]) - peak_signal_noise_ratio(ai, bi, data_range=1.0)) < 1e-10


def test_ssim_map_matches_skimage_full_map(camera: np.ndarray) -> None:
    other = _distorted(camera, seed=5)
    _, sk_map = structural_similarity(
        camera,
        other,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        full=True,
    )
    a, b = _to_bchw(camera), _to_bchw(other)
    # scipy's "reflect" border (cba|abcd) is our "symmetric": the whole map agrees, borders included.
    symmetric = ssim_map(a, b, border_type="symmetric")[0, 0].numpy()
    np.testing.assert_allclose(symmetric, sk_map, rtol=0, atol=1e-12)
    expected_uncropped = float(sk_map.mean())
    got_uncropped = float(ssim(a, b, crop_border=False, border_type="symmetric")[0])
    assert abs(got_uncropped - expected_uncropped) < 1e-12
    # The default border (dcb|abcd) differs only in the border strip that ssim() crops.
    default = ssim_map(a, b)[0, 0].numpy()
    np.testing.assert_allclose(default[5:-5, 5:-5], sk_map[5:-5, 5:-5], rtol=0, atol=1e-12)
    assert np.abs(default - sk_map).max() > 1e-6


def test_zncc_matches_numpy_corrcoef_with_and_without_mask() -> None:
    a = _smooth_images(2, 3, 20, seed=7, dtype=torch.float64)
    b = _smooth_images(2, 3, 20, seed=8, dtype=torch.float64)
    mask = _half_mask(2, 20)
    got, got_masked = zncc(a, b, eps=1e-15), zncc(a, b, mask, eps=1e-15)
    for i in range(2):
        expected = np.corrcoef(a[i].numpy().ravel(), b[i].numpy().ravel())[0, 1]
        assert abs(float(got[i]) - expected) < 1e-10
        keep = mask[i].expand(3, -1, -1).numpy().astype(bool)
        expected_masked = np.corrcoef(a[i].numpy()[keep], b[i].numpy()[keep])[0, 1]
        assert abs(float(got_masked[i]) - expected_masked) < 1e-10


def test_pixel_losses_match_numpy_on_masked_pixels() -> None:
    a = _smooth_images(2, 3, 16, seed=9, dtype=torch.float64)
    b = _smooth_images(2, 3, 16, seed=10, dtype=torch.float64)
    mask = _half_mask(2, 16)
    scale = 0.05
    for i in range(2):
        keep = mask[i].expand(3, -1, -1).numpy().astype(bool)
        d = a[i].numpy()[keep] - b[i].numpy()[keep]
        assert abs(float(l1_loss(a, b, mask)[i]) - np.abs(d).mean()) < 1e-14
        assert abs(float(mse_loss(a, b, mask)[i]) - (d**2).mean()) < 1e-14
        naive = (scale * (np.sqrt((d / scale) ** 2 + 1.0) - 1.0)).mean()
        assert abs(float(charbonnier_loss(a, b, mask, scale=scale)[i]) - naive) < 1e-12
        expected_psnr = 10.0 * math.log10(1.0 / (d**2).mean())
        assert abs(float(psnr(a, b, mask)[i]) - expected_psnr) < 1e-10


def test_charbonnier_is_l1_like_for_large_and_l2_like_for_small_differences() -> None:
    a = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    scale = 0.01
    large = torch.full_like(a, 0.8)
    assert abs(float(charbonnier_loss(a, large, scale=scale)[0]) - (0.8 - scale)) < 1e-4
    small = torch.full_like(a, 1e-4)
    expected_small = 1e-8 / (2 * scale)
    assert abs(float(charbonnier_loss(a, small, scale=scale)[0]) / expected_small - 1.0) < 1e-4
    # The cancellation-free form stays accurate where sqrt(x^2 + 1) - 1 underflows in float32.
    tiny = torch.full((1, 1, 2, 2), 1e-7)
    assert float(charbonnier_loss(torch.zeros_like(tiny), tiny, scale=scale)[0]) > 0


def test_total_variation_matches_numpy() -> None:
    x = _smooth_images(2, 3, 10, seed=11, dtype=torch.float64)
    got = total_variation(x)
    arr = x.numpy()
    expected = np.abs(np.diff(arr, axis=3)).mean(axis=(1, 2, 3)) + np.abs(np.diff(arr, axis=2)).mean(
        axis=(1, 2, 3)
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-14)
    assert torch.equal(total_variation(torch.full((2, 1, 5, 5), 0.3)), torch.zeros(2))
    # Masked: only differences with both pixels inside count.
    mask = _half_mask(1, 10)
    keep = mask[0, 0].numpy().astype(bool)
    pair_x = keep[:, 1:] & keep[:, :-1]
    pair_y = keep[1:, :] & keep[:-1, :]
    dx, dy = np.abs(np.diff(arr[0], axis=2)), np.abs(np.diff(arr[0], axis=1))
    expected_masked = dx[:, pair_x].mean() + dy[:, pair_y].mean()
    assert abs(float(total_variation(x[:1], mask)[0]) - expected_masked) < 1e-14
    assert total_variation(torch.rand(2, 1, 1, 6)).shape == (2,)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", list(PAIR_FUNCTIONS))
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_gradcheck_both_inputs(name: str, masked: bool) -> None:
    fn = PAIR_FUNCTIONS[name]
    a = _smooth_images(2, 2, 12, seed=12, dtype=torch.float64).requires_grad_(True)
    b = (0.5 * a.detach() + 0.5 * _smooth_images(2, 2, 12, seed=13, dtype=torch.float64)).requires_grad_(True)
    mask = _half_mask(2, 12) if masked else None
    # fast_mode checks random projections of the Jacobian: the same test at a fraction of the cost.
    assert torch.autograd.gradcheck(lambda x, y: fn(x, y, mask), (a, b), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("name", ["zncc", "local_zncc", "ssim", "psnr"])
def test_full_jacobian_gradcheck_with_mask(name: str) -> None:
    # The complete finite-difference Jacobian (no random projection) on one small image.
    fn = PAIR_FUNCTIONS[name]
    a = _smooth_images(1, 1, 12, seed=35, dtype=torch.float64).requires_grad_(True)
    b = _smooth_images(1, 1, 12, seed=36, dtype=torch.float64).requires_grad_(True)
    mask = _half_mask(1, 12)
    assert torch.autograd.gradcheck(lambda x, y: fn(x, y, mask), (a, b), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_gradcheck_total_variation(masked: bool) -> None:
    x = _smooth_images(2, 2, 12, seed=14, dtype=torch.float64).requires_grad_(True)
    mask = _half_mask(2, 12) if masked else None
    assert torch.autograd.gradcheck(
        lambda t: total_variation(t, mask), (x,), eps=1e-6, atol=1e-6, fast_mode=True
    )


def test_gradcheck_soft_weights() -> None:
    a = _smooth_images(1, 1, 12, seed=15, dtype=torch.float64).requires_grad_(True)
    b = _smooth_images(1, 1, 12, seed=16, dtype=torch.float64).requires_grad_(True)
    weights = torch.rand(1, 1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for fn in (zncc, PAIR_FUNCTIONS["local_zncc"], PAIR_FUNCTIONS["ssim"], charbonnier_loss):
        assert torch.autograd.gradcheck(
            lambda x, y, f=fn: f(x, y, weights), (a, b), eps=1e-6, atol=1e-6, fast_mode=True
        )


# --------------------------------------------------------------------------- invariances


def test_zncc_is_brightness_and_contrast_invariant() -> None:
    a = _smooth_images(3, 3, 24, seed=17, dtype=torch.float64)
    b = 2.0 * a + 0.3
    torch.testing.assert_close(zncc(a, b), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-7)
    torch.testing.assert_close(zncc(a, -a), -torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-6)
    # Local windows see the same affine map; eps (a variance floor) costs a little.
    assert float(local_zncc(a, b).min()) > 0.99
    assert float(local_zncc(a, b, eps=1e-10).min()) > 1 - 1e-6


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_are_zero_for_identical_images(name: str) -> None:
    a = _smooth_images(2, 3, 16, seed=18, dtype=torch.float64)
    value = PAIR_FUNCTIONS[name](a, a.clone())
    torch.testing.assert_close(value, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)


def test_psnr_of_identical_images_is_inf_not_nan() -> None:
    a = torch.rand(2, 3, 8, 8)
    value = psnr(a, a)
    assert torch.isinf(value).all() and (value > 0).all()


@pytest.mark.parametrize("name", [*PAIR_FUNCTIONS, "total_variation"])
def test_pixels_outside_the_mask_change_nothing(name: str) -> None:
    a = _smooth_images(2, 3, 20, seed=19, dtype=torch.float64)
    b = _smooth_images(2, 3, 20, seed=20, dtype=torch.float64)
    mask = _half_mask(2, 20)
    outside = (mask == 0).expand_as(a)
    a2 = torch.where(outside, torch.rand_like(a) * 10 - 5, a)
    b2 = torch.where(outside, torch.rand_like(b), b)
    if name == "total_variation":
        before, after = total_variation(a, mask), total_variation(a2, mask)
    else:
        fn = PAIR_FUNCTIONS[name]
        before, after = fn(a, b, mask), fn(a2, b2, mask)
        assert not torch.allclose(before, fn(a2, b2)), "the test must change something that counts"
    torch.testing.assert_close(after, before, rtol=0, atol=1e-13)


def test_all_ones_mask_equals_no_mask_and_bool_masks_work() -> None:
    a = _smooth_images(2, 3, 16, seed=21, dtype=torch.float64)
    b = _smooth_images(2, 3, 16, seed=22, dtype=torch.float64)
    ones = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    for name, fn in PAIR_FUNCTIONS.items():
        torch.testing.assert_close(fn(a, b, ones), fn(a, b), rtol=0, atol=1e-12, msg=name)


@pytest.mark.parametrize("name", [*PAIR_FUNCTIONS, "total_variation"])
def test_empty_mask_gives_documented_finite_values_and_gradients(name: str) -> None:
    a = _smooth_images(2, 3, 16, seed=23, dtype=torch.float32).requires_grad_(True)
    b = _smooth_images(2, 3, 16, seed=24, dtype=torch.float32).requires_grad_(True)
    mask = torch.ones(2, 1, 16, 16)
    mask[1] = 0.0
    value = total_variation(a, mask) if name == "total_variation" else PAIR_FUNCTIONS[name](a, b, mask)
    assert torch.isfinite(value).all()
    expected_empty = 1.0 if name in SIMILARITIES else 0.0
    assert float(value[1].detach()) == expected_empty
    assert mask_weight_sum(a, mask).tolist() == [3 * 16 * 16, 0.0]
    value.sum().backward()
    assert torch.isfinite(a.grad).all()
    assert torch.equal(a.grad[1], torch.zeros_like(a.grad[1]))


def test_half_mask_keeps_the_scale_of_the_loss() -> None:
    # A uniform difference of 0.2 gives the same mean under any mask.
    a = torch.zeros(1, 3, 10, 10, dtype=torch.float64)
    b = torch.full_like(a, 0.2)
    mask = _half_mask(1, 10)
    for fn in (l1_loss, mse_loss, charbonnier_loss, psnr):
        torch.testing.assert_close(fn(a, b, mask), fn(a, b), rtol=0, atol=1e-14)
    per_channel = torch.zeros(1, 3, 10, 10, dtype=torch.float64)
    per_channel[:, 0] = 1.0
    assert float(mask_weight_sum(a, per_channel)[0]) == 100.0
    assert float(masked_mean(b, per_channel)[0]) == pytest.approx(0.2)


# --------------------------------------------------------------------------- batching, dtypes, devices


@pytest.mark.parametrize("name", list(PAIR_FUNCTIONS))
def test_batch_equals_loop_and_broadcasts(name: str) -> None:
    fn = PAIR_FUNCTIONS[name]
    a = _smooth_images(3, 3, 16, seed=25, dtype=torch.float64)
    b = _smooth_images(3, 3, 16, seed=26, dtype=torch.float64)
    mask = _half_mask(3, 16)
    mask[1, :, 3:6] = 0.0
    batched = fn(a, b, mask)
    assert batched.shape == (3,)
    looped = torch.cat([fn(a[i : i + 1], b[i : i + 1], mask[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, looped, rtol=0, atol=1e-13)
    shared_ref = fn(a, b[:1], mask[:1])
    looped_ref = torch.cat([fn(a[i : i + 1], b[:1], mask[:1]) for i in range(3)])
    torch.testing.assert_close(shared_ref, looped_ref, rtol=0, atol=1e-13)
    assert fn(a[:1], b[:1], mask).shape == (3,)


@pytest.mark.parametrize("name", list(PAIR_FUNCTIONS))
def test_float32_agrees_with_float64(name: str) -> None:
    fn = PAIR_FUNCTIONS[name]
    a = _smooth_images(2, 3, 24, seed=27, dtype=torch.float64)
    b = (0.7 * a + 0.3 * _smooth_images(2, 3, 24, seed=28, dtype=torch.float64)).clamp(0, 1)
    mask = _half_mask(2, 24)
    got32 = fn(a.float(), b.float(), mask.float())
    assert got32.dtype == torch.float32
    tol = 1e-3 if name == "psnr" else 2e-5
    torch.testing.assert_close(got32.double(), fn(a, b, mask), rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssim_without_autograd_equals_ssim_with_autograd(dtype: torch.dtype) -> None:
    # Without mask, autograd or uncropped border, ssim() fills the moments in place (another code path).
    a = _smooth_images(3, 3, 28, seed=31, dtype=dtype)
    b = (0.7 * a + 0.3 * _smooth_images(3, 3, 28, seed=32, dtype=dtype)).clamp(0, 1)
    with torch.no_grad():
        fast = ssim(a, b)
        shared = ssim(a, b[:1])
    assert fast.dtype == dtype and fast.shape == (3,)
    torch.testing.assert_close(fast, ssim(a.requires_grad_(True), b).detach(), rtol=0, atol=1e-7)
    torch.testing.assert_close(shared, ssim(a, b[:1].expand(3, -1, -1, -1)).detach(), rtol=0, atol=1e-7)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("crop_border", [True, False])
def test_ssim_in_chunks_of_images_equals_one_chunk(
    monkeypatch: pytest.MonkeyPatch, masked: bool, crop_border: bool
) -> None:
    # float64: exact up to summation order (float32 results move by rounding, ~1e-6 under a mask, with the
    # number of planes filtered together).
    a = _smooth_images(4, 2, 20, seed=33, dtype=torch.float64)
    b = (0.6 * a + 0.4 * _smooth_images(4, 2, 20, seed=34, dtype=torch.float64)).clamp(0, 1)
    mask = _half_mask(1, 20) if masked else None

    def run() -> torch.Tensor:
        return ssim(a, b, mask, window_size=7, crop_border=crop_border)

    whole = run()
    monkeypatch.setattr(losses_module, "_CHUNK_BYTES", 1)  # one image per chunk
    torch.testing.assert_close(run(), whole, rtol=0, atol=1e-14)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(PAIR_FUNCTIONS))
def test_cuda_matches_cpu(name: str) -> None:
    fn = PAIR_FUNCTIONS[name]
    a = _smooth_images(2, 3, 24, seed=29, dtype=torch.float32)
    b = _smooth_images(2, 3, 24, seed=30, dtype=torch.float32)
    mask = _half_mask(2, 24, dtype=torch.float32)
    got = fn(a.cuda(), b.cuda(), mask.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), fn(a, b, mask), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- API


def test_modules_equal_functions() -> None:
    a = _smooth_images(2, 3, 16, seed=31, dtype=torch.float64)
    b = _smooth_images(2, 3, 16, seed=32, dtype=torch.float64)
    mask = _half_mask(2, 16)
    pairs = [
        (L1Loss(), l1_loss),
        (MSELoss(), mse_loss),
        (CharbonnierLoss(scale=0.05), lambda x, y, m: charbonnier_loss(x, y, m, scale=0.05)),
        (ZNCCLoss(), zncc_loss),
        (LocalZNCCLoss(window_size=5), lambda x, y, m: local_zncc_loss(x, y, m, window_size=5)),
        (SSIMLoss(window_size=7, sigma=1.0), lambda x, y, m: ssim_loss(x, y, m, window_size=7, sigma=1.0)),
    ]
    for module, fn in pairs:
        assert isinstance(module, torch.nn.Module)
        torch.testing.assert_close(module(a, b, mask), fn(a, b, mask), rtol=0, atol=0)


def test_get_loss_registry() -> None:
    assert set(LOSS_NAMES) == {"mse", "l1", "charbonnier", "zncc", "local_zncc", "ssim"}
    a = _smooth_images(2, 1, 16, seed=33, dtype=torch.float64)
    b = _smooth_images(2, 1, 16, seed=34, dtype=torch.float64)
    expected = {
        "mse": mse_loss,
        "l1": l1_loss,
        "charbonnier": charbonnier_loss,
        "zncc": zncc_loss,
        "local_zncc": local_zncc_loss,
        "ssim": ssim_loss,
    }
    for name in LOSS_NAMES:
        torch.testing.assert_close(get_loss(name)(a, b, None), expected[name](a, b))
        # Lower is better: a perfect match scores below a poor one.
        assert (get_loss(name)(a, a, None) < get_loss(name)(a, b, None)).all()
    with_options = get_loss("charbonnier", scale=0.2)
    torch.testing.assert_close(with_options(a, b, None), charbonnier_loss(a, b, scale=0.2))
    with pytest.raises(ValueError, match="valid names: mse, l1, charbonnier, zncc, local_zncc, ssim"):
        get_loss("ncc")
    with pytest.raises(TypeError, match="no option 'sigma'"):
        get_loss("l1", sigma=1.0)


def test_bad_arguments_raise_with_the_argument_name() -> None:
    a = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        l1_loss(a, torch.rand(2, 3, 16, 15))
    with pytest.raises(ValueError, match="batches"):
        l1_loss(a, torch.rand(3, 3, 16, 16))
    with pytest.raises(TypeError, match="dtype"):
        l1_loss(a, a.double())
    with pytest.raises(ValueError, match="mask"):
        l1_loss(a, a, torch.ones(2, 2, 16, 16))
    with pytest.raises(ValueError, match="mask"):
        l1_loss(a, a, torch.ones(2, 1, 8, 8))
    with pytest.raises(TypeError, match="mask"):
        l1_loss(a, a, torch.ones(2, 1, 16, 16, dtype=torch.int64))
    with pytest.raises(ValueError, match="scale"):
        charbonnier_loss(a, a, scale=0.0)
    with pytest.raises(ValueError, match="eps"):
        zncc(a, a, eps=0.0)
    with pytest.raises(ValueError, match="window_size"):
        local_zncc(a, a, window_size=4)
    with pytest.raises(ValueError, match="too small"):
        ssim(torch.rand(1, 1, 10, 10), torch.rand(1, 1, 10, 10))
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a, data_range=-1.0)
    with pytest.raises(ValueError, match="a must have shape"):
        mse_loss(a[0], a[0])


@pytest.mark.parametrize("name", sorted(LOSS_NAMES))
def test_an_empty_batch_gives_an_empty_result(name: str) -> None:
    # A batch left empty by filtering (no photo of this size) must not raise.
    empty = torch.rand(0, 3, 24, 24)
    mask = torch.ones(0, 1, 24, 24)
    assert get_loss(name)(empty, empty).shape == (0,)
    assert get_loss(name)(empty, empty, mask).shape == (0,)
    for metric in (ssim, psnr):
        assert metric(empty, empty).shape == (0,)
    assert total_variation(empty).shape == (0,)
