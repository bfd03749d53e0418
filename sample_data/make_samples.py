"""Regenerate the committed sample photos and their ground truth.

Run ``python sample_data/make_samples.py`` from the repository root (or pass ``--out DIR``
to write somewhere else, e.g. to check that a rerun is byte-identical). The script is a
development tool: it uses numpy, OpenCV, Pillow and scikit-image, and deliberately does not
import ``alignimate`` so that the samples stay independent of the code they test.

Geometry follows docs/conventions.md: ``frame_H_source`` maps source pixel centres ``(x, y)``
(``(0, 0)`` = centre of the top-left pixel) to frame pixel coordinates, and every frame is
rendered with ``cv2.warpPerspective(source, frame_H_source, (w, h))``, which uses exactly that
convention. See sample_data/README.md for the meaning of every JSON field.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from PIL import Image

__all__ = ["main", "make_faces", "make_scenes"]

SEED = 20240107
JPEG_QUALITY = 90
EXIF_IFD = 0x8769
EXIF_DATETIME_ORIGINAL = 36867

# Five landmarks on skimage.data.astronaut, measured by hand on 10-24x magnified crops
# (iris centres, lowest point of the nose tip, outer junction of the lips). "left" means the
# left side of the *image* (the subject's right), as in MTCNN/RetinaFace outputs.
ASTRONAUT_LANDMARKS: dict[str, tuple[float, float]] = {
    "left_eye": (202.5, 100.5),
    "right_eye": (246.0, 102.5),
    "nose": (224.0, 127.5),
    "mouth_left": (202.5, 139.5),
    "mouth_right": (244.5, 140.5),
}
# Hair, forehead and chin: this box must stay inside every face frame (source pixels, x0 y0 x1 y1).
ASTRONAUT_HEAD_BOX = (145.0, 5.0, 305.0, 195.0)
# Soft ellipse around head and shoulders that keeps the portrait when its background is replaced.
ASTRONAUT_KEEP_ELLIPSE = {"centre": (226.0, 235.0), "axes": (170.0, 235.0), "feather": 0.08}

# (h, w) per face frame: different sizes and aspect ratios, short side >= 480.
FACE_CANVAS_SIZES: list[tuple[int, int]] = [
    (640, 480), (480, 640), (600, 600), (720, 540), (540, 720), (640, 512), (512, 640),
    (560, 700), (700, 560), (600, 800), (800, 600), (500, 500), (660, 520), (520, 660),
]  # fmt: skip
FACE_BACKGROUND_KINDS = ("solid", "linear_gradient", "noise_texture", "radial_gradient")
FACE_FIRST_DATE = dt.datetime(2024, 1, 7, 9, 0, 0)

SCENE_FRAME_SIZE = (360, 480)  # (h, w)
SCENE_COUNT = 10
SCENE_HOMOGRAPHY_FRAMES = (3, 6, 9)
# Frame 0 shows the centre of the rocket photo magnified by this factor, which leaves enough
# source around it that no frame ever samples outside the photo (no black or mirrored borders).
SCENE_REFERENCE_ZOOM = 1.25
SCENE_FIRST_DATE = dt.datetime(2024, 3, 1, 12, 0, 0)


# ----------------------------------------------------------------------------- small helpers


def to_float(image_u8: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 in [0, 1]."""
    return image_u8.astype(np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float (H, W, 3) in [0, 1] -> rounded uint8."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def similarity_about(centre: tuple[float, float], angle_deg: float, scale: float) -> np.ndarray:
    """3x3 similarity: rotate by ``angle_deg`` (counter-clockwise on screen) and scale about ``centre``."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    cx, cy = centre
    return np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy], [0.0, 0.0, 1.0]])


def translation(tx: float, ty: float) -> np.ndarray:
    """3x3 translation by ``(tx, ty)`` pixels."""
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def apply_h(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 3x3 matrix (with the projective division)."""
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ H.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def warp(image: np.ndarray, dst_H_src: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Render ``image`` into a frame of ``size_hw``; outside the source is 0 (bilinear)."""
    h, w = size_hw
    return cv2.warpPerspective(
        image, dst_H_src, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def box_corners(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """(4, 2) corners of an axis-aligned box."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def round_matrix(H: np.ndarray) -> list[list[float]]:
    """Matrix as nested lists, normalised to H[2, 2] = 1 and rounded so the JSON is stable."""
    return [[round(float(v), 10) for v in row] for row in H / H[2, 2]]


def rounded(value: float, digits: int = 6) -> float:
    """Round a float for the JSON (stable text, no float noise)."""
    return round(float(value), digits)


# ----------------------------------------------------------------------------- photometry


def draw_photometry(rng: np.random.Generator) -> dict[str, object]:
    """Random lighting change: gain, bias, gamma, per-channel colour cast and sensor noise."""
    return {
        "gain": rounded(rng.uniform(0.7, 1.3), 4),
        "bias": rounded(rng.uniform(-0.05, 0.05), 4),
        "gamma": rounded(rng.uniform(0.8, 1.25), 4),
        "colour_cast": [rounded(v, 4) for v in rng.uniform(0.92, 1.08, size=3)],
        "noise_sigma": rounded(rng.uniform(0.004, 0.012), 4),
    }


def apply_lighting(image: np.ndarray, photometry: dict[str, object]) -> np.ndarray:
    """``clip(gain * cast_c * x + bias, 0, 1) ** gamma`` on a float RGB image (no noise)."""
    cast = np.asarray(photometry["colour_cast"], dtype=np.float32)
    lit = np.clip(float(photometry["gain"]) * cast * image + float(photometry["bias"]), 0.0, 1.0)
    return lit ** float(photometry["gamma"])


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sensor noise, clipped to [0, 1]."""
    noise = rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return np.clip(image + noise, 0.0, 1.0)


# ----------------------------------------------------------------------------- backgrounds


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A muted random RGB colour as float32 (3,)."""
    return rng.uniform(0.1, 0.9, size=3).astype(np.float32)


def make_background(kind: str, size_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A float32 (h, w, 3) background of the given kind (solid, gradients or smooth noise)."""
    h, w = size_hw
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    first, second = random_colour(rng), random_colour(rng)
    if kind == "solid":
        return np.broadcast_to(first, (h, w, 3)).copy()
    if kind == "linear_gradient":
        angle = rng.uniform(0.0, 2.0 * math.pi)
        t = (xs - w / 2) * math.cos(angle) + (ys - h / 2) * math.sin(angle)
        t = (t - t.min()) / (t.max() - t.min())
    elif kind == "radial_gradient":
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        t = np.hypot(xs - cx, ys - cy)
        t = t / t.max()
    elif kind == "noise_texture":
        coarse = rng.uniform(0.0, 1.0, size=(max(h // 40, 2), max(w // 40, 2))).astype(np.float32)
        fine = rng.uniform(0.0, 1.0, size=(max(h // 8, 2), max(w // 8, 2))).astype(np.float32)
        t = 0.75 * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        t += 0.25 * cv2.resize(fine, (w, h), interpolation=cv2.INTER_CUBIC)
        t = np.clip(t, 0.0, 1.0)
    else:
        raise ValueError(f"kind: unknown background kind {kind!r}")
    return (1.0 - t)[..., None] * first + t[..., None] * second


def keep_ellipse_alpha(size_hw: tuple[int, int]) -> np.ndarray:
    """float32 (h, w) alpha of the astronaut photo: 1 inside the head-and-shoulders ellipse, soft edge."""
    h, w = size_hw
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    (cx, cy), (ax, ay) = ASTRONAUT_KEEP_ELLIPSE["centre"], ASTRONAUT_KEEP_ELLIPSE["axes"]
    feather = float(ASTRONAUT_KEEP_ELLIPSE["feather"])
    radius = np.sqrt(((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2)
    return np.clip((1.0 - radius) / feather, 0.0, 1.0)


# ----------------------------------------------------------------------------- file output


def save_jpeg(path: Path, image: np.ndarray, when: dt.datetime) -> None:
    """Save float RGB as JPEG (quality 90) with EXIF DateTimeOriginal = ``when``."""
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[EXIF_DATETIME_ORIGINAL] = when.strftime("%Y:%m:%d %H:%M:%S")
    Image.fromarray(to_uint8(image)).save(path, format="JPEG", quality=JPEG_QUALITY, optimize=True, exif=exif)


def write_json(path: Path, payload: dict[str, object]) -> None:
    """Write JSON with a stable layout: 2-space indent, innermost number lists on one line."""
    text = json.dumps(payload, indent=2)
    text = re.sub(r"\[[^\[\]{}\"]*\]", lambda match: one_line_list(match.group(0)), text)
    path.write_text(text + "\n", encoding="utf-8")


def one_line_list(text: str) -> str:
    """Collapse a multi-line JSON list of scalars onto one line."""
    return "[" + " ".join(text[1:-1].split()) + "]"


# ----------------------------------------------------------------------------- faces


def place_face(
    rng: np.random.Generator, size_hw: tuple[int, int], angle_deg: float, scale: float, margin: float = 16.0
) -> np.ndarray:
    """frame_H_source: rotate/scale the portrait, then put its head box anywhere fully inside the frame."""
    h, w = size_hw
    head = box_corners(*ASTRONAUT_HEAD_BOX)
    centre = head.mean(axis=0)
    turned = similarity_about((float(centre[0]), float(centre[1])), angle_deg, scale)
    corners = apply_h(turned, head)
    low = np.array([margin, margin]) - corners.min(axis=0)
    high = np.array([w - 1 - margin, h - 1 - margin]) - corners.max(axis=0)
    if np.any(high < low):
        raise ValueError(f"size_hw: head box does not fit a {size_hw} frame at scale {scale}")
    shift = rng.uniform(low, high)
    return translation(float(shift[0]), float(shift[1])) @ turned


def render_face_frame(
    source: np.ndarray,
    frame_H_source: np.ndarray,
    size_hw: tuple[int, int],
    background: np.ndarray,
    replace_background: bool,
) -> np.ndarray:
    """Composite the warped portrait over ``background``; optionally keep only the soft ellipse."""
    source_alpha = (
        keep_ellipse_alpha(source.shape[:2]) if replace_background else np.ones(source.shape[:2], np.float32)
    )
    portrait = warp(source, frame_H_source, size_hw)
    alpha = warp(source_alpha, frame_H_source, size_hw)[..., None]
    return alpha * portrait + (1.0 - alpha) * background


def face_frame_record(
    index: int, rng: np.random.Generator, source: np.ndarray, out_dir: Path
) -> dict[str, object]:
    """Render, save and describe face frame ``index``."""
    size_hw = FACE_CANVAS_SIZES[index]
    angle_deg = rounded(rng.uniform(-12.0, 12.0), 4)
    scale = rounded(rng.uniform(0.8, 1.25), 4)
    frame_H_source = place_face(rng, size_hw, angle_deg, scale)
    background_kind = FACE_BACKGROUND_KINDS[index % len(FACE_BACKGROUND_KINDS)]
    replace_background = index % 3 == 1
    photometry = draw_photometry(rng)
    background = make_background(background_kind, size_hw, rng)
    frame = render_face_frame(source, frame_H_source, size_hw, background, replace_background)
    frame = add_noise(apply_lighting(frame, photometry), float(photometry["noise_sigma"]), rng)
    when = FACE_FIRST_DATE + dt.timedelta(weeks=index, minutes=int(rng.integers(0, 600)))
    name = f"face_{index:02d}.jpg"
    save_jpeg(out_dir / name, frame, when)
    landmarks_source = np.array(list(ASTRONAUT_LANDMARKS.values()))
    landmarks = apply_h(frame_H_source, landmarks_source)
    return {
        "file": name,
        "size": list(size_hw),
        "expected": "kept",
        "datetime": when.isoformat(),
        "frame_H_source": round_matrix(frame_H_source),
        "angle_deg": angle_deg,
        "scale": scale,
        **photometry,
        "background": background_kind,
        "background_replaced": replace_background,
        "landmarks": {
            key: [rounded(x, 3), rounded(y, 3)]
            for key, (x, y) in zip(ASTRONAUT_LANDMARKS, landmarks, strict=True)
        },
    }


def no_face_record(out_dir: Path, when: dt.datetime) -> dict[str, object]:
    """A photo without a face (skimage coffee, CC0) that the face pipeline must drop."""
    rng = np.random.default_rng([SEED, 99])
    photometry = draw_photometry(rng)
    frame = add_noise(
        apply_lighting(to_float(skimage.data.coffee()), photometry), float(photometry["noise_sigma"]), rng
    )
    name = "no_face_01.jpg"
    save_jpeg(out_dir / name, frame, when)
    return {
        "file": name,
        "size": list(frame.shape[:2]),
        "expected": "dropped",
        "reason": "no face",
        "source": "skimage.data.coffee",
        "datetime": when.isoformat(),
        **photometry,
    }


def make_faces(out_dir: Path) -> dict[str, object]:
    """Write the face timeline (14 frames + 1 distractor) and faces/ground_truth.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = to_float(skimage.data.astronaut())
    frames = [
        face_frame_record(i, np.random.default_rng([SEED, i]), source, out_dir)
        for i in range(len(FACE_CANVAS_SIZES))
    ]
    # Dated between frames 6 and 7 so that sorting by date puts it inside the series.
    distractor_date = FACE_FIRST_DATE + dt.timedelta(weeks=6, days=3, hours=2)
    frames.append(no_face_record(out_dir, distractor_date))
    payload = {
        "source": "skimage.data.astronaut",
        "source_size": list(source.shape[:2]),
        "convention": "frame = cv2.warpPerspective(source, frame_H_source, (w, h)); pixel centres, see "
        "docs/conventions.md",
        "landmarks_source": {key: list(point) for key, point in ASTRONAUT_LANDMARKS.items()},
        "head_box_source": list(ASTRONAUT_HEAD_BOX),
        "frames": frames,
    }
    write_json(out_dir / "ground_truth.json", payload)
    return payload


# ----------------------------------------------------------------------------- scenes


def scene_reference_H_source(source_hw: tuple[int, int]) -> np.ndarray:
    """Frame 0 (the reference) shows the centre of the source magnified by SCENE_REFERENCE_ZOOM."""
    h, w = SCENE_FRAME_SIZE
    sh, sw = source_hw
    z = SCENE_REFERENCE_ZOOM
    # Centre of the source -> centre of the frame, scaled by z.
    return (
        translation((w - 1) / 2, (h - 1) / 2)
        @ np.diag([z, z, 1.0])
        @ translation(-(sw - 1) / 2, -(sh - 1) / 2)
    )


def inside_source(frame_H_source: np.ndarray, source_hw: tuple[int, int], margin: float = 1.0) -> bool:
    """True when every frame pixel samples strictly inside the source (no padding needed)."""
    h, w = SCENE_FRAME_SIZE
    sh, sw = source_hw
    corners = box_corners(-0.5, -0.5, w - 0.5, h - 0.5)
    pulled = apply_h(np.linalg.inv(frame_H_source), corners)
    return bool(
        np.all(pulled[:, 0] >= margin)
        and np.all(pulled[:, 0] <= sw - 1 - margin)
        and np.all(pulled[:, 1] >= margin)
        and np.all(pulled[:, 1] <= sh - 1 - margin)
    )


def draw_scene_motion(rng: np.random.Generator, homography: bool) -> tuple[np.ndarray, dict[str, object]]:
    """Random frame_H_reference: similarity about the frame centre, a shift, optionally perspective jitter."""
    h, w = SCENE_FRAME_SIZE
    angle_deg = rounded(rng.uniform(-10.0, 10.0), 4)
    scale = rounded(rng.uniform(0.9, 1.1), 4)
    shift = [rounded(rng.uniform(-0.08, 0.08) * w, 3), rounded(rng.uniform(-0.08, 0.08) * h, 3)]
    similarity = translation(*shift) @ similarity_about(((w - 1) / 2, (h - 1) / 2), angle_deg, scale)
    params: dict[str, object] = {"angle_deg": angle_deg, "scale": scale, "shift_px": shift}
    if not homography:
        return similarity, params
    corners = box_corners(0.0, 0.0, w - 1.0, h - 1.0)
    offsets = np.round(rng.uniform(-0.03, 0.03, size=(4, 2)) * np.array([w, h]), 3)
    moved = apply_h(similarity, corners) + offsets
    H = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32)).astype(np.float64)
    params["perspective_corner_offsets_px"] = offsets.tolist()
    return H, params


def scene_frame_record(
    index: int,
    source: np.ndarray,
    reference_H_source: np.ndarray,
    out_dir: Path,
) -> dict[str, object]:
    """Render, save and describe scene frame ``index`` (frame 0 is the reference itself)."""
    rng = np.random.default_rng([SEED, 1000 + index])
    homography = index in SCENE_HOMOGRAPHY_FRAMES
    if index == 0:
        frame_H_reference, params = np.eye(3), {"angle_deg": 0.0, "scale": 1.0, "shift_px": [0.0, 0.0]}
    else:
        # Redraw until the frame lies inside the photo; the seeded generator keeps this deterministic.
        while True:
            frame_H_reference, params = draw_scene_motion(rng, homography)
            if inside_source(frame_H_reference @ reference_H_source, source.shape[:2]):
                break
    frame_H_source = frame_H_reference @ reference_H_source
    photometry = draw_photometry(rng)
    frame = warp(source, frame_H_source, SCENE_FRAME_SIZE)
    frame = add_noise(apply_lighting(frame, photometry), float(photometry["noise_sigma"]), rng)
    when = SCENE_FIRST_DATE + dt.timedelta(days=index)
    name = f"scene_{index:02d}.jpg"
    save_jpeg(out_dir / name, frame, when)
    return {
        "file": name,
        "size": list(SCENE_FRAME_SIZE),
        "model": "homography" if homography else "similarity",
        "datetime": when.isoformat(),
        "frame_H_reference": round_matrix(frame_H_reference),
        "frame_H_source": round_matrix(frame_H_source),
        **params,
        **photometry,
    }


def make_scenes(out_dir: Path) -> dict[str, object]:
    """Write the whole-image registration set (10 frames) and scenes/ground_truth.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = to_float(skimage.data.rocket())
    reference_H_source = scene_reference_H_source(source.shape[:2])
    frames = [scene_frame_record(i, source, reference_H_source, out_dir) for i in range(SCENE_COUNT)]
    payload = {
        "source": "skimage.data.rocket",
        "source_size": list(source.shape[:2]),
        "frame_size": list(SCENE_FRAME_SIZE),
        "reference": frames[0]["file"],
        "reference_H_source": round_matrix(reference_H_source),
        "convention": "frame = cv2.warpPerspective(source, frame_H_source, (w, h)); "
        "frame_H_source = frame_H_reference @ reference_H_source; pixel centres, see docs/conventions.md",
        "frames": frames,
    }
    write_json(out_dir / "ground_truth.json", payload)
    return payload


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``python sample_data/make_samples.py [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    args = parser.parse_args(argv)
    make_faces(args.out / "faces")
    make_scenes(args.out / "scenes")


if __name__ == "__main__":
    main()
