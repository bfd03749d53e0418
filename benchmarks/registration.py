"""Registration benchmark: alignimate vs kornia ImageRegistrator, OpenCV ECC and ORB + RANSAC.

Cases: skimage sample photographs, a fixed view and a moving view under a random transform
(rotation up to 15 degrees, scale 0.85-1.15, shift up to 10 %, perspective jitter of up to 5 % per
corner for homographies), brightness/contrast change and noise (tests/registration/cases.py).
Success means a mean corner error below 2 px. Times are wall-clock per pair on this machine, all
methods in the same run, after one warm-up call each.

Run from the repository root::

    .venv/bin/python benchmarks/registration.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alignimate.registration import register  # noqa: E402


def _load_cases_module():
    spec = importlib.util.spec_from_file_location(
        "registration_cases", ROOT / "tests" / "registration" / "registration_cases.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


cases_module = _load_cases_module()
FAILED = np.inf


# --------------------------------------------------------------------------- methods
# Each method takes a list of cases and returns (estimated fixed_H_moving list, seconds per pair).


def _grey_u8(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return (np.clip(grey, 0, 1) * 255).astype(np.uint8)


def _grey_f32(image: np.ndarray) -> np.ndarray:
    return (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image).astype(np.float32)


def alignimate_method(batch: int, model: str, **options: object) -> Callable:
    def run(cases: list) -> tuple[list, float]:
        moving = cases_module.to_tensor([c.moving for c in cases])
        fixed = cases_module.to_tensor([c.fixed for c in cases])
        register(moving[:batch], fixed[:batch], model, **options)  # warm-up
        out = []
        start = time.perf_counter()
        for i in range(0, len(cases), batch):
            result = register(moving[i : i + batch], fixed[i : i + batch], model, **options)
            out.extend(result.matrix.double().numpy())
        return out, (time.perf_counter() - start) / len(cases)

    return run


def ecc_method(model: str, levels: int = 3) -> Callable:
    """cv2.findTransformECC in a coarse-to-fine loop over a cv2.pyrDown pyramid (identity start)."""
    motion = cv2.MOTION_HOMOGRAPHY if model == "homography" else cv2.MOTION_AFFINE
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-5)

    def one(case) -> np.ndarray:
        fixed = [_grey_f32(case.fixed)]
        moving = [_grey_f32(case.moving)]
        for _ in range(levels - 1):
            fixed.append(cv2.pyrDown(fixed[-1]))
            moving.append(cv2.pyrDown(moving[-1]))
        warp = np.eye(3, dtype=np.float32)
        for level in reversed(range(levels)):
            w = warp if motion == cv2.MOTION_HOMOGRAPHY else warp[:2].copy()
            try:
                _, w = cv2.findTransformECC(fixed[level], moving[level], w, motion, criteria, None, 5)
            except cv2.error:
                return np.full((3, 3), np.nan)
            warp = w if w.shape[0] == 3 else np.vstack([w, [0, 0, 1]]).astype(np.float32)
            if level > 0:
                # pyrDown maps x -> x / 2, so a level's matrix doubles its translation one level up.
                up = np.diag([2.0, 2.0, 1.0]).astype(np.float32)
                warp = up @ warp @ np.linalg.inv(up)
        # warp maps fixed (template) coordinates to moving (input) coordinates.
        return np.linalg.inv(warp.astype(np.float64))

    def run(cases: list) -> tuple[list, float]:
        one(cases[0])
        start = time.perf_counter()
        out = [one(c) for c in cases]
        return out, (time.perf_counter() - start) / len(cases)

    return run


def orb_method(model: str) -> Callable:
    orb = cv2.ORB_create(nfeatures=2000)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)

    def one(case) -> np.ndarray:
        km, dm = orb.detectAndCompute(_grey_u8(case.moving), None)
        kf, df = orb.detectAndCompute(_grey_u8(case.fixed), None)
        if dm is None or df is None:
            return np.full((3, 3), np.nan)
        matches = matcher.match(dm, df)
        if len(matches) < 4:
            return np.full((3, 3), np.nan)
        src = np.float32([km[m.queryIdx].pt for m in matches])
        dst = np.float32([kf[m.trainIdx].pt for m in matches])
        if model == "homography":
            m, _ = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
        else:
            m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
            m = None if m is None else np.vstack([m, [0, 0, 1]])
        return np.full((3, 3), np.nan) if m is None else m

    def run(cases: list) -> tuple[list, float]:
        one(cases[0])
        start = time.perf_counter()
        out = [one(c) for c in cases]
        return out, (time.perf_counter() - start) / len(cases)

    return run


def kornia_method(model: str, tuned: bool) -> Callable:
    from kornia.geometry.transform import ImageRegistrator

    from alignimate.core.coords import normalize_pixel_matrix

    def one(case) -> np.ndarray:
        moving = torch.from_numpy(_grey_f32(case.moving))[None, None]
        fixed = torch.from_numpy(_grey_f32(case.fixed))[None, None]
        if tuned:
            registrator = ImageRegistrator(
                model, loss_fn=F.mse_loss, pyramid_levels=4, lr=2e-2, num_iterations=200, tolerance=1e-7
            )
        else:
            registrator = ImageRegistrator(model)
        norm = registrator.register(moving, fixed).detach().double()[0]
        # Documented: normalised (align_corners=False) destination -> source map.
        n = normalize_pixel_matrix(tuple(case.fixed.shape[:2]), dtype=torch.float64)
        moving_H_fixed = torch.linalg.inv(n) @ norm @ n
        return torch.linalg.inv(moving_H_fixed).numpy()

    def run(cases: list) -> tuple[list, float]:
        start = time.perf_counter()
        out = [one(c) for c in cases]
        return out, (time.perf_counter() - start) / len(cases)

    return run


# --------------------------------------------------------------------------- harness


def corner_errors(estimates: list, cases: list) -> np.ndarray:
    errors = []
    for m, case in zip(estimates, cases, strict=True):
        if m is None or not np.all(np.isfinite(m)):
            errors.append(FAILED)
            continue
        errors.append(cases_module.corner_error(m, case.fixed_H_moving, case.moving.shape[:2]))
    return np.asarray(errors)


def make_cases(size: int, model: str, count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    photos = cases_module.PHOTOS
    return [
        cases_module.make_case(rng, photos[i % len(photos)], (size, size), homography=model == "homography")
        for i in range(count)
    ]


def row(name: str, errors: np.ndarray, seconds: float, n: int) -> str:
    finite = errors[np.isfinite(errors)]
    success = float(np.mean(errors < 2.0)) * 100
    median = (
        float(np.median(errors))
        if len(finite) == len(errors)
        else float(np.median(np.where(np.isfinite(errors), errors, 1e9)))
    )
    p90 = float(np.percentile(np.where(np.isfinite(errors), errors, 1e9), 90))
    fmt = lambda v: "fail" if v >= 1e8 else f"{v:.3f}"  # noqa: E731
    return f"| {name} | {n} | {success:.1f}% | {fmt(median)} | {fmt(p90)} | {seconds * 1e3:.1f} |"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import kornia

    return (
        f"{platform.platform()}, {cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), opencv {cv2.__version__} ({cv2.getNumThreads()} threads), "
        f"kornia {kornia.__version__}, "
        f"numpy {np.__version__}, python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few cases, for a smoke run")
    parser.add_argument(
        "--cases", type=int, default=None, help="cases per configuration (default 128, quick 16)"
    )
    parser.add_argument(
        "--kornia-cases",
        type=int,
        default=None,
        help="cases for kornia at 256 px, half as many at 512 (default 16, quick 2)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--models", nargs="+", default=["similarity", "homography"])
    parser.add_argument("--batch", type=int, default=32, help="alignimate batch size (besides batch 1)")
    parser.add_argument("--no-kornia", action="store_true")
    parser.add_argument(
        "--adam-cases", type=int, default=32, help="cases for alignimate's Adam solver (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and OpenCV threads (default 1: per-core numbers, and immune "
        "to the large OpenMP slowdowns a busy shared machine causes)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    count = args.cases or (16 if args.quick else 128)
    kornia_count = args.kornia_cases if args.kornia_cases is not None else (2 if args.quick else 16)

    print(f"# Registration benchmark ({datetime.date.today().isoformat()})\n")
    print(f"Machine: {machine()}\n")
    print("Success: mean corner error < 2 px. Errors in pixels of the fixed image; time per pair in ms.\n")
    for size in args.sizes:
        for model in args.models:
            cases = make_cases(size, model, count, args.seed)
            methods: list[tuple[str, Callable, list]] = [
                ("alignimate, batch 1", alignimate_method(1, model), cases),
                (f"alignimate, batch {args.batch}", alignimate_method(args.batch, model), cases),
                ("OpenCV ECC, 3-level pyramid", ecc_method(model), cases),
                ("ORB + RANSAC", orb_method(model), cases),
            ]
            if args.adam_cases > 0:
                methods.append(
                    (
                        f"alignimate, solver='adam', batch {args.batch}",
                        alignimate_method(args.batch, model, solver="adam"),
                        cases[: args.adam_cases],
                    )
                )
            if not args.no_kornia and kornia_count > 0:
                # kornia takes seconds per pair (more at 512 px): a subset of the same cases.
                k_cases = cases[: kornia_count if size <= 256 else max(1, kornia_count // 2)]
                methods.append(
                    ("kornia ImageRegistrator, defaults", kornia_method(model, tuned=False), k_cases)
                )
                methods.append(
                    (
                        "kornia ImageRegistrator, tuned (MSE, lr 2e-2, 4 levels, 200 it)",
                        kornia_method(model, True),
                        k_cases,
                    )
                )
            print(f"## {model}, {size} x {size}\n")
            print("| method | cases | success | median error | p90 error | ms / pair |")
            print("|---|---|---|---|---|---|")
            for name, method, subset in methods:
                estimates, seconds = method(subset)
                print(row(name, corner_errors(estimates, subset), seconds, len(subset)), flush=True)
            print()


if __name__ == "__main__":
    main()
