"""Window maxima and minima against scipy.ndimage and max pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from scipy import ndimage

from alignimate.core.morphology import max_filter2d, min_filter2d


@pytest.mark.parametrize("size", [1, 3, 5, 7])
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 1, 2, 9), (1, 2, 1, 1)])
def test_max_and_min_match_scipy_nearest(size: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(size)
    images = rng.random(shape).astype(np.float32)
    window = (1, 1, size, size)
    expected_max = ndimage.maximum_filter(images, size=window, mode="nearest")
    expected_min = ndimage.minimum_filter(images, size=window, mode="nearest")
    np.testing.assert_array_equal(max_filter2d(torch.from_numpy(images), size).numpy(), expected_max)
    np.testing.assert_array_equal(min_filter2d(torch.from_numpy(images), size).numpy(), expected_min)


def test_equals_stride_one_max_pooling() -> None:
    images = torch.rand(3, 2, 31, 40, dtype=torch.float64)
    assert torch.equal(max_filter2d(images, 5), F.max_pool2d(images, 5, stride=1, padding=2))


def test_bool_images_are_window_any_and_all() -> None:
    flags = torch.rand(2, 1, 20, 24) > 0.8
    as_float = flags.float()
    assert torch.equal(max_filter2d(flags, 3), F.max_pool2d(as_float, 3, 1, 1) > 0)
    assert torch.equal(min_filter2d(flags, 3), -F.max_pool2d(-as_float, 3, 1, 1) > 0)


def test_batch_equals_loop_and_input_untouched() -> None:
    images = torch.rand(4, 2, 15, 12)
    before = images.clone()
    batched = max_filter2d(images, 3)
    looped = torch.cat([max_filter2d(images[i : i + 1], 3) for i in range(4)])
    assert torch.equal(batched, looped)
    assert torch.equal(images, before)


@pytest.mark.parametrize("size", [0, 2, -1, 3.0, True])
def test_rejects_bad_sizes(size: object) -> None:
    with pytest.raises(ValueError, match="size"):
        max_filter2d(torch.zeros(1, 1, 4, 4), size)  # type: ignore[arg-type]


def test_rejects_non_image_tensors() -> None:
    with pytest.raises(ValueError, match="images"):
        max_filter2d(torch.zeros(4, 4), 3)
