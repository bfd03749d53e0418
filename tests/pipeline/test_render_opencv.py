"""The OpenCV path of the renderer (affine warps of uint8 photos) against its torch path, which the
rest of tests/pipeline/test_render.py checks against whole-image float warps; and the OpenCV loader."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

import alignimate.io.opencv as opencv_module
import alignimate.pipeline.render as render
from alignimate.core import warp_perspective
from alignimate.io.opencv import MIN_OPENCV, opencv, opencv_version
from alignimate.pipeline.render import render_frame

OUT_SIZE = (90, 140)


def noise_photo(h: int = 80, w: int = 120, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, s, tx], [-s, c, ty], [0.0, 0.0, 1.0]])


AFFINE_CASES = {
    "small rotation": similarity(0.02, 1.003, 1.37, -0.61),
    "rotation and scale": similarity(0.35, 1.15, 10.5, -4.25),
    "shear and flip": np.array([[-0.9, 0.2, 120.3], [0.1, 1.2, -3.3], [0.0, 0.0, 1.0]]),
    "sub-pixel shift": np.array([[1.0, 0.0, 2.5], [0.0, 1.0, -0.25], [0.0, 0.0, 1.0]]),
    "half inside": similarity(0.0, 1.0, 70.4, 0.3),
    "all outside": similarity(0.1, 1.0, 500.2, 0.0),
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records which frames the OpenCV path made."""
    made: list[str] = []
    real = render._render_affine_opencv

    def spy(*args, **kwargs):
        frame = real(*args, **kwargs)
        if frame is not None:
            made.append("opencv")
        return frame

    monkeypatch.setattr(render, "_render_affine_opencv", spy)
    return made


def torch_path(photo: np.ndarray, matrix: np.ndarray, background: str) -> np.ndarray:
    """The same frame through the tiled torch warp (OpenCV switched off)."""
    real = render.opencv
    render.opencv = lambda: None  # type: ignore[assignment]
    try:
        return render_frame(photo, matrix, OUT_SIZE, background=background)
    finally:
        render.opencv = real  # type: ignore[assignment]


def test_opencv_is_usable_here() -> None:
    # opencv-python-headless >= 5 is a dependency; without it the tests below compare torch to torch.
    assert opencv() is not None


def exact_frame(photo: np.ndarray, frame_H_photo: np.ndarray, background: str) -> np.ndarray:
    """The frame's values before rounding, in float64: bilinear with zeros outside the photo, the
    background where the sample falls outside it (the documented composition)."""
    images = torch.from_numpy(photo.astype(np.float64)).permute(2, 0, 1).unsqueeze(0)
    matrix = torch.from_numpy(frame_H_photo).unsqueeze(0)
    warped, inside = warp_perspective(images, matrix, OUT_SIZE, return_mask=True)
    if background == "white":
        warped = (warped + (1 - inside) * 255.0).clamp(0.0, 255.0)
    elif background == "transparent":
        warped = torch.cat([warped, inside * 255.0], dim=1)
    return warped[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("case", list(AFFINE_CASES))
@pytest.mark.parametrize("background", ["black", "white", "transparent"])
def test_opencv_path_rounds_the_exact_warp(case: str, background: str, calls: list[str]) -> None:
    photo = noise_photo()
    frame = render_frame(photo, AFFINE_CASES[case], OUT_SIZE, background=background)
    assert calls == ["opencv"]
    exact = exact_frame(photo, AFFINE_CASES[case], background)
    assert frame.shape == exact.shape and frame.dtype == np.uint8
    # Every value is the exact one rounded to the nearest grey level (a tie either way), up to OpenCV's
    # float32 arithmetic.
    assert np.abs(frame - exact).max() <= 0.5 + 0.01, (case, background)
    if background == "transparent":
        assert set(np.unique(frame[..., 3])) <= {0, 255}


@pytest.mark.parametrize("case", list(AFFINE_CASES))
@pytest.mark.parametrize("background", ["black", "white", "transparent"])
def test_opencv_path_agrees_with_the_torch_path(case: str, background: str) -> None:
    photo = noise_photo()
    frame = render_frame(photo, AFFINE_CASES[case], OUT_SIZE, background=background)
    expected = torch_path(photo, AFFINE_CASES[case], background)
    diff = np.abs(frame.astype(np.int16) - expected.astype(np.int16)).max(axis=2)
    # The coverage (white fill, alpha) may differ only where the sample lies on the photo's edge, within
    # float rounding: the torch path tests it in float32, this one in float64.
    on_edge = edge_distance(photo.shape[:2], AFFINE_CASES[case]) < 1e-4
    assert np.all(on_edge[diff > 1]), (case, background)
    # Elsewhere they differ only where the exact value is (within float rounding) a tie: the torch path
    # rounds halves up, OpenCV to even. Dyadic weights (the sub-pixel shift's 0.5 and 0.25) make ties
    # common.
    exact = exact_frame(photo, AFFINE_CASES[case], background)
    ties = (np.abs(exact - np.floor(exact) - 0.5) < 0.01).any(axis=2)
    assert np.all(ties[(diff == 1) & ~on_edge]), (case, background)


def edge_distance(photo_size: tuple[int, int], frame_H_photo: np.ndarray) -> np.ndarray:
    """``(h, w)``: how far each frame pixel's sample lies from the photo's edge lines, in pixels."""
    (H, W), (h, w) = photo_size, OUT_SIZE
    ys, xs = np.mgrid[0:h, 0:w]
    sx, sy, _ = np.einsum("ij,jhw->ihw", np.linalg.inv(frame_H_photo), np.stack([xs, ys, np.ones_like(xs)]))
    return np.min(np.abs([sx + 0.5, sx - (W - 0.5), sy + 0.5, sy - (H - 0.5)]), axis=0)


@pytest.mark.parametrize("background", ["black", "white", "transparent"])
def test_planes_in_planes_out(background: str, calls: list[str]) -> None:
    photo = noise_photo()
    matrix = AFFINE_CASES["rotation and scale"]
    expected = render_frame(photo, matrix, OUT_SIZE, background=background)
    interleaved = torch.from_numpy(photo).permute(2, 0, 1)
    for planes in (interleaved, interleaved.contiguous()):
        frame = render_frame(planes, matrix, OUT_SIZE, background=background)
        assert isinstance(frame, torch.Tensor) and tuple(frame.shape) == (expected.shape[2], *OUT_SIZE)
        assert np.array_equal(frame.permute(1, 2, 0).numpy(), expected)
    assert calls == ["opencv"] * 3


def test_read_only_and_strided_photos(calls: list[str]) -> None:
    wide = noise_photo(80, 150)
    photo = wide[:, 10:130]  # a view with a row stride, as region_for_frame gives
    frozen = np.array(photo)
    frozen.flags.writeable = False  # as Pillow's arrays are
    matrix = AFFINE_CASES["rotation and scale"]
    expected = render_frame(np.ascontiguousarray(photo), matrix, OUT_SIZE)
    assert np.array_equal(render_frame(photo, matrix, OUT_SIZE), expected)
    assert np.array_equal(render_frame(frozen, matrix, OUT_SIZE), expected)
    assert calls == ["opencv"] * 3


@pytest.mark.parametrize(
    ("matrix", "background", "device"),
    [
        (np.array([[1.05, 0.08, 6.0], [-0.04, 0.93, 9.0], [0.0012, -0.0009, 1.0]]), "black", "cpu"),
        (AFFINE_CASES["rotation and scale"], "blur", "cpu"),
        (AFFINE_CASES["rotation and scale"], "black", "meta"),
    ],
    ids=["homography", "blurred background", "another device"],
)
def test_other_warps_take_the_torch_path(matrix, background, device, calls, monkeypatch) -> None:
    if device == "meta":
        # Only the choice of path is checked here; the torch path is stubbed out.
        monkeypatch.setattr(render, "_Frame", _StopHere)
        with pytest.raises(_Stopped):
            render_frame(noise_photo(), matrix, OUT_SIZE, background=background, device=device)
    else:
        render_frame(noise_photo(), matrix, OUT_SIZE, background=background)
    assert calls == []


class _Stopped(Exception):  # noqa: N818  (a signal, not an error)
    pass


class _StopHere:
    def __init__(self, *args: object) -> None:
        raise _Stopped


def test_very_long_sides_take_the_torch_path(calls: list[str]) -> None:
    photo = noise_photo(2, render._OPENCV_MAX_SIDE + 10)
    matrix = similarity(0.0, 1.0, -render._OPENCV_MAX_SIDE + 0.5, 0.25)
    frame = render_frame(photo, matrix, (3, 8))
    assert calls == [] and frame.shape == (3, 8, 3)


def test_inside_columns_match_a_pixel_by_pixel_test() -> None:
    rng = np.random.default_rng(1)
    photo_size, size = (37, 53), (41, 60)
    for _ in range(200):
        frame_H_photo = similarity(rng.uniform(-3.2, 3.2), rng.uniform(0.5, 2.0), *rng.uniform(-40, 60, 2))
        frame_H_photo[:2, :2] += rng.normal(0, 0.1, (2, 2))
        photo_H_frame = np.linalg.inv(frame_H_photo)
        starts, stops = render._inside_columns(photo_H_frame, photo_size, size)
        ys, xs = np.mgrid[0 : size[0], 0 : size[1]]
        sx, sy, _ = np.einsum("ij,jhw->ihw", photo_H_frame, np.stack([xs, ys, np.ones_like(xs)]))
        inside = (sx >= -0.5) & (sx <= photo_size[1] - 0.5) & (sy >= -0.5) & (sy <= photo_size[0] - 0.5)
        by_interval = (xs >= starts[:, None]) & (xs < stops[:, None])
        assert np.array_equal(by_interval, inside)


def test_the_edge_itself_is_inside() -> None:
    # Frame column 0 samples the photo's left edge exactly (x = -0.5), column 10 its right edge.
    photo_H_frame = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    starts, stops = render._inside_columns(photo_H_frame, (4, 10), (4, 14))
    assert starts.tolist() == [0] * 4 and stops.tolist() == [11] * 4


def test_opencv_loader_refuses_old_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    assert opencv_version("5.1.0") == (5, 1) and opencv_version("4.12.0-dev") == (4, 12)
    assert opencv_version("unknown") == (0, 0)
    opencv_module.opencv.cache_clear()
    try:
        monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(__version__="4.12.0"))
        assert opencv_module.opencv() is None
        opencv_module.opencv.cache_clear()
        fake = types.SimpleNamespace(__version__=".".join(map(str, MIN_OPENCV)))
        monkeypatch.setitem(sys.modules, "cv2", fake)
        assert opencv_module.opencv() is fake
        opencv_module.opencv.cache_clear()
        monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
        assert opencv_module.opencv() is None
    finally:
        monkeypatch.undo()
        opencv_module.opencv.cache_clear()
    assert opencv_module.opencv() is not None
