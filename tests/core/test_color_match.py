"""Colour matching ops: gain/offset fits and histogram-matching LUTs, checked against scikit-image's
``exposure.match_histograms`` and closed-form cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.exposure import match_histograms

import alignimate.core as core
from alignimate.core.color_match import (
    apply_gain_offset,
    apply_lut,
    apply_lut_uint8,
    color_histograms,
    compose_luts,
    fit_gain_offset,
    gain_offset_lut,
    histogram_lut,
    invert_lut,
    match_histogram_counts,
)

FACES = Path(__file__).resolve().parents[2] / "sample_data" / "faces"
GRID = torch.linspace(0.0, 1.0, 256, dtype=torch.float64)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261207)


def _levels(rng: np.random.Generator, shape: tuple[int, ...], low: int = 0, high: int = 256) -> torch.Tensor:
    """Float64 images whose values are uint8 grey levels / 255."""
    return torch.from_numpy(rng.integers(low, high, shape).astype(np.float64) / 255.0)


def _sample_photo(name: str, size: int = 200) -> np.ndarray:
    with Image.open(FACES / name) as image:
        return np.array(image.convert("RGB"))[:size, :size]


def _masked_skimage(
    source: np.ndarray, target: np.ndarray, s_mask: np.ndarray, t_mask: np.ndarray
) -> np.ndarray:
    """scikit-image's matching of the masked pixels only: ``(N, 3)`` values of ``source[s_mask]``."""
    return match_histograms(source[s_mask][:, None, :], target[t_mask][:, None, :], channel_axis=-1)[:, 0, :]


# --------------------------------------------------------------------------- histogram matching


def test_histogram_lut_agrees_with_skimage_on_masked_random_images(rng: np.random.Generator) -> None:
    source = _levels(rng, (3, 3, 40, 50), 30, 220)
    # A skewed target, so the map is far from the identity.
    target = torch.from_numpy(np.round(255 * rng.random((3, 3, 40, 50)) ** 2) / 255.0)
    s_mask = torch.from_numpy(rng.random((3, 1, 40, 50)) < 0.6)
    t_mask = torch.from_numpy(rng.random((3, 1, 40, 50)) < 0.4)
    lut = histogram_lut(source, target, s_mask, t_mask)
    assert lut.shape == (3, 3, 256)
    assert lut.dtype == torch.float64
    matched = apply_lut(source, lut)
    for b in range(3):
        src = source[b].permute(1, 2, 0).numpy()
        tgt = target[b].permute(1, 2, 0).numpy()
        sm, tm = s_mask[b, 0].numpy(), t_mask[b, 0].numpy()
        expected = _masked_skimage(src, tgt, sm, tm)
        got = matched[b].permute(1, 2, 0).numpy()[sm]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_histogram_lut_agrees_with_skimage_on_sample_photos() -> None:
    source = _sample_photo("face_02.jpg")  # darker exposure
    target = _sample_photo("face_11.jpg")  # brighter, different white balance
    expected = match_histograms(
        source.astype(np.float64) / 255, target.astype(np.float64) / 255, channel_axis=-1
    )
    s = torch.from_numpy(source).permute(2, 0, 1)[None].to(torch.float32) / 255
    t = torch.from_numpy(target).permute(2, 0, 1)[None].to(torch.float32) / 255
    got = apply_lut(s, histogram_lut(s, t))[0].permute(1, 2, 0).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # The same through the uint8 path: skimage's own uint8 output truncates, so compare with rounding.
    frame = torch.from_numpy(source).permute(2, 0, 1)[None]
    as_uint8 = apply_lut_uint8(frame, histogram_lut(s, t))[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(as_uint8, np.round(expected * 255).astype(np.uint8))


def test_histogram_lut_is_non_decreasing_and_fills_absent_levels(rng: np.random.Generator) -> None:
    # Only a handful of levels occur in the source; the LUT must still be defined and monotone.
    source = torch.from_numpy(rng.choice([40, 90, 91, 200], (1, 3, 16, 16)).astype(np.float64) / 255)
    target = _levels(rng, (1, 3, 16, 16))
    lut = histogram_lut(source, target)
    assert torch.all(lut.diff(dim=-1) >= 0)
    assert torch.all(lut[..., 0] == 0) and torch.all(lut[..., -1] == 1)
    # Between occurring levels 40 and 90 the LUT is the straight line between their values.
    mid = lut[..., 65]
    torch.testing.assert_close(
        mid, lut[..., 40] + (lut[..., 90] - lut[..., 40]) * 25 / 50, rtol=0, atol=1e-12
    )


def test_histogram_lut_identity_when_source_equals_target(rng: np.random.Generator) -> None:
    images = _levels(rng, (2, 3, 20, 30), 10, 240)
    mask = torch.from_numpy(rng.random((2, 1, 20, 30)) < 0.7)
    lut = histogram_lut(images, images, mask, mask)
    torch.testing.assert_close(lut, GRID.expand(2, 3, -1), rtol=0, atol=1e-12)


def test_histogram_batch_equals_loop_and_target_broadcasts(rng: np.random.Generator) -> None:
    source = _levels(rng, (4, 3, 12, 14))
    target = _levels(rng, (1, 3, 12, 14), 50, 200)
    mask = torch.from_numpy(rng.random((4, 1, 12, 14)) < 0.5)
    batched = histogram_lut(source, target.expand(4, -1, -1, -1), mask, None)
    for b in range(4):
        single = histogram_lut(source[b : b + 1], target, mask[b : b + 1], None)
        torch.testing.assert_close(batched[b : b + 1], single, rtol=0, atol=0)
    counts = match_histogram_counts(color_histograms(source, mask), color_histograms(target))
    torch.testing.assert_close(counts, batched, rtol=0, atol=0)


def test_histogram_masked_pixels_do_not_count(rng: np.random.Generator) -> None:
    source = _levels(rng, (2, 3, 16, 16))
    target = _levels(rng, (2, 3, 16, 16))
    mask = torch.from_numpy(rng.random((2, 1, 16, 16)) < 0.5)
    lut = histogram_lut(source, target, mask, mask)
    noise_s, noise_t = _levels(rng, (2, 3, 16, 16)), _levels(rng, (2, 3, 16, 16))
    changed_s = torch.where(mask, source, noise_s)
    changed_t = torch.where(mask, target, noise_t)
    torch.testing.assert_close(histogram_lut(changed_s, changed_t, mask, mask), lut, rtol=0, atol=0)
    assert not torch.equal(histogram_lut(changed_s, changed_t), histogram_lut(source, target))


def test_histogram_weights_count_like_repeated_pixels(rng: np.random.Generator) -> None:
    source = _levels(rng, (1, 3, 10, 10))
    target = _levels(rng, (1, 3, 10, 10))
    weights = torch.from_numpy(rng.integers(0, 4, (1, 1, 10, 10)).astype(np.float64))
    lut = histogram_lut(source, target, weights, None)
    repeats = weights[0, 0].flatten().long()
    flat = source[0].reshape(3, -1)
    repeated = torch.repeat_interleave(flat, repeats, dim=1).reshape(1, 3, 1, -1)
    torch.testing.assert_close(histogram_lut(repeated, target), lut, rtol=0, atol=1e-12)


def test_empty_histograms_give_the_identity(rng: np.random.Generator) -> None:
    source = _levels(rng, (2, 3, 8, 8))
    target = _levels(rng, (2, 3, 8, 8))
    empty = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    torch.testing.assert_close(
        histogram_lut(source, target, empty, None), GRID.expand(2, 3, -1), rtol=0, atol=1e-15
    )
    torch.testing.assert_close(
        histogram_lut(source, target, None, empty), GRID.expand(2, 3, -1), rtol=0, atol=1e-15
    )


# --------------------------------------------------------------------------- gain and offset


def test_gain_offset_recovers_a_known_map_and_is_identity_on_itself(rng: np.random.Generator) -> None:
    source = torch.from_numpy(rng.uniform(0.1, 0.7, (3, 3, 20, 20)))
    gain = torch.from_numpy(rng.uniform(0.8, 1.3, (3, 3)))
    offset = torch.from_numpy(rng.uniform(-0.05, 0.05, (3, 3)))
    target = gain[..., None, None] * source + offset[..., None, None]
    g, o = fit_gain_offset(source, target)
    torch.testing.assert_close(g, gain, rtol=0, atol=1e-12)
    torch.testing.assert_close(o, offset, rtol=0, atol=1e-12)
    g, o = fit_gain_offset(source, source)
    torch.testing.assert_close(g, torch.ones_like(g), rtol=0, atol=1e-12)
    torch.testing.assert_close(o, torch.zeros_like(o), rtol=0, atol=1e-12)


def test_gain_offset_ignores_clipped_values(rng: np.random.Generator) -> None:
    source = torch.from_numpy(rng.uniform(0.0, 1.0, (1, 3, 40, 40)))
    # A brighter target: a quarter or more of each channel is clipped at 1.
    target = (1.4 * source + 0.02).clamp(0.0, 1.0)
    g, o = fit_gain_offset(source, target)
    torch.testing.assert_close(g, torch.full_like(g, 1.4), rtol=0, atol=1e-12)
    torch.testing.assert_close(o, torch.full_like(o, 0.02), rtol=0, atol=1e-12)
    naive, _ = fit_gain_offset(source, target, clip_margin=0.0)
    assert torch.all((naive - 1.4).abs() > 0.1)


def test_gain_offset_batch_equals_loop_and_masked_pixels_do_not_count(rng: np.random.Generator) -> None:
    source = torch.from_numpy(rng.uniform(0.05, 0.95, (4, 3, 10, 12)))
    target = torch.from_numpy(rng.uniform(0.05, 0.95, (4, 3, 10, 12)))
    mask = torch.from_numpy(rng.random((4, 1, 10, 12)) < 0.5)
    g, o = fit_gain_offset(source, target, mask)
    for b in range(4):
        gb, ob = fit_gain_offset(source[b : b + 1], target[b : b + 1], mask[b : b + 1])
        torch.testing.assert_close(gb, g[b : b + 1], rtol=0, atol=0)
        torch.testing.assert_close(ob, o[b : b + 1], rtol=0, atol=0)
    scrambled_s = torch.where(mask, source, torch.from_numpy(rng.uniform(0.05, 0.95, (4, 3, 10, 12))))
    scrambled_t = torch.where(mask, target, torch.from_numpy(rng.uniform(0.05, 0.95, (4, 3, 10, 12))))
    g2, o2 = fit_gain_offset(scrambled_s, scrambled_t, mask)
    torch.testing.assert_close(g2, g, rtol=0, atol=1e-14)
    torch.testing.assert_close(o2, o, rtol=0, atol=1e-14)


def test_gain_offset_degenerate_cases() -> None:
    flat = torch.full((1, 3, 4, 4), 0.3, dtype=torch.float64)
    g, o = fit_gain_offset(flat, flat + 0.1)
    torch.testing.assert_close(g, torch.ones_like(g))
    torch.testing.assert_close(o, torch.full_like(o, 0.1))
    g, o = fit_gain_offset(flat, flat, torch.zeros(1, 1, 4, 4))
    torch.testing.assert_close(g, torch.ones_like(g))
    torch.testing.assert_close(o, torch.zeros_like(o))
    assert torch.all(torch.isfinite(g)) and torch.all(torch.isfinite(o))


def test_gain_offset_gradcheck(rng: np.random.Generator) -> None:
    # Values well inside the clipping margins, so the selection of pixels is constant near the input.
    source = torch.from_numpy(rng.uniform(0.2, 0.8, (2, 3, 5, 6))).requires_grad_(True)
    target = torch.from_numpy(rng.uniform(0.2, 0.8, (2, 3, 5, 6))).requires_grad_(True)
    weights = torch.from_numpy(rng.uniform(0.1, 1.0, (2, 1, 5, 6))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s, t, w: fit_gain_offset(s, t, w), (source, target, weights))
    gain = torch.from_numpy(rng.uniform(0.8, 1.1, (2, 3))).requires_grad_(True)
    offset = torch.from_numpy(rng.uniform(-0.05, 0.05, (2, 3))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s, g, o: apply_gain_offset(s, g, o), (source, gain, offset))


def test_gain_offset_lut_matches_the_affine_map(rng: np.random.Generator) -> None:
    gain = torch.from_numpy(rng.uniform(0.7, 1.4, (2, 3)))
    offset = torch.from_numpy(rng.uniform(-0.1, 0.1, (2, 3)))
    frames = torch.from_numpy(rng.integers(0, 256, (2, 3, 30, 40), dtype=np.uint8))
    as_float = frames.to(torch.float64) / 255
    expected = core.to_uint8(apply_gain_offset(as_float, gain, offset))
    torch.testing.assert_close(
        apply_lut_uint8(frames, gain_offset_lut(gain, offset)), expected, rtol=0, atol=0
    )
    torch.testing.assert_close(
        apply_lut(as_float, gain_offset_lut(gain, offset)), apply_gain_offset(as_float, gain, offset)
    )


# --------------------------------------------------------------------------- LUTs


def test_apply_lut_interpolates_and_gradchecks(rng: np.random.Generator) -> None:
    lut = torch.tensor([[[0.0, 0.5, 0.6, 1.0]]], dtype=torch.float64)
    images = torch.tensor([[[[0.0, 1 / 6, 1 / 3, 0.5, 1.0, 1.5]]]], dtype=torch.float64)
    got = apply_lut(images, lut)
    torch.testing.assert_close(got, torch.tensor([[[[0.0, 0.25, 0.5, 0.55, 1.0, 1.0]]]], dtype=torch.float64))
    # Between grid points (none lies on one) the map is smooth in the values and linear in the LUT.
    x = torch.from_numpy(rng.uniform(0.01, 0.99, (2, 3, 4, 5)))
    x = torch.where((x * 15 - (x * 15).round()).abs() < 0.05, x + 0.02, x).requires_grad_(True)
    table = torch.from_numpy(np.sort(rng.random((2, 3, 16)), axis=-1)).requires_grad_(True)
    assert torch.autograd.gradcheck(apply_lut, (x, table))


def test_invert_lut_is_exact_and_takes_the_middle_of_flat_runs(rng: np.random.Generator) -> None:
    increasing = torch.from_numpy(np.sort(rng.random((2, 3, 256)), axis=-1))
    increasing[..., 0], increasing[..., -1] = 0.0, 1.0
    torch.testing.assert_close(invert_lut(increasing, increasing), GRID.expand(2, 3, -1), rtol=0, atol=1e-12)
    torch.testing.assert_close(compose_luts(increasing, invert_lut(increasing)), GRID.expand(2, 3, -1))
    flat = torch.tensor([[[0.0, 0.2, 0.2, 0.2, 1.0]]], dtype=torch.float64)
    torch.testing.assert_close(
        invert_lut(flat, torch.tensor([[[0.2, 0.6, 0.1, -0.5, 1.5]]], dtype=torch.float64)),
        torch.tensor([[[0.5, 0.875, 0.125, 0.0, 1.0]]], dtype=torch.float64),
    )
    raised = torch.tensor([[[0.3, 0.3, 0.6, 0.9, 0.9]]], dtype=torch.float64)  # flat at both ends
    torch.testing.assert_close(
        invert_lut(raised, torch.tensor([[[0.3, 0.9, 0.0, 1.0]]], dtype=torch.float64)),
        torch.tensor([[[0.125, 0.875, 0.0, 1.0]]], dtype=torch.float64),
    )


def test_apply_lut_uint8_keeps_layout_and_input(rng: np.random.Generator) -> None:
    frame = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)  # interleaved, as decoded
    before = frame.copy()
    planes = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0)
    table = torch.from_numpy(rng.integers(0, 256, (1, 3, 256), dtype=np.uint8))
    out = apply_lut_uint8(planes, table)
    assert out.dtype == torch.uint8 and out.shape == planes.shape
    assert out[0].stride() == planes[0].stride()  # still interleaved
    expected = np.stack([table[0, c].numpy()[frame[..., c]] for c in range(3)], axis=-1)
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), expected)
    np.testing.assert_array_equal(frame, before)
    rounded = apply_lut_uint8(planes, table.to(torch.float64) / 255)
    torch.testing.assert_close(rounded, out, rtol=0, atol=0)


def test_bad_arguments_are_refused() -> None:
    images = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="same"):
        fit_gain_offset(images, torch.rand(1, 3, 5, 4))
    with pytest.raises(ValueError, match="mask"):
        fit_gain_offset(images, images, torch.ones(1, 3, 4, 4))
    with pytest.raises(ValueError, match="clip_margin"):
        fit_gain_offset(images, images, clip_margin=0.6)
    with pytest.raises(TypeError, match="floating"):
        histogram_lut(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), images)
    with pytest.raises(ValueError, match="lut"):
        apply_lut(images, torch.rand(1, 2, 16))
    with pytest.raises(TypeError, match="uint8"):
        apply_lut_uint8(images, torch.rand(1, 3, 256))
    with pytest.raises(ValueError, match="256"):
        apply_lut_uint8(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.rand(1, 3, 16))
    with pytest.raises(ValueError, match="levels"):
        color_histograms(images, levels=1)


def test_exported_from_core() -> None:
    for name in ("fit_gain_offset", "histogram_lut", "apply_lut", "apply_lut_uint8", "invert_lut"):
        assert name in core.__all__ and callable(getattr(core, name))
        assert "(B" in getattr(core, name).__doc__
