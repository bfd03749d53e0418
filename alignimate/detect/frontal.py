"""Frontal-face filter on the 5 MTCNN landmarks (eye_left, eye_right, nose, mouth_left, mouth_right).

Yaw: when a head turns, the nose moves towards one side, so the nose-to-eye distances (and the
nose-to-mouth-corner distances) become unequal. Each pair gives a ratio ``min / max`` of plain
Euclidean distances (1 for a frontal face); the yaw *asymmetry* is ``1 - min(eye_ratio,
mouth_ratio)`` (0 frontal, towards 1 in profile). Roll is the angle of the eye line, positive
counter-clockwise on screen (docs/conventions.md). Distances and ratios are invariant to roll,
scale and translation, so the two tests are independent.

Pitch (looking up or down): the nose tip sits between the eye line and the mouth line, and tilting
the head moves it along that span. ``nose_height`` is the nose tip's distance from the eye line
over the mouth line's distance from it, both measured across the eye line (so roll does not
change it): 0.49 on the ArcFace template, 0.56 on the generic head of the tests, 0.67 to 0.73 for
MTCNN's landmarks on the sample portraits (sample_data/faces); it rises as the head bows (looking
down, the nose tip comes over the mouth) and falls as the chin comes up (looking up). The
pitch measure is ``nose_height - FRONTAL_NOSE_HEIGHT``.

Default thresholds (configurable, ``[faces] max_yaw`` / ``max_roll`` in the config):
- ``max_yaw = 0.35``: drops ratios below 0.65, a turn of about 33 degrees on a generic 3-D head
  (tests/detect/test_detect_frontal.py projects one: 10 deg -> 0.14, 20 deg -> 0.25, 30 deg -> 0.33,
  45 deg -> 0.39). The ratio peaks near 0.39 at about 45 degrees and falls again towards profile
  (the far eye and mouth corner slide behind the nose), so thresholds above 0.38 drop almost nothing.
- ``max_nose_offset = 1.0``: guards that fold-back. The nose tip's offset from the eye midpoint
  along the eye line, in half eye distances, is 0 for a frontal face and passes 1 when the nose
  leaves the span between the eyes (about 50 degrees): such a face is dropped as a profile.
- ``max_roll_deg = 30``: the similarity alignment undoes roll, but a head tilted more than this is
  usually a lying or leaning pose that looks wrong in a timelapse (Facemation warns at 30 degrees).
- ``max_pitch = 0.3``: keeps ``nose_height`` within 0.3 to 0.9. Faces differ in their own
  proportions by as much as a nod does, so the window is wide and drops only strong nods: on the
  generic head (tests/detect/test_detect_frontal.py) ``nose_height`` moves from 0.56 by 0.07, 0.14
  and 0.23 at 10, 20 and 30 degrees, so the window is about -30 to +40 degrees there. It is
  calibrated on models and one person's portraits only; real series of other faces may call for
  another ``FRONTAL_NOSE_HEIGHT``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FRONTAL_NOSE_HEIGHT",
    "FrontalMeasures",
    "FrontalResult",
    "FrontalThresholds",
    "check_frontal",
    "frontal_measures",
]

FRONTAL_NOSE_HEIGHT = 0.6
"""``nose_height`` taken as level: between the ArcFace template's 0.49 and the sample portraits' 0.7."""


@dataclass(frozen=True)
class FrontalThresholds:
    """max_yaw: largest accepted yaw asymmetry ``1 - min(eye_ratio, mouth_ratio)`` in ``[0, 1]``;
    max_roll_deg: largest accepted ``|roll|`` in degrees; max_nose_offset: largest accepted
    ``|nose_offset|``; max_pitch: largest accepted ``|pitch|`` (see :class:`FrontalMeasures`)."""

    max_yaw: float = 0.35
    max_roll_deg: float = 30.0
    max_nose_offset: float = 1.0
    max_pitch: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_yaw <= 1.0:
            raise ValueError(f"max_yaw must be in [0, 1], got {self.max_yaw}")
        if not 0.0 <= self.max_roll_deg <= 180.0:
            raise ValueError(f"max_roll_deg must be in [0, 180], got {self.max_roll_deg}")
        if self.max_nose_offset <= 0.0:
            raise ValueError(f"max_nose_offset must be positive, got {self.max_nose_offset}")
        if not 0.0 <= self.max_pitch <= 1.0:
            raise ValueError(f"max_pitch must be in [0, 1], got {self.max_pitch}")


@dataclass(frozen=True)
class FrontalMeasures:
    """eye_ratio, mouth_ratio: ``min / max`` of the nose-to-eye and nose-to-mouth-corner distances;
    yaw: ``1 - min(eye_ratio, mouth_ratio)``; roll_deg: eye-line angle, counter-clockwise positive;
    nose_offset: signed offset of the nose tip from the eye midpoint along the eye line, in half eye
    distances (0 frontal, beyond +-1 in profile); nose_height: the nose tip's distance from the eye
    line over the mouth's, across the eye line; pitch: ``nose_height - FRONTAL_NOSE_HEIGHT``
    (positive: looking down)."""

    eye_ratio: float
    mouth_ratio: float
    yaw: float
    roll_deg: float
    nose_offset: float
    nose_height: float = FRONTAL_NOSE_HEIGHT
    pitch: float = 0.0


@dataclass(frozen=True)
class FrontalResult:
    """keep: whether the face passes; reason: why it was dropped (None when kept); measures: the
    measured values the decision was made on."""

    keep: bool
    reason: str | None
    measures: FrontalMeasures


def _ratio(a: float, b: float) -> float:
    hi = max(a, b)
    return min(a, b) / hi if hi > 0 else 0.0


def frontal_measures(landmarks: np.ndarray | Sequence[Sequence[float]]) -> FrontalMeasures:
    """Yaw and roll measures of one face: ``landmarks`` ``(5, 2)`` pixel ``(x, y)`` in MTCNN order
    (eye_left, eye_right, nose, mouth_left, mouth_right)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), got {lm.shape}")
    eye_l, eye_r, nose, mouth_l, mouth_r = lm
    eye_ratio = _ratio(float(np.linalg.norm(nose - eye_l)), float(np.linalg.norm(nose - eye_r)))
    mouth_ratio = _ratio(float(np.linalg.norm(nose - mouth_l)), float(np.linalg.norm(nose - mouth_r)))
    eye_vec = eye_r - eye_l
    dx, dy = eye_vec
    # y grows downwards, so a counter-clockwise tilt on screen raises the right eye (dy < 0).
    roll = math.degrees(math.atan2(-dy, dx))
    half = 0.5 * float(np.linalg.norm(eye_vec))
    eye_mid = 0.5 * (eye_l + eye_r)
    if half > 0:
        along_eyes = eye_vec / (2.0 * half)
        offset = float(np.dot(nose - eye_mid, along_eyes)) / half
        across = np.array([-along_eyes[1], along_eyes[0]])  # towards the mouth (y grows downwards)
        mouth_depth = float(np.dot(0.5 * (mouth_l + mouth_r) - eye_mid, across))
        height = float(np.dot(nose - eye_mid, across)) / mouth_depth if mouth_depth > 0 else math.inf
    else:  # both eyes on one point: no frontal face
        offset = height = math.inf
    yaw = 1.0 - min(eye_ratio, mouth_ratio)
    return FrontalMeasures(eye_ratio, mouth_ratio, yaw, roll, offset, height, height - FRONTAL_NOSE_HEIGHT)


def check_frontal(
    landmarks: np.ndarray | Sequence[Sequence[float]], thresholds: FrontalThresholds = FrontalThresholds()
) -> FrontalResult:
    """Keep or drop one face.

    Args:
        landmarks: ``(5, 2)`` pixel ``(x, y)``, MTCNN order.
        thresholds: the limits of each test.

    Returns:
        the decision; its reason names the failed test with its measured value and threshold, e.g.
        ``"yaw 0.42 > 0.35 (eye ratio 0.58, mouth ratio 0.61)"``.
    """
    m = frontal_measures(landmarks)
    reasons = []
    if m.yaw > thresholds.max_yaw:
        reasons.append(
            f"yaw {m.yaw:.2f} > {thresholds.max_yaw:.2f} (eye ratio {m.eye_ratio:.2f}, "
            f"mouth ratio {m.mouth_ratio:.2f})"
        )
    if abs(m.nose_offset) > thresholds.max_nose_offset:
        reasons.append(
            f"profile: nose offset {m.nose_offset:+.2f} outside "
            f"+-{thresholds.max_nose_offset:.2f} half eye distances"
        )
    if abs(m.roll_deg) > thresholds.max_roll_deg:
        reasons.append(f"roll {m.roll_deg:.1f} deg exceeds +-{thresholds.max_roll_deg:.1f} deg")
    if not abs(m.pitch) <= thresholds.max_pitch:
        way = "looking down" if m.pitch > 0 else "looking up"
        reasons.append(
            f"pitch {m.pitch:+.2f} outside +-{thresholds.max_pitch:.2f} ({way}: nose at "
            f"{m.nose_height:.2f} of the way from the eyes to the mouth)"
        )
    return FrontalResult(keep=not reasons, reason="; ".join(reasons) or None, measures=m)
