"""End-to-end speed of `alignimate register` and `alignimate apply` on 12 MP JPEGs, beside a plain
OpenCV script and the decode + encode floor, all on the same cores (issue #17).

    python benchmarks/end_to_end.py                  # 40 photos per set, 3 interleaved runs, medians
    python benchmarks/end_to_end.py --quick          # 8 photos per set, 1 run
    python benchmarks/end_to_end.py --keep /tmp/e2e  # make the photos there once, reuse them later
    python benchmarks/end_to_end.py --profile        # where a register run's seconds go, step by step

Two photo sets of 4000x3000 JPEGs are made from sample_data/scenes, each photo a view of one large
canvas moved by a known small random similarity (rotation up to 2 degrees, scale 0.97-1.03, shift up
to 60 px):

- ``smooth``: one scene upscaled (bicubic), quality 92: about 0.6 MB per photo, cheap to decode;
- ``detail``: a mosaic of the scenes at their own resolution (random scene and flips per tile) with
  fresh noise on every photo, quality 92: 3-6 MB per photo, about as much work for the JPEG codec as
  a phone photo.

Every contender runs as a subprocess of this script, start-up included; wall seconds come from the
clock and CPU seconds (user + system, all threads and processes) from
``resource.getrusage(RUSAGE_CHILDREN)`` around the run. Runs are interleaved (every contender once,
then again), and medians are reported. Contenders:

- ``register``: ``alignimate register --model similarity --crop none`` (both cores, its defaults);
- ``apply``: ``alignimate apply`` of that run's transforms.json to the same photos;
- ``floor``: a pool of 2 processes that decode every photo (``cv2.imread``) and encode it again
  (``cv2.imwrite``, quality 95, as the frames are written): what any tool that rewrites the photos pays;
- ``opencv``: what a user would write instead, a pool of 2 processes that per photo run ``imread``,
  ECC (affine, 3 pyramid levels) on a 512 px grey copy against the first photo's, ``warpAffine`` at
  full resolution and ``imwrite`` at quality 95.

Accuracy: the median over the photos of the mean distance between the photo's corners mapped by the
found matrix and by the true one, in full-resolution pixels (apply uses register's matrices).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCENES = ROOT / "sample_data" / "scenes"
SIZE_WH = (4000, 3000)
MARGIN = 200  # canvas pixels around the photos' area, so no photo shows the canvas's border
WORK_SIDE = 512  # the OpenCV script's working copy (alignimate register's default --size too)
CONTENDERS = ("floor", "opencv", "register", "apply")
TARGETS = (
    "register wall <= 1.0x opencv's, CPU <= 1.5x opencv's; apply wall <= 1.3x the floor's; "
    "--help < 0.5 s; one-photo register < 3 s"
)


# ------------------------------------------------------------------------------------------------
# photos with known motions
# ------------------------------------------------------------------------------------------------


def _canvas(kind: str, rng: np.random.Generator) -> np.ndarray:
    """The scene every photo of a set views: ``(H, W, 3)`` uint8 BGR, MARGIN larger on every side."""
    w, h = SIZE_WH[0] + 2 * MARGIN, SIZE_WH[1] + 2 * MARGIN
    scenes = [cv2.imread(str(p)) for p in sorted(SCENES.glob("scene_*.jpg"))]
    if kind == "smooth":
        return cv2.resize(scenes[0], (w, h), interpolation=cv2.INTER_CUBIC)
    th, tw = scenes[0].shape[:2]
    canvas = np.empty((math.ceil(h / th) * th, math.ceil(w / tw) * tw, 3), np.uint8)
    for y in range(0, canvas.shape[0], th):
        for x in range(0, canvas.shape[1], tw):
            tile = scenes[rng.integers(len(scenes))]
            if rng.random() < 0.5:
                tile = tile[:, ::-1]
            if rng.random() < 0.5:
                tile = tile[::-1]
            canvas[y : y + th, x : x + tw] = tile
    return canvas[:h, :w]


def _random_motion(rng: np.random.Generator) -> np.ndarray:
    """``canvas_H_photo`` (3, 3): a photo pixel to the canvas pixel it shows."""
    angle = np.deg2rad(rng.uniform(-2.0, 2.0))
    scale = rng.uniform(0.97, 1.03)
    cx, cy = (SIZE_WH[0] - 1) / 2, (SIZE_WH[1] - 1) / 2
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    tx, ty = rng.uniform(-60, 60, size=2)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    to_centre = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    back = np.array([[1.0, 0.0, cx + MARGIN + tx], [0.0, 1.0, cy + MARGIN + ty], [0.0, 0.0, 1.0]])
    return back @ rotation @ to_centre


def make_set(kind: str, folder: Path, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``count`` photos of set ``kind`` into ``folder`` (kept if already there); returns each
    photo's name and its ``canvas_H_photo``."""
    rng = np.random.default_rng([seed, 0 if kind == "smooth" else 1])
    folder.mkdir(parents=True, exist_ok=True)
    canvas = _canvas(kind, rng)
    noise = rng.normal(0.0, 6.0, (SIZE_WH[1] + 64, SIZE_WH[0] + 64, 3)).astype(np.int16)
    truth = {}
    for k in range(count):
        name = f"photo_{k:04d}.jpg"
        motion = _random_motion(rng)
        # Drawn for every photo, made or found: later motions must not depend on which photos exist.
        dy, dx = rng.integers(0, 64, size=2)
        truth[name] = motion
        path = folder / name
        if path.exists():
            continue
        photo = cv2.warpAffine(canvas, motion[:2], SIZE_WH, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        if kind == "detail":
            shifted = noise[dy : dy + SIZE_WH[1], dx : dx + SIZE_WH[0]]
            photo = np.clip(photo.astype(np.int16) + shifted, 0, 255).astype(np.uint8)
        cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return truth


def corner_error(found: np.ndarray, true: np.ndarray) -> float:
    """Mean distance (pixels) between the photo's corners mapped by two ``ref_H_photo`` matrices."""
    w, h = SIZE_WH
    corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [-0.5, h - 0.5, 1], [w - 0.5, h - 0.5, 1]]).T
    a, b = np.asarray(found, np.float64) @ corners, true @ corners
    return float(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0).mean())


def median_error(found: dict[str, Any], truth: dict[str, np.ndarray], reference: str) -> float:
    """Median corner error over the photos (the reference left out); a photo without a matrix counts
    as infinitely wrong."""
    ref_H_canvas = np.linalg.inv(truth[reference])
    errors = []
    for name, canvas_H_photo in truth.items():
        if name == reference:
            continue
        matrix = found.get(name)
        errors.append(math.inf if matrix is None else corner_error(matrix, ref_H_canvas @ canvas_H_photo))
    return statistics.median(errors) if errors else math.nan


# ------------------------------------------------------------------------------------------------
# the OpenCV script and the floor (run in a subprocess: this file with --worker)
# ------------------------------------------------------------------------------------------------


def _small_grey(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 512 px grey working copy as float32, and ``small_H_full`` (pixel centres kept in place)."""
    h, w = image.shape[:2]
    scale = WORK_SIDE / max(h, w)
    size = (round(w * scale), round(h * scale))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    sx, sy = size[0] / w, size[1] / h
    return small, np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def _ecc(template: np.ndarray, moving: np.ndarray, levels: int = 3) -> np.ndarray | None:
    """``template_H_moving`` (3, 3) by ECC (affine) over a ``levels``-level pyrDown pyramid."""
    fixed, mov = [template], [moving]
    for _ in range(levels - 1):
        fixed.append(cv2.pyrDown(fixed[-1]))
        mov.append(cv2.pyrDown(mov[-1]))
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-5)
    warp = np.eye(2, 3, dtype=np.float32)
    up = np.diag([2.0, 2.0, 1.0])
    for level in reversed(range(levels)):
        try:
            _, warp = cv2.findTransformECC(
                fixed[level], mov[level], warp, cv2.MOTION_AFFINE, criteria, None, 5
            )
        except cv2.error:
            return None
        if level > 0:
            full = up @ np.vstack([warp, [0, 0, 1]]) @ np.linalg.inv(up)
            warp = full[:2].astype(np.float32)
    # ECC's warp maps template pixels to moving pixels.
    return np.linalg.inv(np.vstack([warp.astype(np.float64), [0, 0, 1]]))


_TEMPLATE: dict[str, np.ndarray] = {}


def _opencv_init(template: np.ndarray) -> None:
    cv2.setNumThreads(1)
    _TEMPLATE["grey"] = template


def _opencv_photo(job: tuple[str, str]) -> tuple[str, list | None]:
    source, target = job
    image = cv2.imread(source)
    moving, small_H_full = _small_grey(image)
    ref_H_moving = _ecc(_TEMPLATE["grey"], moving)
    if ref_H_moving is None:
        return Path(source).name, None
    matrix = np.linalg.inv(small_H_full) @ ref_H_moving @ small_H_full
    h, w = image.shape[:2]
    frame = cv2.warpAffine(image, matrix[:2], (w, h), flags=cv2.INTER_LINEAR)
    cv2.imwrite(target, frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return Path(source).name, matrix.tolist()


def _floor_init() -> None:
    cv2.setNumThreads(1)


def _floor_photo(job: tuple[str, str]) -> None:
    source, target = job
    cv2.imwrite(target, cv2.imread(source), [cv2.IMWRITE_JPEG_QUALITY, 95])


def worker_main(kind: str, folder: Path, out: Path) -> None:
    """The OpenCV script (``kind="opencv"``, matrices to out/matrices.json) or the floor, on 2 processes."""
    import multiprocessing

    # No OpenCV worker threads in this process: a fork would copy them half-made and the pool's
    # processes would hang in their first parallel call.
    cv2.setNumThreads(1)
    paths = sorted(folder.glob("*.jpg"))
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(p), str(out / p.name)) for p in paths]
    if kind == "floor":
        initializer, args, work = _floor_init, (), _floor_photo
    else:
        template, _ = _small_grey(cv2.imread(str(paths[0])))
        initializer, args, work = _opencv_init, (template,), _opencv_photo
    pool = multiprocessing.get_context("fork").Pool(2, initializer, args)
    results = pool.map(work, jobs, chunksize=1)
    pool.close()
    pool.join()
    if kind == "opencv":
        (out / "matrices.json").write_text(json.dumps(dict(results)))


# ------------------------------------------------------------------------------------------------
# timing subprocesses
# ------------------------------------------------------------------------------------------------


@dataclass
class Timing:
    wall: float
    cpu: float
    load: float


def timed(command: Sequence[str], env: dict[str, str] | None = None) -> Timing:
    """Run ``command``; wall seconds, CPU seconds of it and all its children, the 1-minute load before."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(list(command), capture_output=True, text=True, env=env, check=False, timeout=1800)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu, load)


def _alignimate(*args: object) -> list[str]:
    return [sys.executable, "-m", "alignimate", *map(str, args)]


def _register_matrices(out: Path) -> tuple[dict[str, Any], str]:
    data = json.loads((out / "transforms.json").read_text())
    return {p["name"]: p["matrix"] for p in data["photos"] if p.get("matrix")}, data["reference"]


def run_contender(name: str, folder: Path, work: Path, run: int) -> tuple[Timing, dict[str, Any] | None]:
    """Time one contender on ``folder``; returns its timing and its matrices (register, opencv)."""
    out = work / f"{name}-{run}"
    shutil.rmtree(out, ignore_errors=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    if name in ("floor", "opencv"):
        timing = timed([*me, "--worker", name, str(folder), str(out)])
        found = json.loads((out / "matrices.json").read_text()) if name == "opencv" else None
    elif name == "register":
        timing = timed(
            _alignimate("register", folder, "--out", out, "--model", "similarity", "--crop", "none", "-q")
        )
        found = _register_matrices(out)[0]
    else:
        transforms = work / f"register-{run}" / "transforms.json"
        timing = timed(_alignimate("apply", transforms, "--out", out, "-q"))
        found = None
    if name != "register":
        shutil.rmtree(out, ignore_errors=True)
    return timing, found


# ------------------------------------------------------------------------------------------------
# --profile: where the seconds of one register run go
# ------------------------------------------------------------------------------------------------


class _Meter:
    """Per-thread CPU and wall seconds spent inside wrapped functions, summed by step name."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        # Per step: wall clock and process CPU seconds when it was first entered.
        self.first: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()
        self.depth = threading.local()

    def wrap(
        self, step: str | Callable[[dict[str, Any]], str], function: Callable[..., Any]
    ) -> Callable[..., Any]:
        """``function`` measured under ``step``, or under the name ``step(kwargs)`` gives per call."""

        def measured(*args: Any, **kwargs: Any) -> Any:
            name = step(kwargs) if callable(step) else step
            # Only the outermost measured call counts (a step may call another wrapped function).
            depth = getattr(self.depth, "n", 0)
            self.depth.n = depth + 1
            cpu, wall = time.thread_time(), time.perf_counter()
            if name not in self.first:
                with self.lock:
                    self.first.setdefault(name, (wall, time.process_time()))
            try:
                return function(*args, **kwargs)
            finally:
                self.depth.n = depth
                if depth == 0:
                    with self.lock:
                        self.cpu[name] = self.cpu.get(name, 0.0) + time.thread_time() - cpu
                        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
                        self.calls[name] = self.calls.get(name, 0) + 1

        return measured


def _instrument(meter: _Meter) -> None:
    """Replace the pipeline's step functions, wherever a loaded alignimate module refers to them."""
    import alignimate.io.images as images
    import alignimate.io.planes as planes
    import alignimate.pipeline.records as records
    import alignimate.pipeline.render as render
    import alignimate.registration as registration

    def copy_or_full(kwargs: dict[str, Any]) -> str:
        return "full decode" if kwargs.get("max_side") is None else "working copy (decode, resize)"

    steps: dict[str | Callable[[dict[str, Any]], str], tuple[Any, str]] = {
        # The read-ahead's reader and the frames' (one function, told apart by max_side), and the
        # registration's own (Pillow; inside the first, which may call it, it is not counted again).
        copy_or_full: (planes, "read_image_pixels"),
        "working copy (decode, resize)": (images, "read_image"),
        "registration (engine)": (registration, "register"),
        "warp (render_frame)": (render, "render_frame"),
        "encode + write": (planes, "save_image_pixels"),
        "bookkeeping (transforms.json)": (records, "write_transforms"),
        "bookkeeping (report.csv)": (records, "write_report"),
    }
    for step, (module, attr) in steps.items():
        original = getattr(module, attr)
        wrapped = meter.wrap(step, original)
        for name, loaded in list(sys.modules.items()):
            if name.startswith("alignimate") and getattr(loaded, attr, None) is original:
                setattr(loaded, attr, wrapped)


_FRONT = "import alignimate.cli; from alignimate.pipeline import align_folder"


def startup_seconds(code: str = _FRONT, repeat: int = 3) -> tuple[float, float]:
    """Median wall and CPU seconds of a fresh interpreter running ``code`` (default: importing the CLI
    and the register job's front, which imports no torch)."""
    runs = [timed([sys.executable, "-c", code]) for _ in range(repeat)]
    return _median([r.wall for r in runs]), _median([r.cpu for r in runs])


def torch_seconds(front: tuple[float, float], repeat: int = 3) -> tuple[float, float]:
    """Median wall and CPU seconds that importing torch and the engine adds to ``front``, the front's
    start-up (:func:`startup_seconds`); in a run, this happens while the read-ahead decodes working
    copies."""
    full = startup_seconds(_FRONT + "; import alignimate.pipeline.register_stages", repeat)
    return full[0] - front[0], full[1] - front[1]


def profile_register(folder: Path, out: Path) -> None:
    """Run ``align_folder`` in this process with its steps measured; print the table.

    Each step's CPU seconds are those of the threads that ran it (``time.thread_time``), so torch and
    OpenCV run on one thread per worker here (as with ``OMP_NUM_THREADS=1``): their own pools'
    threads would escape the count. The allocator is set up as the CLI sets it up."""
    import torch

    from alignimate.cli import _keep_large_buffers
    from alignimate.pipeline import align_folder

    _keep_large_buffers()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    meter = _Meter()
    _instrument(meter)
    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    result = align_folder(folder, out, model="similarity", crop="none", device="cpu")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    photos = len(list(folder.glob("*.jpg")))
    start_wall, start_cpu = front = startup_seconds()
    torch_wall, torch_cpu = torch_seconds(front)
    print(f"\n{folder.name}: {photos} photos, {len(result.aligned)} frames written; load before {load:.2f}")
    print("| step | CPU s | CPU ms per photo | calls |")
    print("|---|---:|---:|---:|")
    print(
        f"| start-up: import the CLI and the job's front (fresh process; wall {start_wall:.2f} s) | "
        f"{start_cpu:.2f} | | 1 |"
    )
    print(
        f"| start-up: import torch and the engine, beside the read-ahead (fresh process; wall "
        f"{torch_wall:.2f} s) | {torch_cpu:.2f} | | 1 |"
    )
    for step in meter.cpu:
        per = 1000 * meter.cpu[step] / photos
        print(f"| {step} | {meter.cpu[step]:.2f} | {per:.0f} | {meter.calls[step]} |")
    rest = cpu - sum(meter.cpu.values())
    print(
        f"| everything else (discovery, threads, checkpoints, crop) | {rest:.2f} | "
        f"{1000 * rest / photos:.0f} | |"
    )
    print(f"| **align_folder, all threads** | {cpu:.2f} | {1000 * cpu / photos:.0f} | |")
    print(f"\nalign_folder wall {wall:.2f} s: {cpu / wall:.2f} cores busy on average")
    if "warp (render_frame)" in meter.first:
        # The frames are written after every registration (the crop needs all matrices).
        render_wall, render_cpu = meter.first["warp (render_frame)"]
        first_wall, first_cpu = t0, c0
        for name, (w, c) in (
            ("registering", (render_wall - first_wall, render_cpu - first_cpu)),
            ("writing frames", (t0 + wall - render_wall, c0 + cpu - render_cpu)),
        ):
            print(f"- {name}: wall {w:.2f} s, CPU {c:.2f} s, {c / w:.2f} cores busy")


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=40, help="photos per set")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs; medians shown")
    parser.add_argument("--quick", action="store_true", help="8 photos per set, 1 run")
    parser.add_argument("--sets", default="smooth,detail", help="comma-separated: smooth, detail")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="contenders to run (comma-separated)")
    parser.add_argument("--keep", type=Path, help="folder for the photos, made once and reused")
    parser.add_argument("--profile", action="store_true", help="per-step seconds of one register run")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker[0], Path(args.worker[1]), Path(args.worker[2]))
        return
    if args.quick:
        args.count, args.repeat = 8, 1
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    contenders = [c for c in CONTENDERS if c in args.only.split(",")]
    if "apply" in contenders and "register" not in contenders:
        parser.error("apply needs register's transforms.json: run both")
    with tempfile.TemporaryDirectory(prefix="alignimate-e2e-") as tmp:
        base = args.keep or Path(tmp)
        work = Path(tmp) / "work"
        truths = {}
        for kind in sets:
            t0 = time.perf_counter()
            folder = base / f"{kind}-{args.count}"
            truths[kind] = make_set(kind, folder, args.count)
            mb = statistics.median(p.stat().st_size for p in folder.glob("*.jpg")) / 1e6
            print(
                f"{kind}: {args.count} photos of {SIZE_WH[0]}x{SIZE_WH[1]}, median {mb:.1f} MB "
                f"({time.perf_counter() - t0:.0f} s to make or find)"
            )
        if args.profile:
            for kind in sets:
                profile_register(base / f"{kind}-{args.count}", work / f"profile-{kind}")
            return
        report(args, sets, contenders, base, work, truths)


def report(
    args: argparse.Namespace,
    sets: list[str],
    contenders: list[str],
    base: Path,
    work: Path,
    truths: dict[str, dict[str, np.ndarray]],
) -> None:
    times: dict[tuple[str, str], list[Timing]] = {}
    errors: dict[tuple[str, str], float] = {}
    for run in range(args.repeat):
        for kind in sets:
            folder = base / f"{kind}-{args.count}"
            for name in contenders:
                timing, found = run_contender(name, folder, work / kind, run)
                times.setdefault((kind, name), []).append(timing)
                if found is not None:
                    errors[(kind, name)] = median_error(found, truths[kind], "photo_0000.jpg")
                print(
                    f"run {run + 1} {kind:6s} {name:8s} wall {timing.wall:6.1f} s  cpu {timing.cpu:6.1f} s  "
                    f"load {timing.load:.2f}",
                    flush=True,
                )
            for name in contenders:
                if name == "register":
                    shutil.rmtree(work / kind / f"register-{run}", ignore_errors=True)
    singles = _single_runs(base / f"{sets[0]}-{args.count}", work, args.repeat)
    versions = _versions()
    print(
        f"\ndate {date.today()} | {versions} | {platform.machine()}, {os.cpu_count()} cores | "
        f"{args.count} photos per set | median of {args.repeat} interleaved run(s) | "
        f"load (1 min) {min(t.load for v in times.values() for t in v):.2f}-"
        f"{max(t.load for v in times.values() for t in v):.2f}\n"
    )
    print(
        "| set | what | wall s | CPU s | x opencv wall | x opencv CPU | x floor wall "
        "| median corner error px |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for kind in sets:
        med = {
            n: (_median([t.wall for t in times[(kind, n)]]), _median([t.cpu for t in times[(kind, n)]]))
            for n in contenders
        }
        for name in contenders:
            wall, cpu = med[name]
            ow, oc = med.get("opencv", (math.nan, math.nan))
            fw = med.get("floor", (math.nan, math.nan))[0]
            err = errors.get((kind, "register" if name == "apply" else name))
            err_text = "" if err is None else f"{err:.2f}"
            print(
                f"| {kind} | {name} | {wall:.1f} | {cpu:.1f} | {wall / ow:.2f} | {cpu / oc:.2f} | "
                f"{wall / fw:.2f} | {err_text} |"
            )
    print(
        f"\n`alignimate --help`: {singles['help']:.2f} s; one-photo `register`: {singles['one']:.2f} s "
        f"(medians of {args.repeat})"
    )
    print(f"targets: {TARGETS}")


def _single_runs(folder: Path, work: Path, repeat: int) -> dict[str, float]:
    """Median wall seconds of ``alignimate --help`` and of ``register`` on a folder of one photo (the
    first of ``folder``)."""
    one = work / "one-photo"
    one.mkdir(parents=True, exist_ok=True)
    shutil.copy2(folder / "photo_0000.jpg", one / "photo_0000.jpg")
    helps, ones = [], []
    for run in range(max(1, repeat)):
        helps.append(timed(_alignimate("--help")).wall)
        out = work / f"one-photo-out-{run}"
        ones.append(timed(_alignimate("register", one, "--out", out, "--model", "similarity", "-q")).wall)
        shutil.rmtree(out, ignore_errors=True)
    return {"help": _median(helps), "one": _median(ones)}


def _versions() -> str:
    import importlib.metadata as meta

    names = ("alignimate", "torch", "opencv-python-headless", "numpy", "pillow")
    found = []
    for name in names:
        try:
            found.append(f"{name} {meta.version(name)}")
        except meta.PackageNotFoundError:
            found.append(f"{name} missing")
    return ", ".join(found) + f", Python {platform.python_version()}"


if __name__ == "__main__":
    main()
