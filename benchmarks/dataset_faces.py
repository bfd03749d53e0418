"""Speed of `alignimate dataset faces` on 12 MP photos: each stage alone, and the whole job on the
local engine and under Ray Data (docs/scale.md).

    python benchmarks/dataset_faces.py                        # stages, local and Ray, 3 repeats
    python benchmarks/dataset_faces.py --engines local --repeat 1 --large 40

The photos are 4000x3000 JPEGs (quality 92) made from the sample faces: a face upscaled to a random
height of 35 to 90 % of the photo on a sample scene, both covered with sensor-like noise (sigma 8
grey levels), so that each file is 3 to 4 MB and decodes as slowly as a real phone photo (smooth
upscaled images compress to a fraction of that and decode several times faster).

Stages: every stage of the job run alone over the photos, one batch of 8 at a time, on one thread
(torch too): photos per second per core. Engines: the job run end to end on ``--small`` and on
``--large`` photos; the per-photo throughput is ``(large - small) / (t_large - t_small)``, which
leaves out what a run pays once (opening the folder, starting the actor pool, loading the models),
and that fixed cost is reported beside it. The default 16 / 128 photos keep the difference long: on
64, a second more or less in the short Ray run (its actors' start varies by several) moves the rate
by a tenth. Ray is started once (``ray.init``, timed apart) and
reused by every run. Each measurement is repeated ``--repeat`` times; medians are printed, with the
load average before and after, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alignimate import __version__
from alignimate.pipeline.dataset_faces import DatasetSettings, _Plan, make_face_dataset, pipeline_stages
from alignimate.pipeline.dataset_stages import ReadFile, shard_bounds
from alignimate.pipeline.stages import batches_of

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"
SIZE_WH = (4000, 3000)


def make_photos(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    faces = sorted((SAMPLES / "faces").glob("face_*.jpg"))
    scenes = sorted((SAMPLES / "scenes").glob("scene_*.jpg"))
    paths = []
    for k in range(count):
        with Image.open(scenes[k % len(scenes)]) as scene:
            canvas = scene.convert("RGB").resize(SIZE_WH, Image.Resampling.BICUBIC)
        with Image.open(faces[k % len(faces)]) as face:
            side = int(SIZE_WH[1] * rng.uniform(0.35, 0.9))
            big = face.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        x = int(rng.uniform(0, SIZE_WH[0] - side))
        y = int(rng.uniform(0, SIZE_WH[1] - side))
        canvas.paste(big, (x, y))
        pixels = np.asarray(canvas).astype(np.int16) + rng.normal(0, 8, (SIZE_WH[1], SIZE_WH[0], 3))
        path = folder / f"photo_{k:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=92)
        paths.append(path)
    return paths


def time_stages(paths: list[Path], out: Path, device: str) -> dict[str, float]:
    """Seconds each stage took over all photos, run alone on one thread."""
    settings = DatasetSettings()
    root = paths[0].parent
    plan = _Plan(
        root=str(root),
        out=str(out),
        run="r001",
        bounds=shard_bounds([p.name for p in paths], settings.shard_size),
        known=frozenset(),
        reference=None,
        embedder_name=None,
        device=device,
    )
    stages = [ReadFile(), *pipeline_stages(settings, plan)]
    for stage in stages:
        stage.setup()
    spent: dict[str, float] = defaultdict(float)
    for batch in batches_of(({"path": str(p)} for p in paths), 8):
        for stage in stages:
            start = time.perf_counter()
            batch = stage(batch)
            spent[type(stage).__name__] += time.perf_counter() - start
    return dict(spent)


def time_job(folder: Path, out: Path, engine: str, device: str) -> float:
    start = time.perf_counter()
    result = make_face_dataset(folder, out, engine=engine, device=device)
    seconds = time.perf_counter() - start
    assert result.aligned > 0, result.summary()
    return seconds


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=16)
    parser.add_argument("--large", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--no-stages", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (detection on the GPU)")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    print(
        f"date {date.today()} | alignimate {__version__} | torch {torch.__version__} | {platform.machine()}"
    )
    print(f"cores {os.cpu_count()} | load before: {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        large, small = base / "large", base / "small"
        large.mkdir()
        small.mkdir()
        paths = make_photos(large, args.large)
        for p in paths[: args.small]:
            os.link(p, small / p.name)
        mb = statistics.median(p.stat().st_size for p in paths) / 1e6
        print(f"photos: {args.large} of {SIZE_WH[0]}x{SIZE_WH[1]}, median {mb:.1f} MB")

        if not args.no_stages:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            runs = [time_stages(paths, base / f"stages{k}", args.device) for k in range(args.repeat)]
            torch.set_num_threads(threads)
            print("\n| stage (one thread) | ms per photo | photos/s |\n|---|---:|---:|")
            total = 0.0
            for name in runs[0]:
                seconds = statistics.median(r[name] for r in runs)
                total += seconds
                print(f"| {name} | {1000 * seconds / len(paths):.0f} | {len(paths) / seconds:.1f} |")
            print(f"| all stages | {1000 * total / len(paths):.0f} | {len(paths) / total:.2f} |")

        if "ray" in engines:
            import ray

            start = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            print(f"\nray.init: {time.perf_counter() - start:.1f} s")
        print(
            "\n| engine | runs: small / large s | photos/s (marginal) | fixed s | photos/s (large, whole) |"
        )
        print("|---|---|---:|---:|---:|")
        # Engines alternate within each repeat, so that each sees the same load on a shared machine.
        pairs: dict[str, list[tuple[float, float]]] = {engine: [] for engine in engines}
        for k in range(args.repeat):
            for engine in engines:
                t_small = time_job(small, base / f"{engine}-s{k}", engine, args.device)
                t_large = time_job(large, base / f"{engine}-l{k}", engine, args.device)
                pairs[engine].append((t_small, t_large))
        for engine in engines:
            runs = pairs[engine]
            gained = args.large - args.small
            rate = statistics.median(gained / (b - a) for a, b in runs)
            fixed = statistics.median(a - args.small * (b - a) / gained for a, b in runs)
            whole = statistics.median(args.large / b for _, b in runs)
            listed = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in runs)
            print(f"| {engine} | {listed} | {rate:.2f} | {fixed:.1f} | {whole:.2f} |")
        print(f"\nload after: {load()}")


if __name__ == "__main__":
    main()
