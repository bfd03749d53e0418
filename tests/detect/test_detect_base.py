from __future__ import annotations

import numpy as np
import pytest
import torch

from alignimate.detect.base import (
    Detector,
    Instance,
    as_uint8_hwc,
    map_instance_to_original,
    resize_uint8,
    select_keypoints,
)


def test_as_uint8_hwc_accepts_lists_and_tensors() -> None:
    grey = np.full((4, 5), 7, np.uint8)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 9
    floats = np.full((4, 5, 3), 0.5, np.float32)
    out = as_uint8_hwc([grey, rgba, floats])
    assert [o.shape for o in out] == [(4, 5, 3)] * 3 and all(o.dtype == np.uint8 for o in out)
    assert out[0][0, 0].tolist() == [7, 7, 7] and out[1][0, 0].tolist() == [9, 0, 0]
    assert out[2][0, 0, 0] == 128  # 127.5 rounds half to even
    t = torch.rand(2, 3, 6, 7)
    from_tensor = as_uint8_hwc(t)
    assert len(from_tensor) == 2 and from_tensor[1].shape == (6, 7, 3)
    np.testing.assert_array_equal(from_tensor[1][..., 2], np.rint(t[1, 2].numpy() * 255).astype(np.uint8))
    assert as_uint8_hwc(torch.zeros(3, 6, 7, dtype=torch.uint8))[0].shape == (6, 7, 3)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (np.zeros((4, 4, 3), np.uint8), TypeError),  # one array, not a batch
        ([np.zeros((4, 4, 2), np.uint8)], ValueError),
        ([np.zeros((4, 4, 3), np.int32)], TypeError),
        ([np.zeros((0, 4, 3), np.uint8)], ValueError),
        (torch.zeros(1, 1, 2, 3, 4), ValueError),
        ("photo.jpg", TypeError),
    ],
)
def test_as_uint8_hwc_rejects_bad_input(bad: object, error: type) -> None:
    with pytest.raises(error, match="images"):
        as_uint8_hwc(bad)  # type: ignore[arg-type]


def test_the_working_copy_is_never_enlarged() -> None:
    image = np.zeros((300, 400, 3), np.uint8)
    assert resize_uint8(image, 1000) is image
    assert resize_uint8(image, None) is image
    assert resize_uint8(image, 100).shape == (75, 100, 3)
    with pytest.raises(ValueError, match="max_side"):
        resize_uint8(image, 0)


def test_resize_keeps_the_pixel_centre_mapping() -> None:
    # A linear ramp is reproduced exactly by any symmetric filter, so the value at output pixel x'
    # tells where it was sampled: x = (x' + 0.5) / s - 0.5 (docs/conventions.md).
    x = np.arange(200, dtype=np.float64)
    ramp = np.broadcast_to((x * 1.25)[None, :, None], (8, 200, 3)).astype(np.uint8).copy()
    small = resize_uint8(ramp, 50)
    assert small.shape == (2, 50, 3)
    xs = np.arange(50)
    expected = np.floor(((xs + 0.5) / 0.25 - 0.5) * 1.25)  # source values are floored ramps
    interior = slice(3, 47)
    assert np.abs(small[0, interior, 0].astype(float) - expected[interior]).max() <= 1.0
    assert resize_uint8(ramp, 200) is ramp


def test_map_instance_to_original() -> None:
    inst = Instance(
        box=np.array([9.5, 19.5, 49.5, 59.5], np.float32),
        score=0.8,
        mask=np.ones((60, 80), np.float32),
        keypoints=np.array([[0.0, 0.0], [79.0, 59.0]], np.float32),
    )
    out = map_instance_to_original(inst, (60, 80), (600, 800))
    # Pixel centres: x_orig = (x + 0.5) * 10 - 0.5, the centre of the 10x10 block a pixel stands for.
    np.testing.assert_allclose(out.keypoints, [[4.5, 4.5], [794.5, 594.5]])
    np.testing.assert_allclose(out.box, [99.5, 199.5, 499.5, 599.5])
    assert out.mask is inst.mask and out.image_size == (600, 800) and out.score == 0.8
    assert inst.image_size is None  # the input is not modified


def test_select_keypoints_by_name() -> None:
    inst = Instance(
        box=np.zeros(4, np.float32),
        score=1.0,
        keypoints=np.array([[1, 2], [3, 4]], np.float32),
        keypoint_scores=np.array([0.2, 0.9], np.float32),
        keypoint_names=("a", "b"),
    )
    pts, sc = select_keypoints(inst, ["b", "zzz", "a"])
    np.testing.assert_array_equal(pts, [[3, 4], [0, 0], [1, 2]])
    np.testing.assert_allclose(sc, [0.9, 0.0, 0.2])
    pts, sc = select_keypoints(Instance(np.zeros(4, np.float32), 1.0), ["a"])
    assert sc.tolist() == [0.0]
    with pytest.raises(ValueError, match="names"):
        select_keypoints(inst, [])


def test_detectors_satisfy_the_protocol() -> None:
    from alignimate.detect.faces import FaceDetector

    assert isinstance(FaceDetector(), Detector)
    assert Instance(np.array([0, 0, 4, 5], np.float32), 1.0).area == 20.0
    assert Instance(np.array([4, 0, 0, 5], np.float32), 1.0).area == 0.0
