"""End-to-end speed of `alignimate register --mode pixels` on 12 MP JPEGs, beside the I/O floor.

    python benchmarks/register_folder.py                 # 100 photos of 4000x3000
    python benchmarks/register_folder.py --count 20      # quicker
    python benchmarks/register_folder.py --repeat 3      # floor and register 3 times, medians

The photos are made from the sample scenes (each frame upscaled to 4000x3000 with a random
similarity on top, JPEG quality 92) in a temporary folder. The floor is the time to decode each
photo fully with Pillow and encode it again as JPEG (quality 95, as the aligned frames are
written): any tool that reads and rewrites every photo pays it. Prints photos per second for both
and their ratio (target: register within 2x of the floor). The floor runs on one thread; register
uses every core (torch's threads, and the frame writer's worker threads), so say which were used:
``OMP_NUM_THREADS=1`` limits torch to one thread per worker.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alignimate import __version__, align_folder
from alignimate.pipeline.frame_writer import default_workers

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


def io_floor(paths: list[Path]) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of decoding and re-encoding every photo."""
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        with Image.open(path) as image:
            pixels = image.convert("RGB")
            pixels.load()
        pixels.save(io.BytesIO(), format="JPEG", quality=95)
    return time.perf_counter() - start, time.process_time() - cpu


def time_register(folder: Path, out: Path, size: int) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (all threads: a machine shared with other jobs inflates wall time, not
    this) and the number of aligned photos."""
    start, cpu = time.perf_counter(), time.process_time()
    result = align_folder(folder, out, model="similarity", size=size, device="cpu")
    return time.perf_counter() - start, time.process_time() - cpu, len(result.aligned)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=512, help="working resolution of register")
    parser.add_argument("--repeat", type=int, default=1, help="runs of floor and register; medians shown")
    args = parser.parse_args()
    floors, ours, floor_cpus, our_cpus = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        t0 = time.perf_counter()
        paths = make_photos(folder, args.count)
        print(f"made {len(paths)} photos of {SIZE_WH[0]}x{SIZE_WH[1]} in {time.perf_counter() - t0:.0f} s")
        for run in range(args.repeat):
            seconds, cpu = io_floor(paths)
            floors.append(seconds)
            floor_cpus.append(cpu)
            seconds, cpu, aligned = time_register(folder, Path(tmp) / f"aligned-{run}", args.size)
            ours.append(seconds)
            our_cpus.append(cpu)
            ratio = seconds / floors[-1]
            print(
                f"run {run + 1}: floor {floors[-1]:.1f} s (cpu {floor_cpus[-1]:.1f} s), "
                f"register {seconds:.1f} s (cpu {cpu:.1f} s), ratio {ratio:.2f}"
            )
    n = len(paths)
    floor, mine = statistics.median(floors), statistics.median(ours)
    floor_cpu, my_cpu = statistics.median(floor_cpus), statistics.median(our_cpus)
    versions = f"alignimate {__version__} | torch {torch.__version__}"
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    threads = f"{torch.get_num_threads()} torch threads (OMP_NUM_THREADS={omp})"
    print(f"\ndate {date.today()} | {versions} | {platform.machine()}, {os.cpu_count()} cores, ", end="")
    print(f"{threads}, {default_workers()} frame workers | aligned {aligned}/{n}", end="")
    print(f" | median of {args.repeat}\n" if args.repeat > 1 else "\n")
    print("| what | seconds | photos/s | CPU seconds |")
    print("|---|---:|---:|---:|")
    print(f"| Pillow decode + JPEG encode (floor) | {floor:.1f} | {n / floor:.2f} | {floor_cpu:.1f} |")
    name = f"alignimate register --mode pixels --size {args.size}"
    print(f"| {name} | {mine:.1f} | {n / mine:.2f} | {my_cpu:.1f} |")
    print(f"\nregister / floor time ratio: {mine / floor:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
