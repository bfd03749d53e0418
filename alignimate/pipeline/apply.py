"""``apply_transforms``: re-apply a saved transforms.json to the same photos or to other versions.

Typical use: register small proxies, then apply the result to the full-size exports. Another
version of a photo is found by the same relative name in ``images`` (any suffix), and must have
the same aspect ratio; its matrix is rescaled, and the output canvas and crop are scaled by the
reference photo's size ratio, so the frames come out at the new resolution.

Frames are read, warped and written as numpy arrays (:func:`alignimate.io.read_image_pixels`), so
that affine frames on the CPU with a solid or transparent background, which OpenCV warps, never
import torch: its import is most of a short run's time. Colour matching, homographies, the blurred
background and a GPU import it when they need it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alignimate.errors import UsageError
from alignimate.io import PhotoError, find_images, probe_image, read_image_pixels, save_image_pixels
from alignimate.limits import size_problem
from alignimate.pipeline.exclusions import EXCLUDED_REASON, read_exclusions
from alignimate.pipeline.frame_writer import FrameJob, write_frames
from alignimate.pipeline.outputs import OutputFolder, failure_from_os_error
from alignimate.pipeline.records import (
    REPORT_NAME,
    TRANSFORMS_NAME,
    PhotoRecord,
    RunRecord,
    read_transforms,
)
from alignimate.pipeline.render import BACKGROUNDS, resize_matrix, translation
from alignimate.pipeline.run import (
    AlignResult,
    device_name,
    open_output,
    resolve_workers,
    skip_record,
    write_run,
)
from alignimate.settings import MATCH_COLORS, ApplySettings

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


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] * b[1] - a[1] * b[0]) <= max(*a, *b)


def _canvas_factor(
    run: RunRecord, versions: dict[str, Path], use_versions: bool, transforms: Any, max_pixels: int
) -> float:
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
        ref_size = probe_image(ref_path, max_pixels=max_pixels).size_hw
    except PhotoError as err:
        raise UsageError(f"reference photo {err.path}: {err.reason}") from None
    return ref_size[0] / run.canvas[0]


def apply_transforms(
    transforms: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: ApplySettings | None = None,
    *,
    images: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    exclude: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> AlignResult:
    """Write the frames described by ``transforms`` (a transforms.json) into ``out``.

    ``settings`` (:class:`~alignimate.settings.ApplySettings`; ``options`` replace its fields by
    name): ``background`` and ``match_colors`` (``"none"`` | ``"gain"`` | ``"histogram"``,
    :mod:`alignimate.pipeline.colors`) default to what the run that wrote ``transforms`` did;
    ``device``; ``max_pixels``. ``exclude``: an exclusion file saved by the
    review page (:mod:`alignimate.pipeline.exclusions`); its photos are skipped with the reason
    :data:`~alignimate.pipeline.exclusions.EXCLUDED_REASON`.

    ``images``: a folder with other versions of the same photos (same relative names, any suffix and
    resolution, same aspect ratio); by default the original sources are used. Photos skipped in the
    original run stay skipped; a missing or unreadable version is skipped with a reason. ``workers``:
    frames read, warped and written at once (default: one per CPU core, at most 4)."""
    log = log or (lambda _msg: None)
    settings = ApplySettings.with_options(settings, options)
    max_pixels = settings.max_pixels
    workers = resolve_workers(workers)
    transforms = Path(transforms)
    try:
        run = read_transforms(transforms)
    except ValueError as err:
        raise UsageError(str(err)) from None
    device = device_name(settings.device)
    images_dir = Path(images) if images is not None else None
    versions = _versions(images_dir)
    background = str(run.settings.get("background", "black"))
    if settings.background != "registered":
        background = settings.background
    match_colors = str(run.settings.get("match_colors", "none"))
    if settings.match_colors != "registered":
        match_colors = settings.match_colors
    if match_colors not in MATCH_COLORS:
        raise UsageError(f"match_colors must be one of {', '.join(MATCH_COLORS)}, got {match_colors!r}")
    excluded = read_exclusions(exclude) if exclude is not None else frozenset()
    if background not in BACKGROUNDS:
        raise UsageError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    if run.canvas is None or run.output_size is None:
        raise UsageError(f"{transforms}: has no canvas; was the run complete?")
    factor = _canvas_factor(run, versions, images is not None, transforms, max_pixels)
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
    _check_frame_size(out_size, transforms)

    # The folders the photos are read from (and the run's own folder) never receive frames.
    inputs = {transforms.parent} | ({images_dir} if images_dir is not None else set())
    if images_dir is None:
        inputs |= {Path(r.source).parent for r in run.photos if r.usable and r.source}
    folder, _ = open_output(Path(out), overwrite, command="apply", inputs=sorted(inputs), resumable=False)
    with folder:
        try:
            result = _write_all(
                run,
                folder,
                versions,
                images,
                new_H_canvas,
                offset,
                out_size,
                background,
                device,
                workers,
                max_pixels,
                log,
                match_colors,
                excluded,
            )
            result.canvas, result.crop = list(canvas_new), new_crop
            write_run(folder, result)
        except OSError as err:
            raise failure_from_os_error(err, "write") from None
        return AlignResult(folder.path, result)


def _with_colors(
    jobs: list[FrameJob], run: RunRecord, out_size: list[int], method: str, device: Any, workers: int
) -> list[FrameJob]:
    """The jobs with their colour corrections (``method`` not "none"): against the run's reference
    photo (the middle frame for a face timeline, over its face region)."""
    if method == "none" or not jobs:
        return jobs
    # Imported here: both import torch, which frames without colour matching may not need.
    from alignimate.pipeline.color_pass import with_color_corrections
    from alignimate.pipeline.face_geometry import face_region

    names = [job.key.name for job in jobs]
    reference = names.index(run.reference) if run.reference in names else len(jobs) // 2
    region = None
    points = run.settings.get("template_points")
    if run.command == "faces" and isinstance(points, list) and out_size[0] == out_size[1]:
        template = np.asarray(points, dtype=np.float64) * (out_size[0] / run.output_size[0])
        region = face_region(template, out_size[0])
    corrected = with_color_corrections(
        jobs,
        (out_size[0], out_size[1]),
        method,
        reference=reference,
        region=region,
        device=device,
        workers=workers,
    )
    return [dataclasses.replace(job, size_hw=None) for job in corrected]


def _frame_name(record: PhotoRecord, suffix: str | None, taken: set[str], folder: OutputFolder) -> str:
    """The record's own output name (with ``suffix`` when one is required), or a fresh one when it
    has none or that name is taken or held by a file alignimate did not write."""
    name = record.output
    if name is not None and suffix is not None and not name.lower().endswith(suffix):
        name = Path(name).stem + suffix
    if name is not None and name not in taken and folder.is_free(name):
        taken.add(name)
        return name
    return folder.fresh_name(Path(record.name).name, suffix or ".jpg", taken)


def _check_frame_size(size: list[int], transforms: Path) -> None:
    problem = size_problem(*size)
    if problem is not None:
        raise UsageError(f"{transforms}: frames of {problem}; use smaller versions of the photos (--images)")


def _write_all(
    run: RunRecord,
    folder: OutputFolder,
    versions: dict[str, Path],
    images: str | os.PathLike[str] | None,
    new_H_canvas: np.ndarray,
    offset: np.ndarray,
    out_size: list[int],
    background: str,
    device: Any,
    workers: int,
    max_pixels: int,
    log: Callable[[str], None],
    match_colors: str = "none",
    excluded: frozenset[str] = frozenset(),
) -> RunRecord:
    """Write every usable photo's frame into ``folder``; returns the new run record (canvas and crop
    are the caller's to fill in)."""
    new_records: list[PhotoRecord] = []
    jobs: list[FrameJob] = []
    taken = {TRANSFORMS_NAME, REPORT_NAME}
    # A transparent background needs an alpha channel, which JPEG frames cannot hold.
    suffix = ".png" if background == "transparent" else None
    for record in run.photos:
        new = PhotoRecord(**{**record.__dict__, "extra": dict(record.extra), "output": None})
        new_records.append(new)
        if record.usable and record.name in excluded:
            skip_record(new, EXCLUDED_REASON, log)
            continue
        if not record.usable:
            if record.status == "pending":
                skip_record(new, "never registered (the run that wrote this file was interrupted)", log)
            continue
        path = _source_for(record, versions, images is not None)
        if path is None:
            skip_record(new, f"no version of {record.name} in {images}", log)
            continue
        try:
            size = probe_image(path, max_pixels=max_pixels).size_hw  # the header gives the matrix
        except PhotoError as err:
            skip_record(new, err.reason, log)
            continue
        if not _same_aspect(size, tuple(record.size)):
            reason = f"aspect ratio differs from the registered photo ({size} vs {tuple(record.size)})"
            skip_record(new, reason, log)
            continue
        canvas_H_photo = new_H_canvas @ np.asarray(record.matrix) @ resize_matrix(size, tuple(record.size))
        new.matrix, new.size, new.source = canvas_H_photo.tolist(), list(size), str(path.resolve())
        name = _frame_name(record, suffix, taken, folder)
        jobs.append(FrameJob(path, offset @ canvas_H_photo, folder.path / name, key=new, size_hw=size))
    jobs = _with_colors(jobs, run, out_size, match_colors, device, workers)
    # Every frame's name is recorded as alignimate's before the first one is written.
    folder.claim(job.target.name for job in jobs)
    # Read, warp and save overlapped on a few threads (alignimate.pipeline.frame_writer).
    frames = write_frames(
        jobs,
        (out_size[0], out_size[1]),
        background=background,
        device=device,
        workers=workers,
        read=read_image_pixels,
        save=save_image_pixels,
    )
    for outcome in frames:
        new = outcome.job.key
        if outcome.error is not None:
            skip_record(new, outcome.error.reason, log)
        else:
            new.output = outcome.job.target.name

    settings = {**run.settings, "background": background}
    if match_colors != "none":
        settings["match_colors"] = match_colors
    result = RunRecord(
        command="apply",
        input=str(Path(images).resolve()) if images is not None else run.input,
        settings=settings,
        reference=run.reference,
        canvas=None,
        crop=None,
        output_size=out_size,
        photos=new_records,
    )
    return result
