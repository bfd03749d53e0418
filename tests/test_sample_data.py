"""The committed sample photos agree with their ground_truth.json files.

The JSON is checked against the files (names, counts, sizes, EXIF dates), against itself
(landmarks and matrices are consistent with the stored parameters) and against the pixels:
warping the public source photo with the stored matrix and applying the stored lighting
reproduces the committed JPEG up to sensor noise and compression.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
FACES_DIR = SAMPLE_DIR / "faces"
SCENES_DIR = SAMPLE_DIR / "scenes"
EXIF_IFD = 0x8769
EXIF_DATETIME_ORIGINAL = 36867
# Noise sigma <= 0.012 plus JPEG q90 error (measured 0.006-0.012); a few px of misalignment gives far more.
MAX_MEAN_ABS_DIFF = 0.025
# A misalignment of about 3.6 px that the pixel checks must notice.
SMALL_SHIFT = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])
# Interior of the astronaut's face in source pixels (x0, y0, x1, y1): never replaced by a background.
FACE_INTERIOR_SOURCE = (185.0, 85.0, 265.0, 155.0)


def load_json(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "ground_truth.json").read_text(encoding="utf-8"))


FACES = load_json(FACES_DIR)
SCENES = load_json(SCENES_DIR)
KEPT_FACES = [f for f in FACES["frames"] if f["expected"] == "kept"]


def read_rgb(path: Path) -> np.ndarray:
    """JPEG -> float32 (H, W, 3) in [0, 1]."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def exif_datetime(path: Path) -> dt.datetime:
    raw = Image.open(path).getexif().get_ifd(EXIF_IFD)[EXIF_DATETIME_ORIGINAL]
    return dt.datetime.strptime(raw, "%Y:%m:%d %H:%M:%S")


def apply_lighting(image: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
    """The documented photometric model: clip(gain * cast_c * x + bias, 0, 1) ** gamma."""
    cast = np.asarray(frame["colour_cast"], dtype=np.float32)
    return np.clip(frame["gain"] * cast * image + frame["bias"], 0.0, 1.0) ** frame["gamma"]


def render(source: np.ndarray, frame_H_source: np.ndarray, size_hw: list[int]) -> np.ndarray:
    h, w = size_hw
    return cv2.warpPerspective(source, frame_H_source, (w, h), flags=cv2.INTER_LINEAR)


def map_points(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ H.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def polygon_mask(corners: np.ndarray, size_hw: list[int]) -> np.ndarray:
    """Boolean (h, w) mask of pixel centres inside a convex polygon given in pixel coordinates."""
    mask = np.zeros(size_hw, np.uint8)
    cv2.fillConvexPoly(mask, np.round(corners * 16).astype(np.int32), 1, shift=4)
    return mask.astype(bool)


def box_corners(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def similarity_params(H: np.ndarray) -> tuple[float, float]:
    """(angle_deg, scale) of [[s cos, s sin, tx], [-s sin, s cos, ty]] (counter-clockwise on screen)."""
    return math.degrees(math.atan2(H[0, 1], H[0, 0])), math.hypot(H[0, 0], H[0, 1])


def assert_similarity(H: np.ndarray) -> None:
    np.testing.assert_allclose(H[2], [0.0, 0.0, 1.0], atol=1e-9)
    assert H[0, 0] == pytest.approx(H[1, 1], abs=1e-9)
    assert H[0, 1] == pytest.approx(-H[1, 0], abs=1e-9)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut().astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def rocket() -> np.ndarray:
    return skimage.data.rocket().astype(np.float32) / 255.0


# ----------------------------------------------------------------------------- faces


def test_face_folder_matches_json() -> None:
    on_disk = sorted(p.name for p in FACES_DIR.glob("*.jpg"))
    assert on_disk == sorted(f["file"] for f in FACES["frames"])
    assert len(KEPT_FACES) == 14
    dropped = [f for f in FACES["frames"] if f["expected"] == "dropped"]
    assert [(f["file"], f["reason"]) for f in dropped] == [("no_face_01.jpg", "no face")]


def test_face_sizes_match_json_and_vary() -> None:
    for frame in FACES["frames"]:
        w, h = Image.open(FACES_DIR / frame["file"]).size
        assert [h, w] == frame["size"], frame["file"]
    kept_sizes = [tuple(f["size"]) for f in KEPT_FACES]
    assert min(min(size) for size in kept_sizes) >= 480
    assert len({round(h / w, 2) for h, w in kept_sizes}) >= 5


def test_face_exif_dates_match_json_and_follow_names() -> None:
    for frame in FACES["frames"]:
        assert exif_datetime(FACES_DIR / frame["file"]) == dt.datetime.fromisoformat(frame["datetime"])
    dates = [dt.datetime.fromisoformat(f["datetime"]) for f in KEPT_FACES]
    names = [f["file"] for f in KEPT_FACES]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)
    assert names == sorted(names)
    distractor = dt.datetime.fromisoformat(FACES["frames"][-1]["datetime"])
    assert dates[0] < distractor < dates[-1], "the distractor must sit inside the series by date"


@pytest.mark.parametrize("frame", KEPT_FACES, ids=lambda f: f["file"])
def test_face_matrix_matches_angle_and_scale(frame: dict[str, Any]) -> None:
    H = np.asarray(frame["frame_H_source"])
    assert_similarity(H)
    angle_deg, scale = similarity_params(H)
    assert angle_deg == pytest.approx(frame["angle_deg"], abs=1e-6)
    assert scale == pytest.approx(frame["scale"], abs=1e-6)
    assert -12.0 <= angle_deg <= 12.0 and 0.8 <= scale <= 1.25


@pytest.mark.parametrize("frame", KEPT_FACES, ids=lambda f: f["file"])
def test_face_landmarks_are_source_landmarks_mapped(frame: dict[str, Any]) -> None:
    H = np.asarray(frame["frame_H_source"])
    names = list(FACES["landmarks_source"])
    assert names == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    assert list(frame["landmarks"]) == names
    expected = map_points(H, np.asarray(list(FACES["landmarks_source"].values()), dtype=np.float64))
    np.testing.assert_allclose(np.asarray(list(frame["landmarks"].values())), expected, atol=1e-3)


@pytest.mark.parametrize("frame", KEPT_FACES, ids=lambda f: f["file"])
def test_face_head_fully_inside_frame(frame: dict[str, Any]) -> None:
    h, w = frame["size"]
    head = map_points(np.asarray(frame["frame_H_source"]), box_corners(*FACES["head_box_source"]))
    assert np.all(head >= 0.0) and np.all(head[:, 0] <= w - 1) and np.all(head[:, 1] <= h - 1)


def test_source_landmarks_form_a_plausible_face() -> None:
    """Independent sanity check of the hand-measured points: eyes above nose above mouth, left < right."""
    p = {k: np.asarray(v) for k, v in FACES["landmarks_source"].items()}
    assert p["left_eye"][0] < p["nose"][0] < p["right_eye"][0]
    assert p["mouth_left"][0] < p["nose"][0] < p["mouth_right"][0]
    assert max(p["left_eye"][1], p["right_eye"][1]) < p["nose"][1]
    assert p["nose"][1] < min(p["mouth_left"][1], p["mouth_right"][1])
    assert 35.0 < np.linalg.norm(p["right_eye"] - p["left_eye"]) < 55.0
    x0, y0, x1, y1 = FACES["head_box_source"]
    assert all(x0 < x < x1 and y0 < y < y1 for x, y in p.values())


def face_interior_error(astronaut: np.ndarray, frame: dict[str, Any], H: np.ndarray) -> float:
    """Mean abs difference between the committed frame and the re-rendered source on the face interior."""
    committed = read_rgb(FACES_DIR / frame["file"])
    predicted = apply_lighting(render(astronaut, H, frame["size"]), frame)
    region = map_points(np.asarray(frame["frame_H_source"]), box_corners(*FACE_INTERIOR_SOURCE))
    mask = polygon_mask(region, frame["size"])
    return float(np.abs(committed - predicted)[mask].mean())


@pytest.mark.parametrize("frame", KEPT_FACES, ids=lambda f: f["file"])
def test_face_frame_is_the_source_warped_by_its_matrix(astronaut: np.ndarray, frame: dict[str, Any]) -> None:
    H = np.asarray(frame["frame_H_source"])
    error = face_interior_error(astronaut, frame, H)
    shifted_error = face_interior_error(astronaut, frame, SMALL_SHIFT @ H)
    assert error < MAX_MEAN_ABS_DIFF
    assert shifted_error > 2.0 * error, "the check must be sensitive to a few pixels of misalignment"


def test_no_face_frame_is_the_lit_coffee_photo() -> None:
    frame = FACES["frames"][-1]
    assert frame["source"] == "skimage.data.coffee"
    coffee = skimage.data.coffee().astype(np.float32) / 255.0
    committed = read_rgb(FACES_DIR / frame["file"])
    assert np.abs(committed - apply_lighting(coffee, frame)).mean() < MAX_MEAN_ABS_DIFF


# ----------------------------------------------------------------------------- scenes


def test_scene_folder_matches_json() -> None:
    frames = SCENES["frames"]
    assert sorted(p.name for p in SCENES_DIR.glob("*.jpg")) == [f["file"] for f in frames]
    assert len(frames) == 10 and SCENES["reference"] == frames[0]["file"]
    assert [f["model"] for f in frames].count("homography") == 3
    for frame in frames:
        w, h = Image.open(SCENES_DIR / frame["file"]).size
        assert [h, w] == frame["size"] == SCENES["frame_size"], frame["file"]
        assert exif_datetime(SCENES_DIR / frame["file"]) == dt.datetime.fromisoformat(frame["datetime"])


def scene_similarity(frame: dict[str, Any]) -> np.ndarray:
    """The documented motion: rotate/scale about the frame centre, then shift by shift_px."""
    h, w = frame["size"]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = math.radians(frame["angle_deg"])
    c, s = frame["scale"] * math.cos(a), frame["scale"] * math.sin(a)
    tx, ty = frame["shift_px"]
    return np.array([[c, s, cx - c * cx - s * cy + tx], [-s, c, cy + s * cx - c * cy + ty], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("frame", SCENES["frames"], ids=lambda f: f["file"])
def test_scene_matrices_are_consistent(frame: dict[str, Any]) -> None:
    frame_H_reference = np.asarray(frame["frame_H_reference"])
    composed = frame_H_reference @ np.asarray(SCENES["reference_H_source"])
    np.testing.assert_allclose(
        np.asarray(frame["frame_H_source"]), composed / composed[2, 2], rtol=1e-8, atol=1e-7
    )
    if frame["file"] == SCENES["reference"]:
        np.testing.assert_allclose(frame_H_reference, np.eye(3), atol=1e-12)
    h, w = frame["size"]
    assert abs(frame["angle_deg"]) <= 10.0 and 0.9 <= frame["scale"] <= 1.1
    assert abs(frame["shift_px"][0]) <= 0.08 * w and abs(frame["shift_px"][1]) <= 0.08 * h
    similarity = scene_similarity(frame)
    if frame["model"] == "similarity":
        assert_similarity(frame_H_reference)
        np.testing.assert_allclose(frame_H_reference, similarity, atol=1e-6)
    else:
        assert np.abs(frame_H_reference[2, :2]).max() > 1e-6, "a homography frame needs perspective"
        offsets = np.asarray(frame["perspective_corner_offsets_px"])
        assert np.all(np.abs(offsets) <= 0.03 * np.array([w, h]))
        corners = box_corners(0.0, 0.0, w - 1.0, h - 1.0)
        moved = map_points(frame_H_reference, corners)
        np.testing.assert_allclose(moved, map_points(similarity, corners) + offsets, atol=1e-3)


def scene_error(rocket: np.ndarray, frame: dict[str, Any], H: np.ndarray) -> float:
    """Mean abs difference between the committed scene and the re-rendered, re-lit source."""
    committed = read_rgb(SCENES_DIR / frame["file"])
    return float(np.abs(committed - apply_lighting(render(rocket, H, frame["size"]), frame)).mean())


@pytest.mark.parametrize("frame", SCENES["frames"], ids=lambda f: f["file"])
def test_scene_frame_is_the_source_warped_by_its_matrix(rocket: np.ndarray, frame: dict[str, Any]) -> None:
    H = np.asarray(frame["frame_H_source"])
    coverage = render(np.ones(rocket.shape[:2], np.float32), H, frame["size"])
    assert coverage.min() > 0.999, "every scene pixel must come from inside the photo (no padded border)"
    error = scene_error(rocket, frame, H)
    shifted_error = scene_error(rocket, frame, SMALL_SHIFT @ H)
    assert error < MAX_MEAN_ABS_DIFF
    assert shifted_error > 1.8 * error, "the check must be sensitive to a few pixels of misalignment"
