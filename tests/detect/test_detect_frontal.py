from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from alignimate.core.transforms import rotation_matrix, transform_points
from alignimate.detect.frontal import FrontalThresholds, check_frontal, frontal_measures

SAMPLE_FACES = Path(__file__).resolve().parents[2] / "sample_data" / "faces"

# A generic head (mm; x to the subject's left as seen in the image, y up, z towards the camera):
# eye centres, nose tip, mouth corners, in MTCNN order.
HEAD = np.array(
    [[-32.0, 35.0, -27.0], [32.0, 35.0, -27.0], [0.0, 0.0, 0.0], [-28.0, -28.0, -24.0], [28.0, -28.0, -24.0]]
)


def project(
    yaw_deg: float = 0.0, pitch_deg: float = 0.0, scale: float = 3.0, offset=(400.0, 300.0)
) -> np.ndarray:
    """Orthographic image of HEAD turned by yaw (about the vertical axis) and pitch, y pointing down."""
    a, p = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    q = HEAD @ (rx @ ry).T
    return np.stack([offset[0] + scale * q[:, 0], offset[1] - scale * q[:, 1]], axis=1)


def rotate_on_screen(lm: np.ndarray, degrees: float) -> np.ndarray:
    centre = lm.mean(axis=0)
    m = rotation_matrix(math.radians(degrees), tuple(centre)).double()
    return transform_points(m, torch.as_tensor(lm)[None])[0].numpy()


def test_frontal_face_is_kept() -> None:
    r = check_frontal(project())
    assert r.keep and r.reason is None
    assert r.measures.eye_ratio == pytest.approx(1.0) and r.measures.mouth_ratio == pytest.approx(1.0)
    assert r.measures.yaw == pytest.approx(0.0, abs=1e-12) and r.measures.roll_deg == pytest.approx(
        0.0, abs=1e-9
    )


def test_yaw_grows_with_the_turn_and_default_drops_strong_turns() -> None:
    yaws = [frontal_measures(project(d)).yaw for d in (0, 10, 20, 30, 45)]
    assert all(b > a for a, b in itertools.pairwise(yaws))
    assert check_frontal(project(15)).keep
    assert check_frontal(project(-15)).keep  # turning the other way is symmetric
    turned = check_frontal(project(45))
    assert not turned.keep and turned.reason is not None and turned.reason.startswith("yaw")
    assert f"{turned.measures.yaw:.2f}" in turned.reason


def test_documented_yaw_values_of_the_generic_head() -> None:
    # The numbers quoted in alignimate/detect/frontal.py's docstring.
    for deg, yaw in ((10, 0.14), (20, 0.25), (30, 0.33), (45, 0.39)):
        assert frontal_measures(project(deg)).yaw == pytest.approx(yaw, abs=0.006)


def test_profile_fold_back_is_caught_by_the_nose_offset() -> None:
    # Towards profile the ratios become symmetric again; the nose leaving the eye span gives it away.
    m80 = frontal_measures(project(80))
    assert m80.yaw < 0.35
    assert frontal_measures(project(0)).nose_offset == pytest.approx(0.0, abs=1e-12)
    assert abs(frontal_measures(project(30)).nose_offset) < 1.0
    for deg in (60, 80, -80):
        r = check_frontal(project(deg))
        assert not r.keep and "profile" in (r.reason or ""), deg


def test_plain_distances_not_squared() -> None:
    # Nose moved sideways so the nose-eye distances are 30 and 40 exactly.
    lm = np.array([[0.0, 0.0], [50.0, 0.0], [18.0, 24.0], [0.0, 50.0], [50.0, 50.0]])
    m = frontal_measures(lm)
    assert m.eye_ratio == pytest.approx(30.0 / 40.0)


def test_roll_sign_follows_the_screen_convention_and_ratios_ignore_roll() -> None:
    base = project(20)
    for deg in (-25.0, 12.0, 25.0):
        rolled = rotate_on_screen(base, deg)
        m = frontal_measures(rolled)
        assert m.roll_deg == pytest.approx(deg, abs=1e-6)
        assert m.eye_ratio == pytest.approx(frontal_measures(base).eye_ratio)
    r = check_frontal(rotate_on_screen(project(), 40.0))
    assert not r.keep and "roll 40.0 deg" in (r.reason or "")
    assert check_frontal(rotate_on_screen(project(), 40.0), FrontalThresholds(max_roll_deg=45)).keep


def test_upside_down_face_is_dropped_for_roll() -> None:
    r = check_frontal(rotate_on_screen(project(), 180.0))
    assert not r.keep and abs(r.measures.roll_deg) == pytest.approx(180.0)


def test_both_reasons_are_reported() -> None:
    r = check_frontal(rotate_on_screen(project(45), -50.0))
    assert not r.keep and "yaw" in (r.reason or "") and "roll" in (r.reason or "")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="landmarks"):
        frontal_measures(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="max_yaw"):
        FrontalThresholds(max_yaw=1.5)
    with pytest.raises(ValueError, match="max_roll_deg"):
        FrontalThresholds(max_roll_deg=-1)
    with pytest.raises(ValueError, match="max_nose_offset"):
        FrontalThresholds(max_nose_offset=0)


def test_sample_faces_are_all_frontal() -> None:
    truth = json.loads((SAMPLE_FACES / "ground_truth.json").read_text())
    order = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    for frame in truth["frames"]:
        if frame["expected"] != "kept":
            continue
        lm = np.array([frame["landmarks"][k] for k in order])
        r = check_frontal(lm)
        assert r.keep, (frame["file"], r.reason)
        # The frames were rendered with a known on-screen rotation; the eye line carries it.
        eye_line_source = math.degrees(math.atan2(-(102.5 - 100.5), 246.0 - 202.5))
        assert r.measures.roll_deg == pytest.approx(frame["angle_deg"] + eye_line_source, abs=0.05)


def test_pitch_grows_with_the_nod_and_default_drops_strong_nods() -> None:
    # The generic head bowed (positive pitch: looking down) and raised; values quoted in frontal.py.
    measured = {deg: frontal_measures(project(0, deg)).pitch for deg in (-30, -20, -10, 0, 10, 20, 30)}
    assert all(measured[a] < measured[b] for a, b in itertools.pairwise(sorted(measured)))
    for deg, pitch in ((10, 0.07), (20, 0.14), (30, 0.23)):
        # -0.044: the generic head's own nose height (0.556) against the level value (0.6).
        assert measured[deg] == pytest.approx(pitch - 0.044, abs=0.01)
    assert check_frontal(project(0, 20)).keep and check_frontal(project(0, -20)).keep
    down, up = check_frontal(project(0, 50)), check_frontal(project(0, -40))
    assert not down.keep and "pitch" in down.reason and "looking down" in down.reason
    assert not up.keep and "pitch" in up.reason and "looking up" in up.reason
    # Roll does not change it: the nose height is measured across the eye line.
    tilted = rotate_on_screen(project(0, 20), 25.0)
    assert frontal_measures(tilted).pitch == pytest.approx(measured[20], abs=1e-9)
    # A yawed face keeps its pitch measure close to the frontal one.
    assert abs(frontal_measures(project(20, 0)).pitch - measured[0]) < 0.01
