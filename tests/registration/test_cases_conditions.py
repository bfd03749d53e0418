"""The robustness cases of registration_cases.py (issue #13): deterministic, in their documented
ranges, and with a ground truth that really maps the moving content onto the fixed view."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from registration_cases import (
    CONDITIONS,
    EMPTY_RANGE,
    MOVING_OCCLUDED_RANGE,
    OCCLUDED_RANGE,
    OVERLAP_RANGE,
    PHOTOS,
    footprint,
    make_case,
    make_condition_cases,
    make_empty_case,
    make_occluded_case,
    make_partial_case,
    overlap_fraction,
)

SIZE = (256, 256)
COUNT = len(PHOTOS)  # one case per photo


@pytest.fixture(scope="module", params=[False, True], ids=["similarity", "homography"])
def cases(request) -> dict[str, list]:
    return {
        condition: make_condition_cases(condition, SIZE, COUNT, seed=3, homography=request.param)
        for condition in CONDITIONS
    }


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def _residual(case, matrix: np.ndarray) -> float:
    """RMS difference between the fixed view and the moving view warped by ``matrix`` (after a
    least-squares gain and bias), over the pixels both show undisturbed: inside the warped moving
    frame (1 px margin), valid and unoccluded in the fixed view, unoccluded in the moving one, and
    not clipped."""
    h, w = case.fixed.shape[:2]
    warped = _grey(cv2.warpPerspective(case.moving, matrix, (w, h), flags=cv2.INTER_LINEAR))
    fixed = _grey(case.fixed)
    use = cv2.erode(footprint(matrix, case.moving.shape[:2], SIZE).astype(np.uint8), np.ones((5, 5))) > 0
    if getattr(case, "fixed_valid", None) is not None:
        use &= case.fixed_valid
    if getattr(case, "fixed_occluder", None) is not None:
        use &= ~case.fixed_occluder
    if getattr(case, "moving_occluder", None) is not None:
        moved = cv2.warpPerspective(case.moving_occluder.astype(np.uint8), matrix, (w, h))
        use &= cv2.dilate(moved, np.ones((5, 5))) == 0
    clipped = ((_grey(case.moving) <= 0) | (_grey(case.moving) >= 1)).astype(np.uint8)
    use &= cv2.warpPerspective(cv2.dilate(clipped, np.ones((3, 3))), matrix, (w, h)) == 0
    use &= (fixed > 0) & (fixed < 1)
    assert use.sum() >= 2000
    a = np.stack([warped[use], np.ones(int(use.sum()))], axis=1)
    coefficients, *_ = np.linalg.lstsq(a, fixed[use], rcond=None)
    return float(np.sqrt(np.mean((a @ coefficients - fixed[use]) ** 2)))


def test_clean_condition_is_the_original_benchmark_set() -> None:
    rng = np.random.default_rng(5)
    originals = [make_case(rng, PHOTOS[i % len(PHOTOS)], SIZE, homography=True) for i in range(3)]
    for original, case in zip(
        originals, make_condition_cases("clean", SIZE, 3, 5, homography=True), strict=True
    ):
        np.testing.assert_array_equal(original.fixed, case.fixed)
        np.testing.assert_array_equal(original.moving, case.moving)
        np.testing.assert_array_equal(original.fixed_H_moving, case.fixed_H_moving)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_deterministic(condition: str) -> None:
    a = make_condition_cases(condition, SIZE, 3, seed=7, homography=True)
    b = make_condition_cases(condition, SIZE, 3, seed=7, homography=True)
    c = make_condition_cases(condition, SIZE, 3, seed=8, homography=True)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.fixed, y.fixed)
        np.testing.assert_array_equal(x.moving, y.moving)
        np.testing.assert_array_equal(x.fixed_H_moving, y.fixed_H_moving)
        for name in ("fixed_valid", "fixed_occluder", "moving_occluder"):
            u, v = getattr(x, name), getattr(y, name)
            assert (u is None) == (v is None)
            if u is not None:
                np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0].fixed_H_moving, c[0].fixed_H_moving)


def test_case_structure(cases) -> None:
    for condition, group in cases.items():
        assert len(group) == COUNT
        for case, name in zip(group, PHOTOS, strict=True):
            assert case.condition == condition and case.photo == name
            assert case.fixed.shape[:2] == SIZE and case.moving.shape[:2] == SIZE
            assert case.fixed.dtype == np.float32 and case.moving.dtype == np.float32
            assert case.fixed.min() >= 0 and case.fixed.max() <= 1
            assert case.fixed_H_moving.shape == (3, 3) and case.fixed_H_moving[2, 2] == pytest.approx(1)


def test_occluded_coverage(cases) -> None:
    for condition in ("occluded", "occluded-both"):
        for case in cases[condition]:
            assert case.fixed_occluder.shape == SIZE and case.fixed_occluder.dtype == bool
            assert OCCLUDED_RANGE[0] <= case.occluded_fraction <= OCCLUDED_RANGE[1]
            assert case.fixed_valid is None
            if condition == "occluded":
                assert case.moving_occluder is None
            else:
                fraction = case.moving_occluder.mean()
                assert MOVING_OCCLUDED_RANGE[0] <= fraction <= MOVING_OCCLUDED_RANGE[1]


def test_occluders_are_foreign_content() -> None:
    """The occluded case is the clean one with its fixed view replaced exactly on the occluders."""
    clean = make_case(np.random.default_rng(4), "astronaut", SIZE)
    case = make_occluded_case(np.random.default_rng(4), "astronaut", SIZE)
    np.testing.assert_array_equal(case.moving, clean.moving)
    np.testing.assert_array_equal(case.fixed_H_moving, clean.fixed_H_moving)
    np.testing.assert_array_equal(case.fixed[~case.fixed_occluder], clean.fixed[~case.fixed_occluder])
    changed = np.abs(case.fixed - clean.fixed).max(axis=-1) > 0
    assert changed[case.fixed_occluder].mean() > 0.9


def test_empty_areas(cases) -> None:
    variants = set()
    for case in cases["empty"]:
        variants.add(case.variant)
        assert case.fixed_valid.shape == SIZE and case.fixed_valid.dtype == bool
        assert EMPTY_RANGE[0] <= case.empty_fraction <= EMPTY_RANGE[1]
        assert np.all(case.fixed[~case.fixed_valid] == 0.0)
        assert case.fixed[case.fixed_valid].mean() > 0.02
        assert case.fixed_occluder is None
    assert variants == {"bands", "warp"}
    for mode in ("bands", "warp"):
        case = make_empty_case(np.random.default_rng(1), "coffee", SIZE, mode=mode, empty=(0.2, 0.25))
        assert case.variant == mode and 0.2 <= case.empty_fraction <= 0.25


def test_partial_overlap(cases) -> None:
    for case in cases["partial"]:
        overlap = overlap_fraction(case.fixed_H_moving, case.moving.shape[:2], SIZE)
        assert overlap == pytest.approx(case.overlap)
        assert OVERLAP_RANGE[0] <= overlap < 1.0 and overlap <= OVERLAP_RANGE[1]
    overlaps = [c.overlap for c in cases["partial"]]
    assert min(overlaps) < 0.65  # the range is used down to its low end
    case = make_partial_case(np.random.default_rng(2), "chelsea", SIZE, overlap=(0.5, 0.52))
    assert 0.5 <= case.overlap <= 0.52


@pytest.mark.parametrize("condition", CONDITIONS)
def test_truth_maps_moving_content_onto_fixed(cases, condition: str) -> None:
    shift = np.array([[1.0, 0, 1.5], [0, 1.0, -1.5], [0, 0, 1]])  # a 2 px error
    ratios = []
    for case in cases[condition]:
        right = _residual(case, case.fixed_H_moving)
        wrong = _residual(case, shift @ case.fixed_H_moving)
        # Noise 0.02 on each view: an RMS difference of about 0.028 plus resampling.
        assert right < 0.045, (case.photo, right)
        # Smooth photos (moon, cell, clock) barely notice 2 px; the others do, a lot.
        assert wrong > 1.05 * right, (case.photo, right, wrong)
        ratios.append(wrong / right)
    assert np.median(ratios) > 2.0, ratios
