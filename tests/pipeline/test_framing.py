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


# --- The half-plane search, checked against a direct per-pixel evaluation and the old grid method ---

from alignimate.pipeline.framing import _refine_to_pixels  # noqa: E402  (the old method, rebuilt below)


def direct_mask(mats: torch.Tensor, sizes: list[tuple[int, int]], canvas: tuple[int, int]) -> np.ndarray:
    """Which canvas pixel centres every photo covers, by mapping each one through the inverse matrix."""
    h, w = canvas
    ys, xs = np.mgrid[0:h, 0:w]
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)]).astype(np.float64)
    src = np.linalg.inv(mats.double().numpy()) @ points  # (B, 3, N)
    u, v, z = src[:, 0], src[:, 1], src[:, 2]
    hs, ws = (np.array([s[k] for s in sizes], dtype=np.float64)[:, None] for k in (0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = u / z, v / z
        inside = (z > 0) & (x >= 0) & (x <= ws - 1) & (y >= 0) & (y <= hs - 1)
    return inside.all(axis=0).reshape(h, w)


def longest_run(flags: np.ndarray) -> int:
    edges = np.diff(np.concatenate([[0], flags.astype(np.int64), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max(initial=0))


def usable(n: int, even: bool) -> int:
    n = n - n % 2 if even else n
    return n if n >= 2 else 0


def best_area(mask: np.ndarray, even: bool) -> int:
    """Largest (even-rounded) area of an all-True box: every top row, growing the bottom row."""
    best = 0
    for t in range(mask.shape[0]):
        columns = np.ones(mask.shape[1], dtype=bool)
        for b in range(t, mask.shape[0]):
            columns &= mask[b]
            if not columns.any():
                break
            best = max(best, usable(b - t + 1, even) * usable(longest_run(columns), even))
    return best


def old_grid_crop(
    mats: torch.Tensor, sizes: list[tuple[int, int]], canvas: tuple[int, int], resolution: int, even: bool
) -> int:
    """Area of the crop the former grid method found (sampled mask, largest rectangle, pixel refinement)."""
    h, w = canvas
    step = max(1.0, max(h, w) / resolution)
    rect = largest_rectangle(coverage_mask(mats.double(), sizes, canvas, step).numpy())
    if rect is None:
        return 0
    r0, c0, nr, nc = rect
    box = [
        int(np.ceil(r0 * step)),
        int(np.ceil(c0 * step)),
        int(np.floor((r0 + nr - 1) * step)),
        int(np.floor((c0 + nc - 1) * step)),
    ]
    src_H_out = np.linalg.inv(mats.double().numpy())
    refined = _refine_to_pixels(
        src_H_out, np.array(sizes, dtype=np.float64), box, canvas, int(np.ceil(step)) + 1
    )
    if refined is None:
        return 0
    return usable(refined[2] - refined[0] + 1, even) * usable(refined[3] - refined[1] + 1, even)


def fits(mask: np.ndarray, top: int, left: int, bottom: int, right: int) -> bool:
    h, w = mask.shape
    if top < 0 or left < 0 or bottom >= h or right >= w:
        return False
    return bool(mask[top : bottom + 1, left : right + 1].all())


def check_crop(
    mats: torch.Tensor,
    sizes: list[tuple[int, int]],
    canvas: tuple[int, int],
    *,
    resolution: int = 400,
    even: bool = True,
    exact: bool = True,
) -> None:
    """The box is covered pixel by pixel, at least as large as the old method's, and cannot grow.

    ``exact``: also as large as the brute-force optimum over the direct mask (the rows are searched
    exhaustively when the covered rows number at most ``resolution``)."""
    mask = direct_mask(mats, sizes, canvas)
    box = common_crop(mats, sizes, canvas, resolution=resolution, even=even)
    optimum = best_area(mask, even) if exact else None
    old = old_grid_crop(mats, sizes, canvas, resolution, even)
    if box is None:
        assert old == 0
        assert optimum in (0, None)
        assert not exact or best_area(mask, even) == 0
        return
    top, left, bottom, right = box.top, box.left, box.top + box.height - 1, box.left + box.width - 1
    assert fits(mask, top, left, bottom, right)
    area = box.height * box.width
    assert area >= old
    if exact:
        assert area == optimum
    if even:
        assert box.height % 2 == 0 and box.width % 2 == 0
    # Growing one side (by 2 when sizes stay even) must leave the covered area or the canvas.
    grow = 2 if even else 1
    assert not fits(mask, top - grow, left, bottom, right)
    assert not fits(mask, top, left - grow, bottom, right)
    assert not fits(mask, top, left, bottom + grow, right)
    assert not fits(mask, top, left, bottom, right + grow)


def similarity(
    angle: float, scale: float, shift: tuple[float, float], centre: tuple[float, float]
) -> np.ndarray:
    c = np.array(centre)
    rot = scale * np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    m = np.eye(3)
    m[:2, :2], m[:2, 2] = rot, c - rot @ c + np.array(shift)
    return m


def random_similarities(
    rng: np.random.Generator, count: int, canvas: tuple[int, int], same_size: bool
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    h, w = canvas
    mats, sizes = [], []
    for _ in range(count):
        size = canvas if same_size else (int(rng.integers(h // 2, h + 10)), int(rng.integers(w // 2, w + 10)))
        shift = (rng.uniform(-0.1, 0.1) * w, rng.uniform(-0.1, 0.1) * h)
        centre = ((size[1] - 1) / 2, (size[0] - 1) / 2)
        m = similarity(rng.uniform(-0.15, 0.15), np.exp(rng.uniform(-0.1, 0.1)), shift, centre)
        mats.append(m)
        sizes.append(size)
    return torch.tensor(np.stack(mats)), sizes


@pytest.mark.parametrize("even", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_random_similarities_give_the_optimal_covered_box(seed: int, even: bool) -> None:
    rng = np.random.default_rng(seed)
    mats, sizes = random_similarities(rng, 6, (48, 64), same_size=seed % 2 == 0)
    check_crop(mats, sizes, (48, 64), even=even)


@pytest.mark.parametrize("even", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_coarse_row_search_beats_the_grid_method(seed: int, even: bool) -> None:
    # resolution 12 on 60 rows: rows are first paired every 5, then refined around the best pair.
    rng = np.random.default_rng(100 + seed)
    mats, sizes = random_similarities(rng, 5, (60, 80), same_size=False)
    check_crop(mats, sizes, (60, 80), resolution=12, even=even, exact=False)


def test_coarse_search_on_a_larger_canvas_beats_the_grid_method() -> None:
    rng = np.random.default_rng(7)
    mats, sizes = random_similarities(rng, 20, (240, 320), same_size=True)
    check_crop(mats, sizes, (240, 320), resolution=40, exact=False)


def random_homographies(
    rng: np.random.Generator, count: int, canvas: tuple[int, int]
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Perspective maps whose horizon (where ``w' = 0``) often crosses the canvas."""
    h, w = canvas
    mats = []
    for _ in range(count):
        src_H_out = np.linalg.inv(
            similarity(rng.uniform(-0.2, 0.2), 1.0, (0.0, 0.0), ((w - 1) / 2, (h - 1) / 2))
        )
        src_H_out[2, :2] = rng.uniform(-3.0, 3.0, 2) / np.array([w, h])
        src_H_out[2, 2] = 1.0 - src_H_out[2, :2] @ np.array([w / 2, h / 2])  # w' = 1 at the centre
        mats.append(np.linalg.inv(src_H_out))
    return torch.tensor(np.stack(mats)), [canvas] * count


@pytest.mark.parametrize("seed", range(6))
def test_random_homographies_with_horizons_in_the_canvas(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    mats, sizes = random_homographies(rng, 3, (40, 56))
    corners = np.array([[0, 0, 1], [55, 0, 1], [0, 39, 1], [55, 39, 1]], dtype=np.float64).T
    w_at_corners = (np.linalg.inv(mats.numpy()) @ corners)[:, 2]
    assert ((w_at_corners > 0).any(axis=1) & (w_at_corners < 0).any(axis=1)).any()  # a horizon crosses
    check_crop(mats, sizes, (40, 56), even=seed % 2 == 0)


def test_points_behind_the_horizon_are_not_covered() -> None:
    # x' = (x - 100) / (1 - x / 50): for 50 < x < 100 both parts are negative and the ratio lands in the
    # photo, but those points lie behind the camera; in front of it (x < 50) the ratio is negative.
    src_H_out = torch.tensor([[1.0, 0.0, -100.0], [0.0, 1.0, 0.0], [-1 / 50, 0.0, 1.0]], dtype=torch.float64)
    mats = torch.linalg.inv(src_H_out)[None]
    assert not direct_mask(mats, [(40, 300)], (40, 120))[:, 51:100].any()
    assert common_crop(mats, [(40, 300)], (40, 120)) is None


def test_horizon_crossing_the_canvas_limits_the_crop() -> None:
    # w' = 1 - x / 50: only x < 50 is in front; there x' = x / (1 - x / 50) <= 79 for x <= 30.6 and
    # (on rows y <= 39) y' = y / (1 - x / 50) <= 999 for x <= 48.
    src_H_out = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1 / 50, 0.0, 1.0]], dtype=torch.float64)
    mats = torch.linalg.inv(src_H_out)[None]
    box = common_crop(mats, [(1000, 80)], (40, 120), even=False)
    assert (box.top, box.left, box.height, box.width) == (0, 0, 40, 31)
    check_crop(mats, [(40, 80)], (40, 120), even=False)


def test_photos_of_different_sizes_crop_to_the_smallest_extent() -> None:
    mats = torch.eye(3, dtype=torch.float64).repeat(3, 1, 1)
    sizes = [(51, 70), (60, 41), (80, 100)]
    box = common_crop(mats, sizes, (80, 100), even=False)
    assert (box.top, box.left, box.height, box.width) == (0, 0, 51, 41)
    box = common_crop(mats, sizes, (80, 100))
    assert (box.top, box.left, box.height, box.width) == (0, 0, 50, 40)


def test_a_photo_that_covers_nothing_gives_none() -> None:
    mats = torch.stack([torch.eye(3, dtype=torch.float64), translation(0, 0), translation(-30, 200)])
    assert common_crop(mats, [(60, 80)] * 3, (60, 80)) is None


def test_identity_covers_the_whole_canvas_rounded_to_even() -> None:
    mats = torch.eye(3, dtype=torch.float64)[None]
    box = common_crop(mats, [(101, 161)], (101, 161))
    assert (box.top, box.left, box.height, box.width) == (0, 0, 100, 160)
    box = common_crop(mats, [(101, 161)], (101, 161), even=False)
    assert (box.top, box.left, box.height, box.width) == (0, 0, 101, 161)


def test_thin_common_sliver_thinner_than_the_row_step_is_found() -> None:
    # The photos share rows 100..104 only (exact edges); rows are first sampled every 10.
    mats = torch.stack([translation(0, 100), translation(0, 104 - 299)])
    box = common_crop(mats, [(300, 200)] * 2, (300, 200), resolution=30, even=False)
    assert (box.top, box.left, box.height, box.width) == (100, 0, 5, 200)
    # Tilted edges (about y = 101.5 and 106.5 +- 1): no sampled row (100, 110) is covered.
    centre = (99.5, 149.5)
    top_edge = similarity(0.01, 1.0, (0.0, 101.5), centre)
    bottom_edge = similarity(-0.01, 1.0, (0.0, 106.5 - 299), centre)
    mats = torch.tensor(np.stack([top_edge, bottom_edge]))
    assert not direct_mask(mats, [(300, 200)] * 2, (300, 200))[[100, 110]].any()
    check_crop(mats, [(300, 200)] * 2, (300, 200), resolution=30, even=False)


def test_one_matrix_broadcasts_over_the_sizes() -> None:
    box = common_crop(torch.eye(3)[None], [(40, 60), (30, 80)], (50, 90))
    assert (box.top, box.left, box.height, box.width) == (0, 0, 30, 60)


@pytest.mark.parametrize(
    ("mats", "sizes", "canvas", "match"),
    [
        (torch.eye(3).repeat(2, 1, 1), [(10, 10)], (10, 10), "out_H_src"),
        (torch.eye(2)[None], [(10, 10)], (10, 10), "out_H_src"),
        (torch.eye(3)[None], [(0, 10)], (10, 10), "src_sizes"),
        (torch.eye(3)[None], [(10, 10)], (10, 0), "canvas"),
        (torch.zeros(1, 3, 3), [(10, 10)], (10, 10), "singular"),
        (torch.full((1, 3, 3), float("nan")), [(10, 10)], (10, 10), "finite"),
    ],
)
def test_bad_arguments_raise(
    mats: torch.Tensor, sizes: list[tuple[int, int]], canvas: tuple[int, int], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        common_crop(mats, sizes, canvas)


def test_numpy_matrices_give_the_same_crop_as_tensors() -> None:
    rng = np.random.default_rng(3)
    mats = np.stack([np.eye(3) + np.pad(rng.normal(0, 0.01, (2, 3)), ((0, 1), (0, 0))) for _ in range(4)])
    mats[:, :2, 2] = rng.uniform(-8, 8, (4, 2))
    sizes = [(120, 160)] * 4
    assert common_crop(mats, sizes, (120, 160)) == common_crop(torch.from_numpy(mats), sizes, (120, 160))


@pytest.mark.parametrize(
    ("mats", "match"),
    [
        (np.eye(3)[None].repeat(2, axis=0), "batch 2, expected 1 or 1"),
        (np.eye(2)[None], r"shape \(B, 3, 3\)"),
        (np.full((1, 3, 3), np.inf), "finite"),
    ],
)
def test_bad_numpy_matrices_raise(mats: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        common_crop(mats, [(10, 10)], (10, 10))


def test_vanishing_perspective_terms_act_like_the_affine_map() -> None:
    # 1e-300 in the last row would overflow a division by it; the constraint is then a row bound only.
    mats = torch.eye(3, dtype=torch.float64)[None].clone()
    mats[0, 2, 0] = 1e-300
    box = common_crop(mats, [(50, 60)], (50, 60))
    assert (box.top, box.left, box.height, box.width) == (0, 0, 50, 60)
