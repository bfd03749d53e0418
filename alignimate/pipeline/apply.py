"""``apply_transforms``: re-apply a saved transforms.json to the same photos or to other versions.

Typical use: register small proxies, then apply the result to the full-size exports. Another
version of a photo is found by the same relative name in ``images`` (any suffix), and must have
the same aspect ratio; its matrix is rescaled, and the output canvas and crop are scaled by the
reference photo's size ratio, so the frames come out at the new resolution.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alignimate.io import PhotoError, find_images, probe_image
from alignimate.pipeline.frame_writer import FrameJob, write_frames
from alignimate.pipeline.records import (
    PhotoRecord,
    RunRecord,
    read_transforms,
    write_report,
    write_transforms,
)
from alignimate.pipeline.register_folder import (
    REPORT_NAME,
    TRANSFORMS_NAME,
    AlignResult,
    UsageError,
    pick_device,
    resolve_workers,
)
from alignimate.pipeline.render import resize_matrix, translation

__all__ = ["apply_transforms"]


def _versions(images: Path | None) -> dict[str, Path]:
    """Other versions of the photos, keyed by relative name without suffix."""
    if images is None:
        return {}
    if not images.is_dir():
        raise UsageError(f"{images}: not a folder")
    found = {}
    for path in find_images(images, recursive=True):
        found[path.relative_to(images).with_suffix("").as_posix()] = path
    return found


def _source_for(record: PhotoRecord, versions: dict[str, Path], use_versions: bool) -> Path | None:
    if not use_versions:
        return Path(record.source)
    return versions.get(Path(record.name).with_suffix("").as_posix())


def _skip(record: PhotoRecord, reason: str, log: Callable[[str], None]) -> None:
    record.status, record.reason, record.matrix = "skipped", reason, None
    log(f"skipped {record.name}: {reason}")


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] * b[1] - a[1] * b[0]) <= max(*a, *b)


def _canvas_factor(run: RunRecord, versions: dict[str, Path], use_versions: bool, transforms: Any) -> float:
    """How much larger the new canvas is: the reference photo's new size over its registered size.
    A run without a reference photo (``faces``: the canvas is the template square) keeps its canvas."""
    if run.reference is None:
        return 1.0
    reference = run.by_name().get(run.reference)
    if reference is None:
        raise UsageError(f"{transforms}: its reference photo {run.reference} is not among its photos")
    ref_path = _source_for(reference, versions, use_versions)
    if ref_path is None:
        raise UsageError(f"reference photo {reference.name} has no version among the given images")
    try:
        ref_size = probe_image(ref_path).size_hw
    except PhotoError as err:
        raise UsageError(f"reference photo {err.path}: {err.reason}") from None
    return ref_size[0] / run.canvas[0]


def apply_transforms(
    transforms: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    images: str | os.PathLike[str] | None = None,
    background: str | None = None,
    device: str = "auto",
    workers: int | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> AlignResult:
    """Write the frames described by ``transforms`` (a transforms.json) into ``out``.

    ``images``: a folder with other versions of the same photos (same relative names, any suffix and
    resolution, same aspect ratio); by default the original sources are used. Photos skipped in the
    original run stay skipped; a missing or unreadable version is skipped with a reason. ``workers``:
    frames read, warped and written at once (default: one per CPU core, at most 4)."""
    log = log or (lambda _msg: None)
    workers = resolve_workers(workers)
    try:
        run = read_transforms(Path(transforms))
    except ValueError as err:
        raise UsageError(str(err)) from None
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out}: output folder is not empty; choose another folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    torch_device = pick_device(device)
    versions = _versions(Path(images) if images is not None else None)
    background = background or run.settings.get("background", "black")

    if run.canvas is None or run.output_size is None:
        raise UsageError(f"{transforms}: has no canvas; was the run complete?")
    factor = _canvas_factor(run, versions, images is not None, transforms)
    canvas_new = (round(run.canvas[0] * factor), round(run.canvas[1] * factor))
    new_H_canvas = resize_matrix(tuple(run.canvas), canvas_new)
    crop = run.crop
    if crop is not None:
        top, left = round(crop["top"] * factor), round(crop["left"] * factor)
        out_size = [round(crop["height"] * factor) // 2 * 2, round(crop["width"] * factor) // 2 * 2]
        offset = translation(-left, -top)
        new_crop = {"top": top, "left": left, "height": out_size[0], "width": out_size[1]}
    else:
        out_size, offset, new_crop = list(canvas_new), np.eye(3), None

    new_records: list[PhotoRecord] = []
    jobs: list[FrameJob] = []
    for record in run.photos:
        new = PhotoRecord(**{**record.__dict__, "extra": dict(record.extra), "output": None})
        new_records.append(new)
        if not record.usable:
            continue
        path = _source_for(record, versions, images is not None)
        if path is None:
            _skip(new, f"no version of {record.name} in {images}", log)
            continue
        try:
            size = probe_image(path).size_hw  # the header is enough to build the matrix
        except PhotoError as err:
            _skip(new, err.reason, log)
            continue
        if not _same_aspect(size, tuple(record.size)):
            reason = f"aspect ratio differs from the registered photo ({size} vs {tuple(record.size)})"
            _skip(new, reason, log)
            continue
        canvas_H_photo = new_H_canvas @ np.asarray(record.matrix) @ resize_matrix(size, tuple(record.size))
        new.matrix, new.size, new.source = canvas_H_photo.tolist(), list(size), str(path.resolve())
        target = out / (record.output or f"{Path(record.name).stem}.jpg")
        jobs.append(FrameJob(path, offset @ canvas_H_photo, target, key=new))
    # Read, warp and save overlapped on a few threads (alignimate.pipeline.frame_writer).
    frames = write_frames(
        jobs, (out_size[0], out_size[1]), background=background, device=torch_device, workers=workers
    )
    for outcome in frames:
        new = outcome.job.key
        if outcome.error is not None:
            _skip(new, outcome.error.reason, log)
        else:
            new.output = outcome.job.target.name

    result = RunRecord(
        command="apply",
        input=str(Path(images).resolve()) if images is not None else run.input,
        settings={**run.settings, "background": background},
        reference=run.reference,
        canvas=list(canvas_new),
        crop=new_crop,
        output_size=out_size,
        photos=new_records,
    )
    write_transforms(out / TRANSFORMS_NAME, result)
    write_report(out / REPORT_NAME, result)
    return AlignResult(out, result)
