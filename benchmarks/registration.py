"""Registration benchmark: alignimate vs kornia ImageRegistrator, OpenCV ECC and ORB + RANSAC.

Cases: skimage sample photographs, a fixed view and a moving view under a random transform
(rotation up to 15 degrees, scale 0.85-1.15, shift up to 10 %, perspective jitter of up to 5 % per
corner for homographies), brightness/contrast change and noise (tests/registration/registration_cases.py),
under the conditions chosen with ``--conditions`` (issue #13):

- ``clean``: the cases above.
- ``occluded``: foreign objects (rectangles, ellipses, blobs, walking figures filled with another
  photo, a smooth colour field or a flat colour) over 10-25 % of the fixed view.
- ``occluded-both``: the same, plus 5-10 % of the moving view (drawn independently).
- ``empty``: the fixed view is exactly zero over 10-30 % of its area (black bands on 1-3 sides, or
  the black outside of an earlier warp); run twice, without a mask and with the valid area as the
  fixed mask (alignimate's ``fixed_mask``; ECC's template mask; ORB's detection mask, eroded by
  half a patch). kornia takes no mask and only runs without.
- ``partial``: the moving image covers only 50-90 % of the fixed view (a larger translation).

Success means a mean corner error below 2 px. Times are wall-clock per pair on this machine, all
methods in the same run, after one warm-up call each; "x ECC" is a method's time per pair over
OpenCV ECC's on the same cases in the same run. Below each table: the failures of alignimate's
batched run; at the end: the issue's targets at 256 px against this run.

Run from the repository root::

    .venv/bin/python benchmarks/registration.py [--quick] [--sizes 256] [--threads 1]
        [--conditions clean,occluded,empty,partial] [--json results.json]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The cases the tests use, imported as the tests import them (tests/registration/conftest.py).
sys.path.insert(0, str(ROOT / "tests" / "registration"))

import registration_cases as cases_module  # noqa: E402  (tests/registration, on the path above)

from alignimate.registration import register  # noqa: E402

FAILED = np.inf


# --------------------------------------------------------------------------- methods
# Each method takes a list of cases and whether to pass the fixed views' valid masks
# (``case.fixed_valid``), and returns (estimated fixed_H_moving list, seconds per pair).


def _grey_u8(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return (np.clip(grey, 0, 1) * 255).astype(np.uint8)


def _grey_f32(image: np.ndarray) -> np.ndarray:
    return (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image).astype(np.float32)


def _valid(case) -> np.ndarray | None:
    return getattr(case, "fixed_valid", None)


def alignimate_method(batch: int, model: str, **options: object) -> Callable:
    def run(cases: list, use_mask: bool = False) -> tuple[list, float]:
        moving = cases_module.to_tensor([c.moving for c in cases])
        fixed = cases_module.to_tensor([c.fixed for c in cases])
        masks = None
        if use_mask:
            masks = torch.from_numpy(np.stack([_valid(c) for c in cases])[:, None].astype(np.float32))

        def call(part: slice):
            mask = None if masks is None else masks[part]
            # Photographs: registered on grey, like the other methods here.
            return register(moving[part], fixed[part], model, fixed_mask=mask, grey=True, **options)

        call(slice(0, batch))  # warm-up
        out = []
        start = time.perf_counter()
        for i in range(0, len(cases), batch):
            out.extend(call(slice(i, i + batch)).matrix.double().numpy())
        return out, (time.perf_counter() - start) / len(cases)

    return run


def ecc_method(model: str, levels: int = 3) -> Callable:
    """cv2.findTransformECC in a coarse-to-fine loop over a cv2.pyrDown pyramid (identity start);
    with a mask, cv2.findTransformECCWithMask with the fixed view's valid area as the template mask
    (pyramid masks: pyrDown, then only fully valid pixels)."""
    motion = cv2.MOTION_HOMOGRAPHY if model == "homography" else cv2.MOTION_AFFINE
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-5)
    with_mask = getattr(cv2, "findTransformECCWithMask", None)

    def one(case, use_mask: bool) -> np.ndarray:
        fixed = [_grey_f32(case.fixed)]
        moving = [_grey_f32(case.moving)]
        masks = [_valid(case).astype(np.float32)] if use_mask else None
        for _ in range(levels - 1):
            fixed.append(cv2.pyrDown(fixed[-1]))
            moving.append(cv2.pyrDown(moving[-1]))
            if masks is not None:
                masks.append(cv2.pyrDown(masks[-1]))
        warp = np.eye(3, dtype=np.float32)
        for level in reversed(range(levels)):
            w = warp if motion == cv2.MOTION_HOMOGRAPHY else warp[:2].copy()
            try:
                if masks is None:
                    _, w = cv2.findTransformECC(fixed[level], moving[level], w, motion, criteria, None, 5)
                elif with_mask is not None:
                    template_mask = (masks[level] > 0.99).astype(np.uint8)
                    input_mask = np.ones(moving[level].shape, np.uint8)
                    _, w = with_mask(
                        fixed[level], moving[level], template_mask, input_mask, w, motion, criteria, 5
                    )
                else:
                    raise RuntimeError("this OpenCV has no findTransformECCWithMask")
            except cv2.error:
                return np.full((3, 3), np.nan)
            warp = w if w.shape[0] == 3 else np.vstack([w, [0, 0, 1]]).astype(np.float32)
            if level > 0:
                # pyrDown maps x -> x / 2, so a level's matrix doubles its translation one level up.
                up = np.diag([2.0, 2.0, 1.0]).astype(np.float32)
                warp = up @ warp @ np.linalg.inv(up)
        # warp maps fixed (template) coordinates to moving (input) coordinates.
        return np.linalg.inv(warp.astype(np.float64))

    def run(cases: list, use_mask: bool = False) -> tuple[list, float]:
        one(cases[0], use_mask)
        start = time.perf_counter()
        out = [one(c, use_mask) for c in cases]
        return out, (time.perf_counter() - start) / len(cases)

    return run


def orb_method(model: str) -> Callable:
    """ORB (2000 features), cross-checked brute-force matches, RANSAC (3 px). With a mask, the
    fixed view's keypoints come from its valid area eroded by half ORB's 31 px patch, so no
    descriptor sees the empty area."""
    orb = cv2.ORB_create(nfeatures=2000)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    erode = cv2.getStructuringElement(cv2.MORPH_RECT, (31, 31))

    def one(case, use_mask: bool) -> np.ndarray:
        mask = cv2.erode(_valid(case).astype(np.uint8) * 255, erode) if use_mask else None
        km, dm = orb.detectAndCompute(_grey_u8(case.moving), None)
        kf, df = orb.detectAndCompute(_grey_u8(case.fixed), mask)
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

    def run(cases: list, use_mask: bool = False) -> tuple[list, float]:
        one(cases[0], use_mask)
        start = time.perf_counter()
        out = [one(c, use_mask) for c in cases]
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

    def run(cases: list, use_mask: bool = False) -> tuple[list, float]:
        if use_mask:
            raise ValueError("kornia's ImageRegistrator takes no mask")
        start = time.perf_counter()
        out = [one(c) for c in cases]
        return out, (time.perf_counter() - start) / len(cases)

    return run


def kornia_version() -> str | None:
    if importlib.util.find_spec("kornia") is None:
        return None
    import kornia

    return kornia.__version__


# --------------------------------------------------------------------------- harness

ECC_NAME = "OpenCV ECC, 3-level pyramid"


def corner_errors(estimates: list, cases: list) -> np.ndarray:
    errors = []
    for m, case in zip(estimates, cases, strict=True):
        if m is None or not np.all(np.isfinite(m)):
            errors.append(FAILED)
            continue
        errors.append(cases_module.corner_error(m, case.fixed_H_moving, case.moving.shape[:2]))
    return np.asarray(errors)


def make_cases(size: int, model: str, count: int, seed: int, condition: str = "clean") -> list:
    """``count`` cases of ``condition`` cycling through the sample photos; ``clean`` is the original
    benchmark set (same seed, same cases)."""
    return cases_module.make_condition_cases(
        condition, (size, size), count, seed, homography=model == "homography"
    )


@dataclass
class Result:
    condition: str  # table label, e.g. "empty, mask"
    method: str
    errors: np.ndarray
    seconds: float
    cases: list

    @property
    def success(self) -> float:
        return float(np.mean(self.errors < 2.0)) * 100

    @property
    def median(self) -> float:
        return float(np.median(np.where(np.isfinite(self.errors), self.errors, 1e9)))

    @property
    def p90(self) -> float:
        return float(np.percentile(np.where(np.isfinite(self.errors), self.errors, 1e9), 90))


def row(result: Result, ecc_seconds: float | None) -> str:
    fmt = lambda v: "fail" if v >= 1e8 else f"{v:.3f}"  # noqa: E731
    ratio = "-" if not ecc_seconds else f"{result.seconds / ecc_seconds:.2f}"
    return (
        f"| {result.condition} | {result.method} | {len(result.errors)} | {result.success:.1f}% | "
        f"{fmt(result.median)} | {fmt(result.p90)} | {result.seconds * 1e3:.1f} | {ratio} |"
    )


def failures(result: Result) -> str:
    """One line: how many cases failed, per photo (failed/cases), and the condition's parameter
    over the failed cases against all of them."""
    failed = ~(result.errors < 2.0)
    photos: dict[str, list[int]] = {}
    for bad, case in zip(failed, result.cases, strict=True):
        photos.setdefault(case.photo, [0, 0])
        photos[case.photo][0] += int(bad)
        photos[case.photo][1] += 1
    ranked = sorted(((n, total, p) for p, (n, total) in photos.items() if n), key=lambda t: (-t[0], t[2]))
    by_photo = ", ".join(f"{p} {n}/{total}" for n, total, p in ranked)
    line = f"- {result.condition}: {int(failed.sum())}/{len(failed)} failed; by photo: {by_photo}"
    parameter = {
        "occluded": "occluded_fraction",
        "occluded-both": "occluded_fraction",
        "empty": "empty_fraction",
        "partial": "overlap",
    }.get(getattr(result.cases[0], "condition", "clean"))
    if parameter is not None:
        values = np.array([getattr(c, parameter) for c in result.cases])
        name = parameter.replace("_", " ")
        line += f"; mean {name} {values[failed].mean():.2f} failed, {values.mean():.2f} all"
    if getattr(result.cases[0], "condition", "") == "empty":
        variants = np.array([c.variant for c in result.cases])
        line += "; failed " + ", ".join(
            f"{v} {int((failed & (variants == v)).sum())}/{int((variants == v).sum())}"
            for v in ("bands", "warp")
        )
    return line


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
    version = kornia_version()
    return (
        f"{platform.platform()}, {cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), opencv {cv2.__version__} ({cv2.getNumThreads()} threads), "
        f"{f'kornia {version}' if version else 'kornia not installed'}, "
        f"numpy {np.__version__}, python {platform.python_version()}"
    )


# Issue #13's targets at 256 px for alignimate's batched run: (condition, model or None for both,
# what, threshold); "success" is a lower bound in %, "median" and "x ECC" upper bounds.
TARGETS = (
    ("clean", None, "success", 99.0),
    ("clean", None, "median", 0.05),
    ("occluded", "similarity", "success", 97.0),
    ("occluded", "homography", "success", 93.0),
    ("empty, no mask", None, "median", 0.1),
)
MAX_ECC_RATIO = 2.0


def target_lines(results: dict, batched: str) -> list[str]:
    lines = []
    for (size, model, condition), group in results.items():
        if size != 256:
            continue
        ours = next((r for r in group if r.method == batched), None)
        ecc = next((r for r in group if r.method == ECC_NAME), None)
        if ours is None:
            continue
        for t_condition, t_model, what, bound in TARGETS:
            if t_condition != condition or t_model not in (None, model):
                continue
            value = ours.success if what == "success" else ours.median
            ok = value >= bound if what == "success" else value <= bound
            unit = "%" if what == "success" else " px"
            sign = ">=" if what == "success" else "<="
            lines.append(
                f"| {model} | {condition} | {what} {sign} {bound:g}{unit} | {value:.3f}{unit} | "
                f"{'met' if ok else 'NOT met'} |"
            )
        if ecc is not None:
            ratio = ours.seconds / ecc.seconds
            lines.append(
                f"| {model} | {condition} | time <= {MAX_ECC_RATIO:g}x ECC | {ratio:.2f}x | "
                f"{'met' if ratio <= MAX_ECC_RATIO else 'NOT met'} |"
            )
    return lines


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
    parser.add_argument(
        "--conditions",
        default="clean,occluded,empty,partial",
        help=f"comma-separated, from {','.join(cases_module.CONDITIONS)} (default: %(default)s)",
    )
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
    parser.add_argument("--json", type=Path, default=None, help="also write every case's errors here")
    args = parser.parse_args()
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in cases_module.CONDITIONS]
    if unknown or not conditions:
        parser.error(f"--conditions: unknown {unknown}; choose from {','.join(cases_module.CONDITIONS)}")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    count = args.cases or (16 if args.quick else 128)
    kornia_count = args.kornia_cases if args.kornia_cases is not None else (2 if args.quick else 16)
    use_kornia = not args.no_kornia and kornia_count > 0 and kornia_version() is not None
    batched = f"alignimate, batch {args.batch}"
    started = time.perf_counter()

    print(f"# Registration benchmark ({datetime.date.today().isoformat()})\n")
    print(f"Machine: {machine()}\n")
    print(f"Command: {' '.join(['benchmarks/registration.py', *sys.argv[1:]])}\n")
    print(
        "Success: mean corner error < 2 px. Errors in pixels of the fixed image; time per pair in ms; "
        "x ECC: time per pair over OpenCV ECC's on the same cases in this run.\n"
    )
    results: dict[tuple[int, str, str], list[Result]] = {}
    for size in args.sizes:
        for model in args.models:
            print(f"## {model}, {size} x {size}\n")
            print("| condition | method | cases | success | median error | p90 error | ms / pair | x ECC |")
            print("|---|---|---|---|---|---|---|---|")
            failure_lines = []
            for condition in conditions:
                cases = make_cases(size, model, count, args.seed, condition)
                variants = [("no mask", False), ("mask", True)] if condition == "empty" else [("", False)]
                for variant, use_mask in variants:
                    label = f"{condition}, {variant}" if variant else condition
                    methods: list[tuple[str, Callable, list]] = [
                        ("alignimate, batch 1", alignimate_method(1, model), cases),
                        (batched, alignimate_method(args.batch, model), cases),
                        (ECC_NAME, ecc_method(model), cases),
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
                    if use_kornia and not use_mask:
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
                    group = []
                    for name, method, subset in methods:
                        estimates, seconds = method(subset, use_mask)
                        group.append(Result(label, name, corner_errors(estimates, subset), seconds, subset))
                    results[(size, model, label)] = group
                    ecc = next(r.seconds for r in group if r.method == ECC_NAME)
                    for result in group:
                        print(row(result, ecc), flush=True)
                    ours = next(r for r in group if r.method == batched)
                    if ours.success < 100:
                        failure_lines.append(failures(ours))
            print()
            if failure_lines:
                print(f"Failures of {batched}:\n")
                print("\n".join(failure_lines))
                print()
    lines = target_lines(results, batched)
    if lines:
        print(f"## Issue #13 targets at 256 px ({batched})\n")
        print("| model | condition | target | measured | |")
        print("|---|---|---|---|---|")
        print("\n".join(lines))
        print()
    print(f"Benchmark wall time: {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        records = [
            {
                "size": size,
                "model": model,
                "condition": r.condition,
                "method": r.method,
                "seconds_per_pair": r.seconds,
                "cases": [
                    {
                        "photo": c.photo,
                        "error": float(e) if np.isfinite(e) else None,
                        "variant": getattr(c, "variant", ""),
                        "occluded": getattr(c, "occluded_fraction", 0.0),
                        "empty": getattr(c, "empty_fraction", 0.0),
                        "overlap": getattr(c, "overlap", 1.0),
                    }
                    for e, c in zip(r.errors, r.cases, strict=True)
                ],
            }
            for (size, model, _), group in results.items()
            for r in group
        ]
        args.json.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
