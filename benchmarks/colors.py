"""Consistent colour across frames (issue #16): how much `gain` and `histogram` matching reduce the
frame-to-frame spread of the shared region's mean colour, and how much of a slow drift they keep.

    python benchmarks/colors.py              # seeds 0-4
    python benchmarks/colors.py --seeds 10

The series are built by tests/pipeline/color_series.py from sample_data/faces and sample_data/scenes:
the sample frames aligned with their ground-truth matrices, their own lighting inverted, then a slow
drift (exposure +25 %, red +10 % and blue -10 % over the series) and random per-frame flicker
(exposure, white balance, offset, gamma; no trend) added, 42 frames per series. Corrections are
estimated on 4x-downscaled frames and applied to the full-resolution uint8 frames, where the mean
colour of the shared region (faces: the face ellipse; scenes: the area every frame covers) is
measured. "spread": RMS change of that mean from one frame to the next, grey levels. "drift kept":
the series' linear trend after correction projected on the flicker-free series' trend (1 = all).
The "as shipped" rows use the 14 / 10 sample frames as they are (their own random lighting, no
added drift). A last line times applying a correction to one 4000x3000 frame.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The colour series the tests use (tests/pipeline/color_series.py), imported as a module of its own.
sys.path.insert(0, str(ROOT / "tests" / "pipeline"))

import color_series as cs  # noqa: E402  (tests/pipeline, on the path above)

from alignimate import __version__  # noqa: E402
from alignimate.pipeline.colors import ColorMatchSettings, estimate_color_corrections  # noqa: E402


def measure(series, settings: ColorMatchSettings | None) -> tuple[float, float, float]:
    """``(spread, drift kept, seconds to estimate)``; ``settings=None`` measures the input."""
    ideal = cs.mean_colours(series.ideal, series.mask)
    if settings is None:
        means = cs.mean_colours(series.frames, series.mask)
        return cs.frame_to_frame_spread(means), cs.drift_kept(means, ideal), 0.0
    start = time.perf_counter()
    corrections = estimate_color_corrections(series.low_frames, series.low_mask, settings)
    seconds = time.perf_counter() - start
    corrected = [c.apply(f) for c, f in zip(corrections, series.frames, strict=True)]
    means = cs.mean_colours(corrected, series.mask)
    return cs.frame_to_frame_spread(means), cs.drift_kept(means, ideal), seconds


CONFIGS = [
    ("none (input)", None),
    ("gain", ColorMatchSettings(method="gain")),
    ("histogram", ColorMatchSettings(method="histogram")),
    ("gain, sigma=None", ColorMatchSettings(method="gain", sigma=None)),
    ("histogram, sigma=None", ColorMatchSettings(method="histogram", sigma=None)),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"date {date.today()} | alignimate {__version__} | torch {torch.__version__} | {platform.machine()}, "
        f"1 torch thread | seeds 0-{args.seeds - 1}\n"
    )
    print(
        "| series | method | spread (levels), median | after / before, worst | drift kept, median (range) |"
    )
    print("|---|---|---:|---:|---:|")
    seconds: list[float] = []
    for kind in ("faces", "scenes"):
        series_list = [cs.make_series(kind, seed) for seed in range(args.seeds)]
        before = [measure(s, None)[0] for s in series_list]
        for name, settings in CONFIGS:
            rows = [measure(s, settings) for s in series_list]
            spread = np.array([r[0] for r in rows])
            kept = np.array([r[1] for r in rows])
            seconds += [r[2] / len(s.frames) for r, s in zip(rows, series_list, strict=True) if settings]
            ratio = "" if settings is None else f"{np.max(spread / np.array(before)):.3f}"
            label = f"{kind}, {len(series_list[0].frames)} frames"
            print(
                f"| {label} | {name} | {np.median(spread):.2f} | {ratio} | "
                f"{np.median(kept):.2f} ({kept.min():.2f} to {kept.max():.2f}) |"
            )
    for kind in ("faces", "scenes"):
        series = cs.shipped_series(kind)
        before = measure(series, None)[0]
        for name, settings in CONFIGS[1:3]:
            spread = measure(series, settings)[0]
            print(
                f"| {kind} as shipped, {len(series.frames)} frames | {name} | {before:.2f} -> {spread:.2f} | "
                f"{spread / before:.3f} | |"
            )
    frame = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    correction = estimate_color_corrections([frame[::16, ::16], frame[::16, ::16]], None)[1]
    correction.apply(frame)
    start = time.perf_counter()
    for _ in range(5):
        correction.apply(frame)
    apply_ms = (time.perf_counter() - start) / 5 * 1000
    print(
        f"\nestimate: {np.median(seconds) * 1000:.1f} ms per low-resolution frame (median); "
        f"apply: {apply_ms:.0f} ms per 4000x3000 uint8 frame"
    )


if __name__ == "__main__":
    main()
