"""End-to-end speed of `alignimate register --mode pixels` on 12 MP JPEGs, beside the I/O floor.

    python benchmarks/register_folder.py                 # 100 photos of 4000x3000
    python benchmarks/register_folder.py --count 20      # quicker

The photos are made from the sample scenes (each frame upscaled to 4000x3000 with a random
similarity on top, JPEG quality 92) in a temporary folder. The floor is the time to decode each
photo fully with Pillow and encode it again as JPEG (quality 95, as the aligned frames are
written): any tool that reads and rewrites every photo pays it. Prints photos per second for both
and their ratio (target: register within 2x of the floor).
"""

from __future__ import annotations

import argparse
import io
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alignimate import __version__, align_folder

SCENES = Path(__file__).resolve().parents[1] / "sample_data" / "scenes"
SIZE_WH = (4000, 3000)


def make_photos(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    sources = sorted(SCENES.glob("scene_*.jpg"))
    paths = []
    for k in range(count):
        with Image.open(sources[k % len(sources)]) as image:
            big = image.convert("RGB").resize(SIZE_WH, Image.Resampling.BICUBIC)
        angle = rng.uniform(-3, 3)
        big = big.rotate(
            angle, resample=Image.Resampling.BILINEAR, center=(2000 + rng.uniform(-40, 40), 1500)
        )
        path = folder / f"photo_{k:04d}.jpg"
        big.save(path, quality=92)
        paths.append(path)
    return paths


def io_floor(paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            pixels = image.convert("RGB")
            pixels.load()
        pixels.save(io.BytesIO(), format="JPEG", quality=95)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=512, help="working resolution of register")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        t0 = time.perf_counter()
        paths = make_photos(folder, args.count)
        print(f"made {len(paths)} photos of {SIZE_WH[0]}x{SIZE_WH[1]} in {time.perf_counter() - t0:.0f} s")
        floor = io_floor(paths)
        start = time.perf_counter()
        result = align_folder(folder, Path(tmp) / "aligned", model="similarity", size=args.size, device="cpu")
        ours = time.perf_counter() - start
    n = len(paths)
    versions = f"alignimate {__version__} | torch {torch.__version__}"
    print(f"\ndate {date.today()} | {versions} | {platform.machine()}, ", end="")
    print(f"{torch.get_num_threads()} torch threads | aligned {len(result.aligned)}/{n}\n")
    print("| what | seconds | photos/s |")
    print("|---|---:|---:|")
    print(f"| Pillow decode + JPEG encode (floor) | {floor:.1f} | {n / floor:.2f} |")
    print(f"| alignimate register --mode pixels --size {args.size} | {ours:.1f} | {n / ours:.2f} |")
    print(f"\nregister / floor time ratio: {ours / floor:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
