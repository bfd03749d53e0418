"""``align_folder``: register every photo of a folder onto a reference and write aligned frames.

Steps: discover and order the photos; read small working copies, the photos' luma (what the engine
compares; a JPEG is decoded in draft mode, without its chroma, so a 12 MP photo decodes at a fraction
of the cost; the first ones on a background thread while torch is imported,
:mod:`alignimate.pipeline.readahead`); register them in batches with :func:`alignimate.register`; turn
each working-resolution matrix into a full-resolution one; choose the crop every frame covers
(computed from the matrices); warp each full-resolution original once and write it atomically;
write ``transforms.json`` and ``report.csv``.

A photo that cannot be used (unreadable, did not converge) is skipped with a reason and never stops
the others. Progress is checkpointed in the output folder, so an interrupted run resumes without
redoing registrations or frames that are already done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alignimate.errors import UsageError
from alignimate.io import PhotoError, read_image, read_image_pixels, save_image_pixels
from alignimate.pipeline.exclusions import EXCLUDED_REASON, read_exclusions
from alignimate.pipeline.frame_writer import FrameJob, write_frames
from alignimate.pipeline.modes import SEMANTIC_MODES, parse_mode
from alignimate.pipeline.outputs import OutputFolder, failure_from_os_error
from alignimate.pipeline.photos import Photo, Skipped
from alignimate.pipeline.readahead import ReadAhead
from alignimate.pipeline.records import PhotoRecord, RunRecord
from alignimate.pipeline.render import translation
from alignimate.pipeline.run import (
    AlignResult,
    JobRun,
    device_name,
    find_photos,
    open_output,
    pick_device,
    resolve_workers,
)
from alignimate.pipeline.stages import Row, Step, batch_length, batch_rows, run_steps
from alignimate.pipeline.video_input import open_job_input
from alignimate.settings import RegisterSettings

if TYPE_CHECKING:
    import torch

    from alignimate.pipeline.semantic_sources import SemanticSource

# torch, and every module that imports it (the engine, the semantic sources, colour matching and
# cut-outs), is imported where it is first used, after the working copies have started to be read
# ahead (alignimate.pipeline.readahead): a fresh process then spends its seconds of torch import
# with the other core decoding photos. A run with nothing to register on the CPU (one photo, a resumed
# run) never imports it: the crop and the frames of affine matrices are NumPy and OpenCV.

__all__ = ["AlignResult", "UsageError", "align_folder"]

MODES = ("pixels", *SEMANTIC_MODES)
_FRAME_SUFFIXES = (".jpg", ".png")


def _validate(settings: RegisterSettings) -> None:
    if settings.mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {settings.mode!r}")
    if 0 < settings.detect_size < 32:
        raise UsageError(f"detect_size must be at least 32 pixels, got {settings.detect_size}")
    if settings.keypoints and settings.mode in ("pixels", "masks"):
        raise UsageError(f"--keypoints is not used by --mode {settings.mode}")
    # faces and keypoints modes find no outline of the subject, and pixels mode no subject at all.
    if settings.background == "person" and settings.mode not in ("body", "masks"):
        raise UsageError(
            f"--background person needs the subject's mask: --mode body or --mode masks:DIR, "
            f"not --mode {settings.mode}"
        )
    if settings.person_fill != "black" and settings.background != "person":
        raise UsageError("--person-fill is only used with --background person")


def _recorded(settings: RegisterSettings) -> dict[str, Any]:
    """The settings that change the result, as transforms.json records them (a resumed run must have
    the same ones); "no value" is null there."""
    return {
        "mode": settings.mode,
        "model": settings.model,
        "reference": settings.reference,
        "size": settings.size,
        "loss": settings.loss,
        "crop": settings.crop,
        "background": settings.background,
        "sort": settings.sort,
        "recursive": settings.recursive,
        "source": settings.source or None,
        "keypoints": list(settings.keypoints) or None,
        "detect_size": settings.detect_size or None,
        # Recorded only when used, so runs from before the option resume as they were.
        **({"match_colors": settings.match_colors} if settings.match_colors != "none" else {}),
        **({"person_fill": settings.person_fill} if settings.background == "person" else {}),
    }


def _pick_reference(photos: list[Photo], reference: str, folder: Path) -> Photo:
    if reference == "first":
        return photos[0]
    if reference in ("middle", "auto"):
        # "auto" is the middle photo in order: over a timeline it is closest to every other photo.
        return photos[len(photos) // 2]
    wanted = Path(reference)
    candidates = [wanted, folder / wanted]
    for photo in photos:
        if any(c.exists() and os.path.samefile(c, photo.path) for c in candidates) or photo.name == reference:
            return photo
    raise UsageError(f"reference photo {reference!r} is not one of the usable photos in {folder}")


def _frame_suffix(settings: RegisterSettings) -> str:
    """``.png`` for frames with an alpha channel (which JPEG cannot hold), else ``.jpg``."""
    clear = settings.background == "transparent" or (
        settings.background == "person" and settings.person_fill == "transparent"
    )
    return ".png" if clear else ".jpg"


class _Run(JobRun[RegisterSettings]):
    """State of one ``align_folder`` call; methods are the steps, in order."""

    def __init__(
        self,
        folder: Path,
        outputs: OutputFolder,
        settings: RegisterSettings,
        device: str,
        workers: int,
        progress: bool,
        log: Callable[[str], None],
        readahead: ReadAhead | None = None,
    ) -> None:
        """``device``: by name (:func:`~alignimate.pipeline.run.device_name`); :attr:`torch_device`
        is torch's."""
        super().__init__(folder, outputs, settings, device, progress, log, workers=workers)
        self.batch_size = settings.batch_size
        self.records: dict[str, PhotoRecord] = {}
        self.readahead = readahead

    @functools.cached_property
    def torch_device(self) -> torch.device:
        """The device as torch's; the first use imports torch."""
        return pick_device(self.device)

    def registers(self, pending: list[Photo], reference: Photo) -> bool:
        """Whether the run will compute on torch (register a photo onto ``reference``, or detect in
        one), given the photos still ``pending`` (:meth:`pending`) as it stands (a reference that
        cannot be read changes it: :meth:`forget_registrations`)."""
        return self.settings.mode != "pixels" or any(p is not reference for p in pending)

    # -- bookkeeping ---------------------------------------------------------------------------
    def run_record(
        self,
        reference: Photo | None,
        crop: dict[str, int] | None = None,
        output_size: list[int] | None = None,
    ) -> RunRecord:
        return RunRecord(
            command="register",
            input=str(self.folder.resolve()),
            settings=_recorded(self.settings),
            reference=reference.name if reference else None,
            canvas=list(reference.size_hw) if reference else None,
            crop=crop,
            output_size=output_size,
            photos=[self.records[n] for n in self.order],
        )

    def checkpoint(
        self, reference: Photo, crop: dict[str, int] | None = None, output_size: list[int] | None = None
    ) -> None:
        self.book.update(lambda: self.run_record(reference, crop, output_size))

    def skip(self, name: str, reason: str) -> None:
        self.skip_record(self.records[name], reason)

    # -- steps -----------------------------------------------------------------------------------
    def add_photos(self, photos: list[Photo], skipped: list[Skipped], previous: RunRecord | None) -> None:
        reusable = previous.by_name() if previous is not None and self._same_settings(previous) else {}
        for photo in photos:
            old = reusable.get(photo.name)
            record = self.new_record(photo)
            # Reuse what an earlier run decided for an unchanged file: its matrix, or that it did not
            # converge (registration is deterministic, so trying again would give the same answer).
            decided = old is not None and (old.usable or old.converged is False)
            if decided and old.extra.get("stat") == record.extra["stat"] and old.size == record.size:
                old.source = record.source  # never a path read back from disk
                record = old
            self.records[photo.name] = record
            self.order.append(photo.name)
        for item in skipped:
            self.records[item.name] = self.unusable(item)
            self.order.append(item.name)

    def pending(self, photos: list[Photo]) -> list[Photo]:
        """The ``photos`` still to register (not decided by an earlier run, not skipped)."""
        return [p for p in photos if self.records[p.name].status == "pending"]

    def forget_registrations(self) -> None:
        """The reference changed: every earlier matrix refers to another canvas."""
        for record in self.records.values():
            if record.status in ("aligned", "reference"):
                record.status, record.matrix, record.output = "pending", None, None

    def _same_settings(self, previous: RunRecord) -> bool:
        """Whether ``previous`` registered with the settings of this run (the colour matching and the
        person fill do not change a registration; a change rewrites the frame through its signature)."""
        recorded = _recorded(self.settings)
        recorded.pop("match_colors", None)
        recorded.pop("person_fill", None)
        return all(previous.settings.get(k) == v for k, v in recorded.items())

    def read_reference(self, photos: list[Photo], reference: Photo) -> tuple[Photo, np.ndarray]:
        """The reference's working copy; an unreadable automatic reference falls back to the next photo."""
        candidates = [reference] + [p for p in photos if p is not reference]
        explicit = self.settings.reference not in ("first", "middle", "auto")
        for photo in candidates:
            try:
                return photo, self.working_copy(photo.path)
            except PhotoError as err:
                if explicit:
                    raise UsageError(f"reference photo {err.path}: {err.reason}") from None
                self.skip(photo.name, err.reason)
        raise UsageError(f"no readable photo in {self.folder}")

    def working_copy(self, path: Path) -> np.ndarray:
        """``path``'s working copy, ``(h, w, 1)`` luma: from the read-ahead when it has it, else read
        now (Pillow: the same pixels as the read-ahead's, for less CPU; once torch is imported the GIL
        is no bottleneck)."""
        image = self.readahead.take(path) if self.readahead is not None else None
        return read_image(path, max_side=self.settings.size, grey=True) if image is None else image

    def register_all(self, photos: list[Photo], reference: Photo, fixed_image: np.ndarray) -> None:
        """Register every pending photo's working copy onto ``fixed_image`` (the reference's).

        Batches of ``batch_size`` photos are read and registered on ``self.workers`` threads (much of
        the engine runs outside the GIL) and recorded here, in order; at most a few batches are in
        memory at once, however many photos there are."""
        self._mark_reference(reference)
        if not self.pending(photos):
            self._close_readahead()
            return  # nothing to register (one photo, or a resumed run): the engine is not even imported
        from alignimate.pipeline.register_stages import ReadWorkingCopy, RegisterPixels

        register = RegisterPixels(
            fixed_image, reference.size_hw, self.settings.model, self.settings.loss, self.torch_device
        )
        # On a GPU the batches queue on one device anyway; more threads would only hold more memory.
        workers = self.workers if self.torch_device.type == "cpu" else 1
        steps = [
            # Working copies are small: reading two batches ahead keeps the registration fed.
            Step([ReadWorkingCopy(self.working_copy)], workers=2, window=2 * self.batch_size),
            Step([register], batch_size=self.batch_size, workers=workers),
        ]
        self._run_stages(photos, reference, steps, "registering")
        self._close_readahead()

    def _close_readahead(self) -> None:
        """Registration is over: stop the read-ahead and drop any copy nobody took."""
        if self.readahead is not None:
            self.readahead.close()

    def register_semantic(
        self, photos: list[Photo], reference: Photo, ref_choice: Any, source: SemanticSource
    ) -> None:
        """Register every pending photo's semantic image onto the reference's, starting from the
        closed-form keypoint fit; detection runs one batch at a time, so memory stays bounded."""
        from alignimate.pipeline.register_stages import FindSemantic, RegisterSemantic, SemanticReference

        self._mark_reference(reference)
        self.records[reference.name].extra["semantic"] = ref_choice.detail or {}
        if not self.pending(photos):
            return
        size, model, loss = self.settings.size, self.settings.model, self.settings.loss
        target = SemanticReference(source, ref_choice, reference, size)
        register = RegisterSemantic(source, target, size, model, loss, self.torch_device)
        stages = [FindSemantic(source), register]
        what = {"body": "persons", "faces": "faces"}.get(source.mode, source.mode)
        # One worker: the detectors and their cache are used from one thread.
        self._run_stages(photos, reference, [Step(stages, batch_size=self.batch_size)], f"registering {what}")

    def semantic_reference(self, photos: list[Photo], wanted: Photo, source: SemanticSource) -> Any:
        """The reference photo and what the source found in it. An automatic reference in which nothing
        is found gives way to the nearest photo (in order) where something is; an explicit one is a
        usage error. ``(None, None)`` when no photo has anything."""
        explicit = self.settings.reference not in ("first", "middle", "auto")
        start = photos.index(wanted)
        order = sorted(range(len(photos)), key=lambda i: (abs(i - start), i))
        for i in order:
            photo = photos[i]
            if self.records[photo.name].status == "skipped":
                continue
            choice = source.find([photo])[0]
            if choice.instance is not None:
                return photo, choice
            if explicit:
                raise UsageError(f"reference photo {photo.path}: {choice.reason}")
            self.skip(photo.name, choice.reason)
        return None, None

    def _mark_reference(self, reference: Photo) -> None:
        record = self.records[reference.name]
        record.status, record.reason, record.matrix = "reference", "", np.eye(3).tolist()
        record.loss, record.converged, record.iterations = 0.0, True, 0

    def _run_stages(self, photos: list[Photo], reference: Photo, steps: list[Step], desc: str) -> None:
        """Run the pending photos through the ``steps`` of stages (:mod:`.register_stages`) and record
        each batch, in order, with a checkpoint after it."""
        todo = self.pending(photos)
        if not todo:
            return
        rows = ({"name": p.name, "photo": p} for p in todo)
        with self.bar(None, len(todo), desc) as bar:
            for batch in run_steps(rows, steps):
                for row in batch_rows(batch):
                    self._record(row)
                bar.update(batch_length(batch))
                self.checkpoint(reference)

    def _record(self, row: Row) -> None:
        """Record what the registration stages found for one photo."""
        record = self.records[row["name"]]
        for key in ("loss", "converged", "iterations"):
            if row.get(key) is not None:
                setattr(record, key, row[key])
        if row.get("agreement") is not None:
            record.extra["agreement"] = row["agreement"]
        if row.get("semantic") is not None:
            record.extra["semantic"] = row["semantic"]
        if row.get("status") == "skipped":
            self.skip(row["name"], row["reason"])
            return
        record.status, record.reason, record.matrix = "aligned", row["note"], row["matrix"]

    def choose_crop(self, reference: Photo) -> tuple[dict[str, int] | None, list[int]]:
        canvas = reference.size_hw
        usable = [self.records[n] for n in self.order if self.records[n].usable]
        if self.settings.crop == "none":
            return None, list(canvas)
        from alignimate.pipeline.framing import common_crop

        matrices = np.array([r.matrix for r in usable], dtype=np.float64)
        box = common_crop(matrices, [tuple(r.size) for r in usable], canvas)
        if box is None:
            self.log("warning: the aligned photos share no common area; writing uncropped frames")
            return None, list(canvas)
        return {"top": box.top, "left": box.left, "height": box.height, "width": box.width}, [
            box.height,
            box.width,
        ]

    def render_all(
        self,
        reference: Photo,
        crop: dict[str, int] | None,
        output_size: list[int],
        source: SemanticSource | None = None,
    ) -> None:
        """Write every usable photo's frame that is not on disk already with this exact warp;
        ``source``: the semantic mode's, which hands out the subject masks of ``--background person``.

        Frames are read, warped and saved as numpy arrays, as ``apply`` writes them: affine frames on
        the CPU need no torch."""
        offset = translation(-crop["left"], -crop["top"]) if crop else np.eye(3)
        taken: set[str] = set()
        usable = [self.records[n] for n in self.order if self.records[n].usable]
        for record in usable:
            # Keep names already written by an earlier (interrupted) run of the same settings.
            if record.output:
                taken.add(record.output)
        planned = [
            FrameJob(
                Path(record.source),
                offset @ np.asarray(record.matrix),
                self.out,  # named below, once it is known which frames are written
                key=record.name,
                size_hw=(record.size[0], record.size[1]),
            )
            for record in usable
        ]
        planned = self._with_colors(planned, usable, output_size)
        suffix = _frame_suffix(self.settings)
        todo: list[tuple[PhotoRecord, FrameJob, dict[str, Any]]] = []
        for record, job in zip(usable, planned, strict=True):
            signature = {"matrix": np.round(job.frame_H_photo, 9).tolist(), "size": output_size}
            if job.correction is not None:
                from alignimate.pipeline.color_pass import correction_digest

                signature["colors"] = correction_digest(job.correction)
            if source is not None and self.settings.background == "person":
                from alignimate.pipeline.cutout import cutout_signature

                photo = Photo(Path(record.source), record.name, (record.size[0], record.size[1]), None)
                signature["cutout"] = cutout_signature(self.settings.person_fill, source.mask_digest(photo))
            target = self.out / record.output if record.output else None
            if target is not None and target.exists() and record.extra.get("frame") == signature:
                continue  # written by an earlier run with exactly this warp
            todo.append((record, job, signature))
        jobs: list[FrameJob] = []
        signatures: dict[str, dict[str, Any]] = {}
        for record, job, signature in self._with_cutouts(todo, source):
            if record.output is not None and Path(record.output).suffix.lower() != suffix:
                record.output = None  # an alpha channel came or went: a new name (finish removes the old)
            if record.output is None:
                record.output = self.frame_name(record.name, suffix, taken)
            jobs.append(dataclasses.replace(job, target=self.out / record.output, size_hw=None))
            signatures[record.name] = signature
        # The frames' names are on disk before any frame is, so a resumed run knows them as its own.
        self.outputs.claim(job.target.name for job in jobs)
        self.checkpoint(reference, crop, output_size)
        self.book.flush()
        # Photos are read and warped on a few threads; each frame is saved here, in order, and
        # checkpointed (Checkpoint: every few seconds, and when the run stops), so an interrupted
        # run resumes after the last frame saved.
        background = self.settings.background
        if background == "person":
            from alignimate.pipeline.cutout import render_background

            background = render_background(self.settings.person_fill)
        outcomes = write_frames(
            jobs,
            (output_size[0], output_size[1]),
            background=background,
            device=self.device,
            workers=self.workers,
            read=read_image_pixels,
            save=save_image_pixels,
        )
        for outcome in self.bar(outcomes, len(jobs), "writing frames"):
            name = outcome.job.key
            if outcome.error is not None:
                self.skip(name, outcome.error.reason)
                continue
            self.records[name].extra["frame"] = signatures[name]
            self.checkpoint(reference, crop, output_size)

    def _with_colors(
        self, planned: list[FrameJob], usable: list[PhotoRecord], output_size: list[int]
    ) -> list[FrameJob]:
        """The frames' jobs with their colour corrections (``--match-colors``), against the reference's."""
        if self.settings.match_colors == "none":
            return planned
        from alignimate.pipeline.color_pass import with_color_corrections

        return with_color_corrections(
            planned,
            (output_size[0], output_size[1]),
            self.settings.match_colors,
            reference=next(i for i, r in enumerate(usable) if r.status == "reference"),
            device=self.device,
            workers=self.workers,
        )

    def _with_cutouts(
        self, todo: list[tuple[PhotoRecord, FrameJob, dict[str, Any]]], source: SemanticSource | None
    ) -> list[tuple[PhotoRecord, FrameJob, dict[str, Any]]]:
        """``--background person``: the frames to write, each job with its photo's subject mask; a
        photo without one is skipped here with the reason (never a frame of the whole photo). Only
        these photos' masks are fetched: a frame already written needs none."""
        if self.settings.background != "person" or not todo:
            return todo
        if source is None:
            raise UsageError(f"--background person needs --mode body or masks, not {self.settings.mode}")
        from alignimate.pipeline.cutout import Cutout

        photos = [Photo(Path(r.source), r.name, (r.size[0], r.size[1]), None) for r, _, _ in todo]
        out = []
        for (record, job, signature), mask in zip(todo, source.subject_masks(photos), strict=True):
            if isinstance(mask, str):
                self.skip(record.name, mask)
            else:
                cutout = Cutout(mask, self.settings.person_fill)
                out.append((record, dataclasses.replace(job, cutout=cutout), signature))
        return out

    def finish(self, run: RunRecord) -> RunRecord:
        """Write transforms.json and report.csv of ``run`` (:meth:`run_record`), remove the checkpoint
        and the frames of an earlier run that this run's record no longer names (photos excluded or
        skipped since; only files recorded as alignimate's)."""
        return self.close(run, stale=lambda name: Path(name).suffix.lower() in _FRAME_SUFFIXES)


def _semantic_source(
    settings: RegisterSettings,
    detector: Any,
    device: torch.device,
    cache_dir: str | os.PathLike[str] | None,
    use_cache: bool,
    log: Callable[[str], None],
) -> SemanticSource:
    """The mode's source of semantic content; a missing file, folder or model is a usage error."""
    from alignimate.detect.cache import DetectionCache
    from alignimate.detect.weights import WeightsError
    from alignimate.pipeline.semantic_sources import SemanticSource

    semantic = settings.mode in ("body", "faces")
    cache = DetectionCache(cache_dir, enabled=use_cache, warn=log) if semantic else None
    try:
        return SemanticSource(
            settings.mode,
            source=Path(settings.source) if settings.source else None,
            keypoint_names=settings.keypoints,
            detect_size=settings.detect_size or None,
            detector=detector,
            device=device,
            cache=cache,
            keep_masks=settings.background == "person",
        )
    except (FileNotFoundError, ValueError, WeightsError) as err:
        raise UsageError(str(err)) from None


def _leave_out(
    photos: list[Photo], skipped: list[Skipped], exclude: str | os.PathLike[str] | None
) -> tuple[list[Photo], list[Skipped]]:
    """The photos an exclusion file names moved to the skipped ones, with the review's reason."""
    if exclude is None:
        return photos, skipped
    excluded = read_exclusions(exclude)
    kept = [p for p in photos if p.name not in excluded]
    left_out = [Skipped(p.path, p.name, EXCLUDED_REASON) for p in photos if p.name in excluded]
    return kept, skipped + left_out


def _resolve(settings: RegisterSettings) -> RegisterSettings:
    """``mode="keypoints:FILE"`` split into mode and source (resolved to an absolute path), and
    ``loss="auto"`` made the mode's loss (zncc for pixels, mse for the semantic modes)."""
    try:
        mode, source_path = parse_mode(settings.mode, settings.source or None)
    except ValueError as err:
        raise UsageError(str(err)) from None
    loss = settings.loss if settings.loss != "auto" else ("zncc" if mode == "pixels" else "mse")
    source = "" if source_path is None else str(source_path.resolve())
    return dataclasses.replace(settings, mode=mode, loss=loss, source=source)


def align_folder(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: RegisterSettings | None = None,
    *,
    workers: int | None = None,
    detector: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    exclude: str | os.PathLike[str] | None = None,
    **options: Any,
) -> AlignResult:
    """Align every photo in ``folder`` onto a reference photo and write frames to ``out``.

    Args:
        folder: the photos (or a video file: its sampled frames are written into ``out``).
        out: the output folder for frames, transforms.json and report.csv.
        settings: what to do (:class:`~alignimate.settings.RegisterSettings`, default: its
            defaults). Among them, ``mode``: ``"pixels"`` registers the photos themselves;
            ``"body"``, ``"faces"``, ``"keypoints"`` and ``"masks"`` register semantic images
            instead (see :mod:`alignimate.pipeline.semantic_sources`): the last two read ``source``,
            a keypoint file or a mask folder (``mode="keypoints:points.json"`` works too).
        workers: threads that register batches and write frames at once (default: one per CPU
            core, at most 4); each runs PyTorch ops on ``torch.get_num_threads()`` threads of its
            own.
        detector: replaces the body or face model (any :class:`~alignimate.detect.base.Detector`).
        cache_dir, use_cache: the detection cache (default ``$ALIGNIMATE_CACHE`` or
            ``~/.cache/alignimate``); ``use_cache=False`` looks nothing up and stores nothing.
        overwrite: start over: delete the files an earlier run wrote in ``out`` (never any other
            file).
        progress: show progress bars on stderr.
        log: where messages go (default: nowhere).
        exclude: an exclusion file saved by the review page (:mod:`alignimate.pipeline.exclusions`):
            its photos are skipped with the reason "excluded by review" (and never the reference).
        options: replace fields of ``settings`` by name (``model="homography"``), checked like the
            flags.

    Returns:
        an :class:`AlignResult`; ``result.exit_code`` is 0 when all photos were aligned and 1 when
        some were skipped (each with a reason in ``report.csv``). Raises :class:`UsageError` for a
        bad request (missing folder, bad option, output folder in the way). Inputs are only read.

    Example::

        from alignimate import align_folder
        result = align_folder("photos/", "aligned/")
        print(result.summary())
    """
    folder, out = Path(folder), Path(out)
    settings = _resolve(RegisterSettings.with_options(settings, options))
    _validate(settings)  # before a video's frames are written
    source = open_job_input(folder, out, settings, command="register", overwrite=overwrite, log=log)
    folder, inputs, overwrite = source.folder, source.inputs, source.overwrite
    workers = resolve_workers(workers)
    device = device_name(settings.device)  # asks torch only where a GPU may be (checked up front)
    photos, skipped = find_photos(
        source, out, recursive=settings.recursive, sort=settings.sort, max_pixels=settings.max_pixels
    )
    photos, skipped = _leave_out(photos, skipped, exclude)
    wanted = _pick_reference(photos, settings.reference, folder) if photos else None
    outputs, previous = open_output(out, overwrite, command="register", inputs=inputs)
    with outputs, _read_ahead(settings, photos, wanted) as readahead:
        if previous is not None and (wanted is None or previous.reference != wanted.name):
            previous = None  # matrices of another reference cannot be reused
        log = log or (lambda _msg: None)
        run = _Run(folder, outputs, settings, device, workers, progress, log, readahead)
        run.add_photos(photos, skipped, previous)
        pending = run.pending(photos)
        if readahead is not None and wanted is not None:
            # What an earlier run registered needs no working copy (the reference's always does).
            todo = {p.name for p in pending}
            readahead.drop(p.path for p in photos if p is not wanted and p.name not in todo)
        if wanted is not None and run.registers(pending, wanted):
            _ = run.torch_device  # torch's import, now, while the read-ahead decodes

        def make_source() -> SemanticSource:
            return _semantic_source(settings, detector, run.torch_device, cache_dir, use_cache, log)

        try:
            if wanted is None:
                return AlignResult(out, run.finish(run.run_record(None)))
            return _register_and_render(run, photos, wanted, settings.mode, make_source)
        except OSError as err:
            raise failure_from_os_error(err, "write") from None
        finally:
            # Whatever stopped the run (an error, Ctrl-C), what was done is recorded for a resume.
            run.book.flush(quietly=True)


def _read_ahead(
    settings: RegisterSettings, photos: list[Photo], wanted: Photo | None
) -> contextlib.AbstractContextManager[ReadAhead | None]:
    """Pixels mode: the working copies read ahead, the reference's first, then in the photos' order
    (:mod:`alignimate.pipeline.readahead`); nothing for the semantic modes, which read other copies."""
    if settings.mode != "pixels" or wanted is None:
        return contextlib.nullcontext()
    order = [wanted.path] + [p.path for p in photos if p is not wanted]
    read = functools.partial(read_image_pixels, max_side=settings.size, grey=True)
    return ReadAhead(order, read, settings.size, channels=1)


def _register_and_render(
    run: _Run, photos: list[Photo], wanted: Photo, mode: str, make_source: Callable[[], SemanticSource]
) -> AlignResult:
    """Register every photo onto ``wanted`` (or the photo standing in for it), crop, write the frames."""
    semantic: SemanticSource | None = None
    if mode == "pixels":
        reference_photo, fixed_image = run.read_reference(photos, wanted)
        if reference_photo is not wanted:
            run.forget_registrations()
        run.register_all(photos, reference_photo, fixed_image)
    else:
        semantic = make_source()
        found, ref_choice = run.semantic_reference(photos, wanted, semantic)
        if found is None:
            run.log(f"nothing to register on in any photo of {run.folder} (--mode {mode})")
            return AlignResult(run.out, run.finish(run.run_record(None)))
        reference_photo = found
        if reference_photo is not wanted:
            run.forget_registrations()
        run.register_semantic(photos, reference_photo, ref_choice, semantic)
    crop_box, output_size = run.choose_crop(reference_photo)
    run.render_all(reference_photo, crop_box, output_size, semantic)
    return AlignResult(run.out, run.finish(run.run_record(reference_photo, crop_box, output_size)))
