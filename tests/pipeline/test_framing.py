import itertools

import numpy as np
import pytest
import torch

from alignimate.pipeline.framing import common_crop, coverage_mask, largest_rectangle


def brute_force_largest(mask: np.ndarray) -> int:
    rows, cols = mask.shape
    best = 0
    for t, b in itertools.combinations_with_replacement(range(rows), 2):
        for le, r in itertools.combinations_with_replacement(range(cols), 2):
            if mask[t : b + 1, le : r + 1].all():
                best = max(best, (b - t + 1) * (r - le + 1))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_largest_rectangle_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((7, 9)) < 0.7
    rect = largest_rectangle(mask)
    expected = brute_force_largest(mask)
    if expected == 0:
        assert rect is None
        return
    top, left, h, w = rect
    assert mask[top : top + h, left : left + w].all()
    assert h * w == expected


def translation(tx: float, ty: float) -> torch.Tensor:
    m = torch.eye(3, dtype=torch.float64)
    m[0, 2], m[1, 2] = tx, ty
    return m


def test_identity_frames_cover_the_whole_canvas() -> None:
    box = common_crop(torch.eye(3).repeat(3, 1, 1), [(100, 160)] * 3, (100, 160))
    assert box is not None
    assert (box.top, box.left, box.height, box.width) == (0, 0, 100, 160)


def test_identity_on_a_coarsely_sampled_large_canvas_is_exact() -> None:
    box = common_crop(torch.eye(3).repeat(2, 1, 1), [(3000, 4000)] * 2, (3000, 4000))
    assert (box.top, box.left, box.height, box.width) == (0, 0, 3000, 4000)


def test_shifted_frames_crop_to_their_overlap() -> None:
    # Frame 1 is shifted 20 px right and 10 px down in the canvas: the common area is x >= 20, y >= 10.
    mats = torch.stack([torch.eye(3, dtype=torch.float64), translation(20, 10)])
    box = common_crop(mats, [(100, 160), (100, 160)], (100, 160))
    assert box is not None
    assert (box.top, box.left, box.height, box.width) == (10, 20, 90, 140)


def test_rotated_frame_box_is_inside_every_frame() -> None:
    angle = 0.2
    c = torch.tensor([79.5, 49.5], dtype=torch.float64)
    rot = torch.eye(3, dtype=torch.float64)
    rot[:2, :2] = torch.tensor([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    rot[:2, 2] = c - rot[:2, :2] @ c
    mats = torch.stack([torch.eye(3, dtype=torch.float64), rot])
    box = common_crop(mats, [(100, 160), (100, 160)], (100, 160))
    assert box is not None
    corners = torch.tensor(
        [
            [box.left, box.top, 1.0],
            [box.left + box.width - 1, box.top, 1.0],
            [box.left, box.top + box.height - 1, 1.0],
            [box.left + box.width - 1, box.top + box.height - 1, 1.0],
        ],
        dtype=torch.float64,
    )
    src = torch.einsum("ij,nj->ni", torch.linalg.inv(rot), corners)
    assert (src[:, 0] >= 0).all() and (src[:, 0] <= 159).all()
    assert (src[:, 1] >= 0).all() and (src[:, 1] <= 99).all()


def test_disjoint_frames_have_no_common_crop() -> None:
    mats = torch.stack([torch.eye(3, dtype=torch.float64), translation(500, 0)])
    assert common_crop(mats, [(50, 50), (50, 50)], (50, 50)) is None


def test_coverage_mask_respects_source_size() -> None:
    mask = coverage_mask(torch.eye(3)[None], [(10, 20)], (10, 40), step=1.0)
    assert mask.shape == (10, 40)
    assert mask[:, :20].all() and not mask[:, 20:].any()
