"""Time alignimate's core ops beside kornia's and an OpenCV per-image loop, in one run.

    python benchmarks/core_ops.py                 # CPU, batches 1, 8, 32, 128
    python benchmarks/core_ops.py --device cuda   # also on a GPU
    python benchmarks/core_ops.py --quick         # batches 1 and 8, fewer repeats
    python benchmarks/core_ops.py --threads 1     # torch and OpenCV on 1 thread (steadier on a busy machine)

Prints a markdown table of milliseconds per image (median of repeated runs) at 256x256 RGB float32,
and the ratios alignimate/kornia (lower is better for us; the target is <= 1.0 at batch >= 8, and
<= 0.5 for the 11x11 Gaussian). kornia and OpenCV are optional imports (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import numpy as np
import torch

from alignimate import __version__ as alignimate_version
from alignimate import core

try:
    import kornia
except ImportError:  # pragma: no cover - optional
    kornia = None
try:
    import cv2
except ImportError:  # pragma: no cover - optional
    cv2 = None

SIZE = 256


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_per_image(fn: Callable[[], object], batch: int, device: torch.device, budget_s: float) -> float:
    """Median wall time of ``fn`` divided by ``batch``, in milliseconds; runs for about ``budget_s``."""
    return 1000.0 * statistics.median(sample_times(fn, device, budget_s)) / batch


def sample_times(fn: Callable[[], object], device: torch.device, budget_s: float) -> list[float]:
    """Wall times of repeated calls of ``fn`` for about ``budget_s`` (at least 3, at most 50), after warm-up
    calls that fill kernel caches and let the memory allocator settle into its steady state."""
    start = time.perf_counter()
    for _ in range(3):
        fn()
        if time.perf_counter() - start > budget_s / 4:
            break
    _sync(device)
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < 3 or (time.perf_counter() - start < budget_s and len(samples) < 50):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - t0)
    return samples


def time_interleaved(
    impls: dict[str, Callable[[], object] | None],
    batch: int,
    device: torch.device,
    budget_s: float,
    rounds: int,
) -> dict[str, float]:
    """Milliseconds per image of each implementation (NaN for ``None``): the median of the samples of
    ``rounds`` rounds that each time every implementation in turn, so that load from other work on the
    machine, which drifts over seconds, and the allocator state one library leaves behind weigh on all
    alike."""
    samples: dict[str, list[float]] = {lib: [] for lib, fn in impls.items() if fn is not None}
    for _ in range(rounds):
        for lib in samples:
            samples[lib] += sample_times(impls[lib], device, budget_s / rounds)
    return {
        lib: 1000.0 * statistics.median(samples[lib]) / batch if lib in samples else math.nan for lib in impls
    }


def random_matrices(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel (B, 2, 3) affine and (B, 3, 3) perspective matrices: mild rotation, scale, shift, tilt."""
    g = torch.Generator().manual_seed(batch)
    angle = (torch.rand(batch, generator=g) - 0.5) * 0.4
    scale = 0.9 + 0.2 * torch.rand(batch, generator=g)
    shift = (torch.rand(batch, 2, generator=g) - 0.5) * 20
    c = (SIZE - 1) / 2
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    H = torch.zeros(batch, 3, 3)
    H[:, 0, 0], H[:, 0, 1], H[:, 1, 0], H[:, 1, 1] = cos, sin, -sin, cos
    H[:, 0, 2] = c - cos * c - sin * c + shift[:, 0]
    H[:, 1, 2] = c + sin * c - cos * c + shift[:, 1]
    H[:, 2, 2] = 1
    P = H.clone()
    P[:, 2, :2] = (torch.rand(batch, 2, generator=g) - 0.5) * 2e-4
    return H[:, :2].to(device), P.to(device)


def cv2_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Gaussian-window SSIM built from cv2.GaussianBlur (11x11, sigma 1.5), averaged over the image."""
    c1, c2 = 0.01**2, 0.03**2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())


def build_ops(x: torch.Tensor, y: torch.Tensor, A: torch.Tensor, P: torch.Tensor) -> dict[str, dict]:
    """Each op: alignimate, kornia and OpenCV callables (None when unavailable)."""
    dsize = (SIZE, SIZE)
    xs = [img.permute(1, 2, 0).contiguous().cpu().numpy() for img in x]
    ys = [img.permute(1, 2, 0).contiguous().cpu().numpy() for img in y]
    A_np = A.cpu().numpy()
    P_np = P.cpu().numpy()
    ops: dict[str, dict] = {
        "gaussian_blur2d 5x5 s1.5": {
            "alignimate": lambda: core.gaussian_blur2d(x, 5, 1.5),
            "kornia": kornia and (lambda: kornia.filters.gaussian_blur2d(x, (5, 5), (1.5, 1.5))),
            "opencv": cv2 and (lambda: [cv2.GaussianBlur(i, (5, 5), 1.5) for i in xs]),
        },
        "gaussian_blur2d 11x11 s3": {
            "alignimate": lambda: core.gaussian_blur2d(x, 11, 3.0),
            "kornia": kornia and (lambda: kornia.filters.gaussian_blur2d(x, (11, 11), (3.0, 3.0))),
            "opencv": cv2 and (lambda: [cv2.GaussianBlur(i, (11, 11), 3.0) for i in xs]),
        },
        "sobel magnitude": {
            "alignimate": lambda: core.sobel(x),
            "kornia": kornia and (lambda: kornia.filters.sobel(x)),
            "opencv": cv2
            and (lambda: [cv2.magnitude(cv2.Sobel(i, -1, 1, 0), cv2.Sobel(i, -1, 0, 1)) for i in xs]),
        },
        "warp_affine bilinear": {
            "alignimate": lambda: core.warp_affine(x, A, dsize),
            "kornia": kornia and (lambda: kornia.geometry.transform.warp_affine(x, A, dsize)),
            "opencv": cv2
            and (lambda: [cv2.warpAffine(i, m, (SIZE, SIZE)) for i, m in zip(xs, A_np, strict=False)]),
        },
        "warp_perspective bilinear": {
            "alignimate": lambda: core.warp_perspective(x, P, dsize),
            "kornia": kornia and (lambda: kornia.geometry.transform.warp_perspective(x, P, dsize)),
            "opencv": cv2
            and (lambda: [cv2.warpPerspective(i, m, (SIZE, SIZE)) for i, m in zip(xs, P_np, strict=False)]),
        },
        "pyrdown": {
            "alignimate": lambda: core.pyrdown(x),
            "kornia": kornia and (lambda: kornia.geometry.transform.pyrdown(x)),
            "opencv": cv2 and (lambda: [cv2.pyrDown(i) for i in xs]),
        },
        "ssim 11x11 s1.5": {
            "alignimate": lambda: core.ssim(x, y),
            "kornia": kornia and (lambda: kornia.metrics.ssim(x, y, 11).mean(dim=(1, 2, 3))),
            "opencv": cv2 and (lambda: [cv2_ssim(a, b) for a, b in zip(xs, ys, strict=False)]),
        },
    }
    return ops


def smooth_images(batch: int, device: torch.device, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, 3, SIZE // 8, SIZE // 8, generator=g)
    up = torch.nn.functional.interpolate(noise, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    return up.clamp(0, 1).to(device)


def run(device: torch.device, batches: list[int], budget_s: float, rounds: int) -> list[tuple]:
    rows = []
    for batch in batches:
        x, y = smooth_images(batch, device, 1), smooth_images(batch, device, 2)
        A, P = random_matrices(batch, device)
        for name, impls in build_ops(x, y, A, P).items():
            if device.type != "cpu" and batch not in (1, 128):
                impls = {**impls, "opencv": None}
            rows.append((name, batch, time_interleaved(impls, batch, device, budget_s, rounds)))
    return rows


def print_table(rows: list[tuple], device: torch.device) -> None:
    print(f"\n### {device.type.upper()}: ms per 256x256 RGB float32 image (median)\n")
    print("| op | batch | alignimate | kornia | OpenCV loop | alignimate/kornia | OpenCV/alignimate |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, batch, t in rows:
        ours, theirs, ocv = t["alignimate"], t["kornia"], t["opencv"]
        ratio = ours / theirs if theirs == theirs else math.nan
        speedup = ocv / ours if ocv == ocv else math.nan
        print(f"| {name} | {batch} | {ours:.3f} | {theirs:.3f} | {ocv:.3f} | {ratio:.2f} | {speedup:.1f}x |")


def _load() -> str:
    """The machine's 1, 5 and 15 minute load averages (other work skews timings), or "n/a"."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads for torch and OpenCV alike (default: their own)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds per op and batch")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        if cv2 is not None:
            cv2.setNumThreads(args.threads)
    batches = [1, 8] if args.quick else [1, 8, 32, 128]
    budget = 0.5 if args.quick else 2.0
    print(f"date {date.today()} | alignimate {alignimate_version} | torch {torch.__version__}", end="")
    print(f" | kornia {getattr(kornia, '__version__', 'n/a')} | opencv {getattr(cv2, '__version__', 'n/a')}")
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {torch.get_num_threads()} torch threads, python {platform.python_version()}")
    if device.type == "cuda":
        print(f"gpu: {torch.cuda.get_device_name(device)}")
    print(f"load average before: {_load()}")
    with torch.inference_mode():
        rows = run(device, batches, budget, max(1, args.rounds))
    print(f"load average after: {_load()}")
    print_table(rows, device)


if __name__ == "__main__":
    main()
