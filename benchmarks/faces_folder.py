"""End-to-end speed of `alignimate faces` on 12 MP photos, and how much of it is face detection.

    python benchmarks/faces_folder.py                # 100 photos of 4000x3000
    python benchmarks/faces_folder.py --count 20     # quicker

The photos are the sample face frames scaled to 4000x3000 (face about 500 px wide), with a
random similarity on top, JPEG quality 92, in a temporary folder. The run uses a fresh detection
cache, so every photo is detected. A second pass times the face detector alone on the same
photos (decode included) to show what dominates. Target: at least 1 photo/s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alignimate import __version__
from alignimate.detect.faces import FaceDetector
from alignimate.io import read_image
from alignimate.pipeline.face_timeline import make_face_timeline

FACES = Path(__file__).resolve().parents[1] / "sample_data" / "faces"
SIZE_WH = (4000, 3000)


def make_photos(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    sources = sorted(FACES.glob("face_*.jpg"))
    paths = []
    for k in range(count):
        with Image.open(sources[k % len(sources)]) as image:
            scale = SIZE_WH[1] / image.height
            big = image.convert("RGB").resize(
                (round(image.width * scale), SIZE_WH[1]), Image.Resampling.BICUBIC
            )
        canvas = Image.new("RGB", SIZE_WH, (110, 110, 110))
        canvas.paste(big, ((SIZE_WH[0] - big.width) // 2, 0))
        canvas = canvas.rotate(rng.uniform(-5, 5), resample=Image.Resampling.BILINEAR)
        path = folder / f"photo_{k:04d}.jpg"
        canvas.save(path, quality=92)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = make_photos(folder, args.count)
        start = time.perf_counter()
        result = make_face_timeline(
            folder, Path(tmp) / "timeline.mp4", cache_dir=Path(tmp) / "cache", device="cpu", caption="none"
        )
        total = time.perf_counter() - start
        detector = FaceDetector()
        start = time.perf_counter()
        for path in paths:
            detector.detect([read_image(path)])
        detection = time.perf_counter() - start
    n = len(paths)
    versions = f"alignimate {__version__} | torch {torch.__version__}"
    print(f"date {date.today()} | {versions} | {platform.machine()}, {torch.get_num_threads()} torch threads")
    print(f"kept {len(result.aligned)}/{n}\n")
    print("| what | seconds | photos/s |")
    print("|---|---:|---:|")
    print(f"| alignimate faces, end to end (fresh cache) | {total:.1f} | {n / total:.2f} |")
    print(
        f"| of which: decode + face detection alone (same photos) | {detection:.1f} | {n / detection:.2f} |"
    )
    print(f"\ndetection share of the end-to-end time: {detection / total:.0%}")


if __name__ == "__main__":
    main()
