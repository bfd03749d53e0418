"""MTCNN face detection on 12 MP photos: seconds per photo and detection rate per working resolution.

    python benchmarks/face_detection.py                       # 640, 960, 1280 and full resolution
    python benchmarks/face_detection.py --sizes 960 --threads 2

Each sample face frame (sample_data/faces) is placed in a 4000x3000 canvas twice: scaled up so the
face is large (about 500 px wide), and at its own size so the face is small (90-130 px). A face
counts as found when a detection's worst landmark lies within 15% of the eye distance of the
ground truth; 'landmark error' is the median of that worst error over the eye distance.
Full resolution runs on a subset only (it takes seconds per photo).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alignimate.detect.faces import FaceDetector

FACES = Path(__file__).resolve().parents[1] / "sample_data" / "faces"
LANDMARKS = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
CANVAS_HW = (3000, 4000)
FULL_RES_SUBSET = {"face_00.jpg", "face_05.jpg", "face_10.jpg", "no_face_01.jpg"}


def large_face(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo scaled to the canvas height, centred (cropped or padded with grey)."""
    h, w = CANVAS_HW
    s = h / image.shape[0]
    width = round(image.shape[1] * s)
    big = np.asarray(Image.fromarray(image).resize((width, h), Image.Resampling.BICUBIC))
    canvas = np.full((h, w, 3), 110, np.uint8)
    x0 = (w - width) // 2
    if x0 >= 0:
        canvas[:, x0 : x0 + width] = big
    else:
        canvas[:] = big[:, -x0 : -x0 + w]
    # Pixel-centre convention: x' = (x + 0.5) * s - 0.5.
    return canvas, (landmarks + 0.5) * s - 0.5 + np.array([x0, 0])


def small_face(image: np.ndarray, landmarks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo pasted at its own size somewhere in a grey canvas."""
    canvas = np.full((*CANVAS_HW, 3), 110, np.uint8)
    x0, y0 = 300 + 700 * (k % 4), 300 + 600 * (k % 3)
    canvas[y0 : y0 + image.shape[0], x0 : x0 + image.shape[1]] = image
    return canvas, landmarks + np.array([x0, y0])


def build_cases() -> list[tuple[str, str, np.ndarray, np.ndarray | None]]:
    truth = json.loads((FACES / "ground_truth.json").read_text())
    cases = []
    for k, frame in enumerate(truth["frames"]):
        image = np.asarray(Image.open(FACES / frame["file"]).convert("RGB"))
        if frame["expected"] != "kept":
            cases.append(("no face", frame["file"], large_face(image, np.zeros((5, 2)))[0], None))
            continue
        points = np.array([frame["landmarks"][name] for name in LANDMARKS])
        cases.append(("large", frame["file"], *large_face(image, points)))
        cases.append(("small", frame["file"], *small_face(image, points, k)))
    return cases


def measure(detector: FaceDetector, cases: list, full_resolution: bool) -> dict[str, dict]:
    stats: dict[str, dict] = {}
    for kind, name, image, truth in cases:
        if full_resolution and name not in FULL_RES_SUBSET:
            continue
        start = time.perf_counter()
        faces = detector.detect([image])[0]
        elapsed = time.perf_counter() - start
        s = stats.setdefault(kind, {"n": 0, "found": 0, "false": 0, "seconds": [], "error": []})
        s["n"] += 1
        s["seconds"].append(elapsed)
        if truth is None:
            s["false"] += len(faces)
            continue
        eye_distance = np.linalg.norm(truth[1] - truth[0])
        errors = [np.linalg.norm(f.keypoints - truth, axis=1).max() / eye_distance for f in faces]
        good = [e for e in errors if e < 0.15]
        s["found"] += bool(good)
        s["false"] += len(faces) - bool(good)
        if good:
            s["error"].append(min(good))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="640,960,1280,full", help="working long sides; 'full' = none")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-refine", action="store_true", help="skip the full-resolution refinement crop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = build_cases()
    h, w = CANVAS_HW
    print(f"{len(cases)} photos of {w}x{h}, torch {torch.__version__}, {args.threads} threads")
    print(
        "\n| working size | faces | photos | found | false detections | s/photo (median) | landmark error |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for size in args.sizes.split(","):
        working = None if size == "full" else int(size)
        detector = FaceDetector(working, refine=not args.no_refine)
        detector.detect([np.zeros((64, 64, 3), np.uint8)])  # warm-up
        for kind, s in measure(detector, cases, working is None).items():
            error = statistics.median(s["error"]) if s["error"] else float("nan")
            found = "-" if kind == "no face" else str(s["found"])
            print(
                f"| {size} | {kind} | {s['n']} | {found} | {s['false']} | "
                f"{statistics.median(s['seconds']):.2f} | {error:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
