"""``make_face_timeline``: a folder of photos of one person to a steady face timeline (``alignimate faces``).

Steps, each of which drops a photo with a reason instead of stopping the run:

1. discover and order the photos (EXIF date, then name; or name only);
2. detect every face with its 5 landmarks (MTCNN on a ``detect_size`` working copy), and embed each
   face for the identity test; both are cached per photo by content hash
   (:class:`~alignimate.detect.cache.DetectionCache`), so a rerun only looks at new or changed photos
   (:mod:`alignimate.pipeline.face_detection`);
3. choose the person's face in each photo (:func:`~alignimate.detect.identity.select_identity`):
   ``auto`` (the person in most photos), ``largest``, or the largest face of a reference photo;
4. drop faces that are not frontal (:func:`~alignimate.detect.frontal.check_frontal`; the measured
   values go into the record's ``extra["frontal"]``);
5. ``every``: keep one photo per day, ISO week or month, the most frontal one (smallest yaw
   asymmetry). Photos without a capture date have no period and are all kept;
   ``landmarks=68``: each kept face's 5 landmarks are replaced by the FFHQ recipe's points from
   dlib's 68-point model (:func:`~alignimate.detect.dlib_face.five_from_68`), run inside the face's
   box on a copy of the photo decoded with that box at least :data:`LANDMARKS68_FACE_SIDE` pixels
   (the points mapped back to photo pixels), cached like the detections. The photos kept so far
   were chosen with MTCNN's landmarks, so the choice of landmarks changes the fit, never the photos;
6. closed-form similarity (weighted Umeyama, :func:`~alignimate.core.fit.estimate_similarity`) from
   the 5 landmarks to the template points on the ``output_size`` square canvas; with the 68-point
   landmarks the ``ffhq`` template is the recipe itself, each face's own FFHQ quad mapped onto the
   canvas (:func:`~alignimate.pipeline.face_geometry.ffhq_quad_fit`);
7. ``dedupe``: drop a photo whose aligned face looks like the last kept one (see
   :data:`DEDUPE_THRESHOLD`);
8. ``refine="heatmaps"``: Gaussian heatmaps of each photo's landmarks registered by
   :func:`~alignimate.registration.register` (similarity, MSE, batched), starting from the
   closed-form matrix, onto the heatmaps of the series' reference face: the per-point median of the
   closed-form aligned landmarks, i.e. the template as this person's face fills it (onto the bare
   template the overlap objective is pulled away from the least-squares fit by the subject's own
   proportions; :mod:`alignimate.pipeline.face_refine`). A refinement that does not converge, or fits
   worse, is not used;
9. ``smooth``: temporal Gaussian smoothing of the similarities
   (:func:`~alignimate.pipeline.face_geometry.smooth_similarities`);
10. warp each original onto the canvas (black background), write the frames atomically, then
    ``transforms.json``, ``report.csv``, ``contact_sheet.jpg`` and the animation.

Templates (``"eyes"``, the default, ``"arcface"``, ``"ffhq"``), the FFHQ quad, the temporal smoothing
and their point and matrix conventions: :mod:`alignimate.pipeline.face_geometry`.

The template does not match any real face exactly: after the fit the landmarks sit some way from
their template points by the subject's own proportions. The RMS of that residual, as a fraction of
the output size ``S``, is each record's ``loss`` (column ``loss`` of report.csv). With the ``eyes``
template the fit holds the eyes (:func:`~alignimate.pipeline.face_geometry.fit_to_template`): they
all but land on their template points and the nose and mouth take the person's proportions, so the
eyes stay still from frame to frame (measured: docs/benchmarks.md, "Eyes held").

Files in the frames folder: one JPEG per kept photo (named after the photo), ``transforms.json``
(format of :mod:`alignimate.pipeline.records`; each ``matrix`` is ``frame_H_photo``, since the canvas is
the frame: no crop), ``report.csv`` (every photo, kept and dropped, with the reason),
``contact_sheet.jpg``. While running, a checkpoint lets an interrupted run resume: frames already
written with the same matrix are not written again.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignimate.core.fit import point_rms
from alignimate.core.transforms import transform_points
from alignimate.detect.base import Detector, Instance
from alignimate.detect.cache import DetectionCache
from alignimate.detect.frontal import FrontalThresholds, check_frontal
from alignimate.detect.identity import FaceEmbedder, IdentitySelection, select_identity
from alignimate.errors import UsageError
from alignimate.io import AnimationInfo, save_image
from alignimate.io.animation import ANIMATION_SUFFIXES
from alignimate.pipeline.color_pass import correction_digest, with_color_corrections
from alignimate.pipeline.contact_sheet import contact_sheet
from alignimate.pipeline.exclusions import EXCLUDED_REASON, read_exclusions
from alignimate.pipeline.face_dedupe import DEDUPE_THRESHOLD, face_thumbnails
from alignimate.pipeline.face_detection import _reference_embedding, detect_faces
from alignimate.pipeline.face_geometry import (
    TEMPLATES,
    face_region,
    face_template,
    ffhq_quad,
    ffhq_quad_fit,
    fit_to_template,
    similarity_parameters,
    smooth_similarities,
)
from alignimate.pipeline.face_landmarks68 import landmarks68_of, load_landmarks68_model
from alignimate.pipeline.face_refine import refine_with_heatmaps
from alignimate.pipeline.frame_writer import FrameJob, write_frames
from alignimate.pipeline.frames_to_animation import animate, check_animation_options
from alignimate.pipeline.outputs import (
    OutputFolder,
    check_animation_target,
    failure_from_os_error,
)
from alignimate.pipeline.photos import Photo, Skipped
from alignimate.pipeline.records import PhotoRecord, RunRecord
from alignimate.pipeline.run import AlignResult, JobRun, find_photos, open_output, pick_device
from alignimate.pipeline.video_input import open_job_input
from alignimate.settings import FACES_ANIMATION, AnimateSettings, FacesSettings

__all__ = [
    "CONTACT_SHEET_NAME",
    "DEDUPE_THRESHOLD",
    "EVERY",
    "REFINES",
    "TEMPLATES",
    "FacesResult",
    "face_template",
    "ffhq_quad",
    "make_face_timeline",
    "period_key",
    "similarity_parameters",
    "smooth_similarities",
]

EVERY = ("all", "day", "week", "month")
REFINES = ("none", "heatmaps")
CONTACT_SHEET_NAME = "contact_sheet.jpg"


# A heatmap refinement is used only if it leaves the landmarks at most this much (fraction of S, RMS)
# farther from the reference face than the closed-form fit.
_REFINE_SLACK = 0.005

# Drop categories ("drop" in a record's extra): "unreadable", "no_face", "identity" and "not_frontal"
# are problems (exit status 1); these two are the user's selection.
_SELECTIONS = ("every", "dedupe", "excluded")
# Settings recorded in transforms.json.
_RECORDED = (
    "identity",
    "max_yaw",
    "max_roll",
    "max_pitch",
    "template",
    "output_size",
    "refine",
    "sort",
    "every",
    "dedupe",
    "smooth",
    "detect_size",
)


# ------------------------------------------------------------------------------------------------
# periods and small helpers
# ------------------------------------------------------------------------------------------------


def period_key(when: datetime | None, every: str) -> str | None:
    """The period a capture time belongs to, for keeping one photo per period.

    Args:
        when: the capture time (None: undated).
        every: one of :data:`EVERY`.

    Returns:
        ``"2024-01-07"`` (day), ``"2024-W01"`` (ISO week), ``"2024-01"`` (month); None for
        ``every="all"`` or an undated photo.
    """
    if every not in EVERY:
        raise ValueError(f"every must be one of {', '.join(EVERY)}, got {every!r}")
    if when is None or every == "all":
        return None
    if every == "day":
        return when.date().isoformat()
    if every == "week":
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{when.year:04d}-{when.month:02d}"


def _noop(_message: str) -> None:
    return None


# ------------------------------------------------------------------------------------------------
# result
# ------------------------------------------------------------------------------------------------


@dataclass
class FacesResult(AlignResult):
    """What :func:`make_face_timeline` did (``aligned`` and ``skipped`` as in :class:`AlignResult`).

    out: the frames folder; run: the run record (also in transforms.json); output: the animation, or
    None when no photo was kept; animation: its :class:`~alignimate.io.AnimationInfo`; contact_sheet:
    the contact sheet image; detections: ``{"photos", "detected", "cached"}``, how many photos were
    looked at, run through the face detector in this run, and answered by the cache.
    """

    output: Path | None
    animation: AnimationInfo | None
    contact_sheet: Path | None
    detections: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when every photo is in the timeline or was left out by choice (``every``, ``dedupe``);
        1 when some were dropped for a problem (unreadable, no face, person absent, not frontal) or no
        animation could be made."""
        problems = [p for p in self.skipped if p.extra.get("drop") not in _SELECTIONS]
        return 1 if problems or self.output is None else 0

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "output": None if self.output is None else str(self.output),
            "contact_sheet": None if self.contact_sheet is None else str(self.contact_sheet),
            "aligned": len(self.aligned),
            "skipped": [
                {"name": p.name, "reason": p.reason, "kind": p.extra.get("drop", "")} for p in self.skipped
            ],
            "output_size": self.run.output_size,
            "template": self.run.settings.get("template"),
            "detections": dict(self.detections),
        }


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One readable photo while the run goes on; ``record`` is what ends up in transforms.json."""

    photo: Photo
    record: PhotoRecord
    faces: list[Instance] = field(default_factory=list)
    face: Instance | None = None
    yaw: float = 0.0
    five_point: np.ndarray | None = None  # the five-point fit, whichever fit places the frame
    fit_landmarks: np.ndarray | None = None  # the 68-point model's five points, which replace MTCNN's


class _FacesRun(JobRun[FacesSettings]):
    """State of one :func:`make_face_timeline` call; the methods are the steps, in order."""

    def __init__(
        self,
        folder: Path,
        outputs: OutputFolder,
        settings: FacesSettings,
        device: torch.device,
        cache: DetectionCache,
        progress: bool,
        log: Callable[[str], None],
    ) -> None:
        super().__init__(folder, outputs, settings, device, progress, log, own_files=[CONTACT_SHEET_NAME])
        self.cache = cache
        self.items: list[_Item] = []
        self.dropped: list[PhotoRecord] = []
        self.template = face_template(settings.template, settings.output_size)
        self.detected = 0
        self.cached = 0

    # -- bookkeeping -------------------------------------------------------------------------------
    def kept(self) -> list[_Item]:
        return [item for item in self.items if item.record.status != "skipped"]

    def drop(self, item: _Item, kind: str, reason: str) -> None:
        item.record.extra["drop"] = kind
        self.skip_record(item.record, reason)

    def run_record(self) -> RunRecord:
        by_name = {item.record.name: item.record for item in self.items}
        by_name.update({r.name: r for r in self.dropped})
        size = self.settings.output_size
        settings = {k: getattr(self.settings, k) for k in _RECORDED}
        settings["template_points"] = np.round(self.template, 4).tolist()
        settings["background"] = "black"
        if self.settings.match_colors != "none":  # recorded only when used: older records stay valid
            settings["match_colors"] = self.settings.match_colors
        if self.settings.landmarks != 5:  # the same
            settings["landmarks"] = self.settings.landmarks
        return RunRecord(
            command="faces",
            input=str(self.folder.resolve()),
            settings=settings,
            reference=None,
            canvas=[size, size],
            crop=None,
            output_size=[size, size],
            photos=[by_name[n] for n in self.order],
        )

    def checkpoint(self) -> None:
        self.book.update(self.run_record)

    # -- 1. photos -----------------------------------------------------------------------------------
    def add_photos(self, photos: list[Photo], unreadable: list[Skipped], previous: RunRecord | None) -> None:
        old = previous.by_name() if previous is not None else {}
        for photo in photos:
            record = self.new_record(photo)
            before = old.get(photo.name)
            unchanged = before is not None and before.extra.get("stat") == record.extra["stat"]
            if unchanged and before.extra.get("sha256"):
                # Unchanged file: its hash is known, and its frame may already be written.
                record.extra["sha256"] = before.extra["sha256"]
                if before.output and before.extra.get("frame"):
                    record.output, record.extra["frame"] = before.output, before.extra["frame"]
            self.items.append(_Item(photo, record))
            self.order.append(photo.name)
        for skipped in unreadable:
            self.dropped.append(self.unusable(skipped, drop="unreadable"))
            self.order.append(skipped.name)

    def leave_out(self, excluded: frozenset[str]) -> None:
        """Drop the photos an exclusion file names (the user's selection, like ``every``)."""
        for item in self.kept():
            if item.record.name in excluded:
                self.drop(item, "excluded", EXCLUDED_REASON)

    # -- 2. detection and embeddings (cached) --------------------------------------------------------
    def detect(self, detector: Detector, embedder: FaceEmbedder | None) -> None:
        """Faces (and their embeddings, unless ``embedder`` is None) of every photo
        (:func:`~alignimate.pipeline.face_detection.detect_faces`)."""

        def unreadable(item: _Item, reason: str) -> None:
            self.drop(item, "unreadable", reason)

        detected, cached = detect_faces(self.items, detector, embedder, self.cache, unreadable, self.bar)
        self.detected += detected
        self.cached += cached

    # -- 3. identity ---------------------------------------------------------------------------------
    def choose_identity(self, identity: str | np.ndarray, max_distance: float | None) -> None:
        candidates = self.kept()
        if not candidates:
            return
        selection: IdentitySelection = select_identity(
            [item.faces for item in candidates], identity, max_distance=max_distance
        )
        if selection.warning is not None:  # never a silent guess: the largest faces were kept
            self.log(f"warning: {selection.warning}")
        for i, item in enumerate(candidates):
            item.record.extra["faces_found"] = len(item.faces)
            if not selection.established:
                item.record.extra["identity_not_established"] = selection.why_not
            distance = selection.distances[i]
            if distance is not None:
                item.record.extra["identity_distance"] = round(float(distance), 5)
            chosen = selection.chosen[i]
            if chosen is None:
                reason = selection.reasons[i] or "no face"
                self.drop(item, "no_face" if reason == "no face" else "identity", reason)
                continue
            item.face = item.faces[chosen]
            face = item.face
            assert face.keypoints is not None
            item.record.extra["face"] = {
                "box": np.round(np.asarray(face.box, dtype=np.float64), 3).tolist(),
                "score": round(float(face.score), 5),
                "landmarks": np.round(np.asarray(face.keypoints, dtype=np.float64), 3).tolist(),
            }

    # -- 4. frontal filter ---------------------------------------------------------------------------
    def filter_frontal(self, thresholds: FrontalThresholds) -> None:
        for item in self.kept():
            assert item.face is not None and item.face.keypoints is not None
            result = check_frontal(item.face.keypoints, thresholds)
            item.yaw = result.measures.yaw
            item.record.extra["frontal"] = {k: round(float(v), 4) for k, v in asdict(result.measures).items()}
            if not result.keep:
                self.drop(item, "not_frontal", f"not frontal: {result.reason}")

    # -- 5. one photo per period ---------------------------------------------------------------------
    def thin(self, every: str) -> None:
        if every == "all":
            return
        best: dict[str, _Item] = {}
        for item in self.kept():
            period = period_key(item.photo.datetime, every)
            if period is None:
                continue
            item.record.extra["period"] = period
            current = best.get(period)
            if current is None or item.yaw < current.yaw:
                best[period] = item
        for item in self.kept():
            period = item.record.extra.get("period")
            winner = best.get(period) if period is not None else None
            if winner is not None and winner is not item:
                self.drop(
                    item,
                    "every",
                    f"every {every}: {period} keeps {winner.record.name} "
                    f"(yaw {winner.yaw:.2f} vs {item.yaw:.2f})",
                )

    # -- 5b. the 68-point landmarks (landmarks=68) ------------------------------------------------
    def use_landmarks68(self, model: Any) -> None:
        """Replace each kept face's landmarks by the FFHQ recipe's five points from the 68-point
        ``model`` (:mod:`alignimate.pipeline.face_landmarks68`)."""
        found = landmarks68_of(
            self.kept(),
            model,
            self.cache,
            lambda item, reason: self.drop(item, "unreadable", reason),
            self.bar,
        )
        for item in self.kept():
            item.fit_landmarks = found[id(item)]
            item.record.extra["landmarks_68"] = np.round(found[id(item)], 3).tolist()

    # -- 6. closed-form fit --------------------------------------------------------------------------
    def fit(self) -> None:
        items = self.kept()
        if not items:
            return
        landmarks = np.stack([self._landmarks(item) for item in items])
        hold_eyes = self.settings.template == "eyes"
        quad = self.settings.template == "ffhq" and self.settings.landmarks == 68
        matrices, held = fit_to_template(landmarks, self.template, hold_eyes=hold_eyes)
        five_point, _ = fit_to_template(landmarks, self.template, hold_eyes=False)
        if quad:  # the FFHQ recipe: each face's own quad onto the canvas, no template fit
            matrices = ffhq_quad_fit(landmarks, self.settings.output_size)
        for item, matrix, eyes, steady in zip(items, matrices, held, five_point, strict=True):
            self._set_matrix(item, matrix)
            item.five_point = steady
            item.record.extra["matrix_closed_form"] = matrix.tolist()
            if hold_eyes:
                # Which fit placed the face (face_geometry.fit_to_template): "eyes" holds them still.
                item.record.extra["fit"] = "eyes" if eyes else "five points (the eyes looked implausible)"
            elif quad:
                item.record.extra["fit"] = "ffhq quad"
            item.record.converged = True
            item.record.iterations = 0

    @staticmethod
    def _landmarks(item: _Item) -> np.ndarray:
        """The five points the fit uses (photo pixels): the 68-point model's when asked for, else
        MTCNN's."""
        if item.fit_landmarks is not None:
            return item.fit_landmarks
        assert item.face is not None and item.face.keypoints is not None
        return np.asarray(item.face.keypoints, dtype=np.float64)

    def _landmark_rms(self, item: _Item, matrix: np.ndarray, target: np.ndarray | None = None) -> float:
        """RMS distance, as a fraction of the output size, of the mapped landmarks to ``target``
        (default: the template points)."""
        goal = self.template if target is None else target
        mapped = transform_points(
            torch.as_tensor(np.asarray(matrix))[None], torch.as_tensor(self._landmarks(item))[None]
        )
        return (
            float(point_rms(mapped, torch.as_tensor(np.asarray(goal))[None])[0]) / self.settings.output_size
        )

    def _set_matrix(self, item: _Item, matrix: np.ndarray) -> None:
        item.record.matrix = np.asarray(matrix, dtype=np.float64).tolist()
        item.record.loss = round(self._landmark_rms(item, matrix), 6)
        item.record.status = "aligned"

    # -- 7. near-duplicates --------------------------------------------------------------------------
    def dedupe(self, threshold: float) -> None:
        items = self.kept()
        if len(items) < 2:
            return
        # Compared on the five-point fit: the steadiest alignment of two shots of one face.
        photos = [
            (
                i.photo.path,
                i.photo.size_hw,
                np.asarray(i.record.matrix if i.five_point is None else i.five_point),
            )
            for i in items
        ]
        thumbs = face_thumbnails(photos, self.template, self.workers)
        last: tuple[_Item, np.ndarray] | None = None
        for item, thumb in self.bar(zip(items, thumbs, strict=True), len(items), "near-duplicates"):
            if isinstance(thumb, str):
                self.drop(item, "unreadable", thumb)
                continue
            if last is not None:
                difference = float(np.mean(np.abs(thumb - last[1])))
                item.record.extra["dedupe_difference"] = round(difference, 5)
                if difference < threshold:
                    self.drop(
                        item,
                        "dedupe",
                        f"near-duplicate of {last[0].record.name} "
                        f"(difference {difference:.3f} < {threshold:.3f})",
                    )
                    continue
            last = (item, thumb)

    # -- 8. heatmap refinement -----------------------------------------------------------------------
    def refine(self) -> None:
        """Register each photo's landmark heatmaps onto the heatmaps of the series' reference face
        (:func:`~alignimate.pipeline.face_refine.refine_with_heatmaps`), starting from the closed-form
        matrix. A refinement is used when it converged and leaves the landmarks no farther (RMS) from the
        reference face than the closed-form fit did, up to ``_REFINE_SLACK``."""
        items = self.kept()
        if not items:
            return
        landmarks = torch.tensor(np.stack([self._landmarks(item) for item in items]))
        matrices = torch.tensor(np.stack([np.asarray(item.record.matrix) for item in items]))
        size = self.settings.output_size
        reference, refined, result = refine_with_heatmaps(landmarks, matrices, size, self.device)
        for i, item in enumerate(items):
            before = self._landmark_rms(item, matrices[i].numpy(), reference)
            after = self._landmark_rms(item, refined[i].numpy(), reference)
            converged = bool(result.converged[i])
            used = converged and bool(np.isfinite(after)) and after <= before + _REFINE_SLACK
            item.record.extra["refine"] = {
                "converged": converged,
                "loss": round(float(result.loss[i]), 8),
                "iterations": int(result.iterations[i]),
                "reference_rms_before": round(before, 6),
                "reference_rms_after": round(after, 6),
                "used": used,
            }
            item.record.converged = converged
            item.record.iterations = int(result.iterations[i])
            if used:
                self._set_matrix(item, refined[i].numpy())
            else:
                self.log(f"{item.record.name}: heatmap refinement not used (kept the closed-form fit)")

    # -- 9. temporal smoothing -----------------------------------------------------------------------
    def smooth(self, sigma: float) -> None:
        items = self.kept()
        if sigma <= 0 or len(items) < 2:
            return
        matrices = np.stack([np.asarray(item.record.matrix) for item in items])
        smoothed = smooth_similarities(matrices, [item.photo.size_hw for item in items], sigma)
        for item, before, after in zip(items, matrices, smoothed, strict=True):
            item.record.extra["matrix_unsmoothed"] = before.tolist()
            self._set_matrix(item, after)

    # -- 10. frames ------------------------------------------------------------------------------------
    def render(self) -> None:
        items = self.kept()
        size = self.settings.output_size
        taken = {item.record.output for item in items if item.record.output}
        # Decoding at about the output's resolution (1.5x) is an antialiased downscale, and cheap for
        # JPEG; only the part of the photo the frame shows is warped.
        planned = [
            FrameJob(
                item.photo.path,
                np.asarray(item.record.matrix),
                self.out,  # named below, once it is known which frames are written
                key=item,
                size_hw=item.photo.size_hw,
                read_margin=1.5,
            )
            for item in items
        ]
        # Colours are matched over the face (the background changes from photo to photo), against the
        # middle photo of the timeline.
        planned = with_color_corrections(
            planned,
            (size, size),
            self.settings.match_colors,
            reference=len(planned) // 2,
            region=face_region(self.template, size),
            device=self.device,
            workers=self.workers,
        )
        jobs = []
        for item, job in zip(items, planned, strict=True):
            signature = {"matrix": np.round(np.asarray(item.record.matrix), 9).tolist(), "size": [size, size]}
            if job.correction is not None:
                signature["colors"] = correction_digest(job.correction)
            target = self.out / item.record.output if item.record.output else None
            if target is not None and target.exists() and item.record.extra.get("frame") == signature:
                continue  # written by an earlier run with exactly this warp
            if item.record.output is None:
                item.record.output = self.frame_name(item.record.name, ".jpg", taken)
            item.record.extra.pop("frame", None)
            jobs.append(dataclasses.replace(job, target=self.out / item.record.output, key=(item, signature)))
        # Every frame's name is recorded as alignimate's before the first one is written.
        self.outputs.claim(job.target.name for job in jobs)
        frames = write_frames(jobs, (size, size), device=self.device, workers=self.workers, save=save_image)
        for outcome in self.bar(frames, len(jobs), "writing frames"):
            item, signature = outcome.job.key
            if outcome.error is not None:
                self.drop(item, "unreadable", outcome.error.reason)
                continue
            item.record.extra["frame"] = signature
            self.checkpoint()

    def finish(self) -> RunRecord:
        # Frames of photos no longer in the timeline (dropped, thinned, renamed) go; a video's frames
        # sub-folder stays: it is the input of the next run.
        return self.close(self.run_record(), stale=lambda name: not (self.out / name).is_dir())


# ------------------------------------------------------------------------------------------------
# validation and the output folder
# ------------------------------------------------------------------------------------------------


def _validate(output: Path, settings: FacesSettings, animation: AnimateSettings) -> None:
    if output.suffix.lower() not in ANIMATION_SUFFIXES:
        raise UsageError(f"output must end in {', '.join(ANIMATION_SUFFIXES)}, got {output.name!r}")
    if output.parent.exists() and not output.parent.is_dir():
        raise UsageError(f"{output.parent}: not a folder, so the output cannot be written there")
    caption = animation.caption
    if caption not in ("none", "date", "name", "index") and not caption.startswith("age:"):
        raise UsageError(f"caption must be date, name, index, age:YYYY-MM-DD or none, got {caption!r}")
    if caption.startswith("age:"):
        try:
            datetime.fromisoformat(caption[4:])
        except ValueError:
            raise UsageError(f"caption age: needs a date as YYYY-MM-DD, got {caption[4:]!r}") from None


def _settings(
    settings: FacesSettings | None, animation: AnimateSettings | None, options: dict[str, Any]
) -> tuple[FacesSettings, AnimateSettings]:
    """The run's settings: ``settings`` and ``animation`` (defaults: FacesSettings() and
    FACES_ANIMATION) with the keyword ``options`` of the Python API applied to whichever has them."""
    animation_keys = {f.name for f in dataclasses.fields(AnimateSettings)}
    faces_options = {k: v for k, v in options.items() if k not in animation_keys}
    animation_options = {k: v for k, v in options.items() if k in animation_keys}
    return (
        FacesSettings.with_options(settings, faces_options),
        AnimateSettings.with_options(animation or FACES_ANIMATION, animation_options),
    )


# ------------------------------------------------------------------------------------------------
# public entry point
# ------------------------------------------------------------------------------------------------


def make_face_timeline(
    folder: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: FacesSettings | None = None,
    animation: AnimateSettings | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    max_width: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    detector: Detector | None = None,
    embedder: FaceEmbedder | None = None,
    exclude: str | os.PathLike[str] | None = None,
    **options: Any,
) -> FacesResult:
    """Turn the photos in ``folder`` into a face timeline animation at ``output`` (.mp4, .webm, .gif).

    The aligned frames, ``transforms.json``, ``report.csv`` and ``contact_sheet.jpg`` go to ``out_dir``
    (default: ``<output stem>_frames/`` next to ``output``); rerunning with the same folders reuses the
    detection cache and the frames already written, so only new or changed photos cost time. The
    animation is always rewritten. Steps: see the module docstring; templates:
    :mod:`alignimate.pipeline.face_geometry`.

    Args:
        folder: the photos (or a video file: its sampled frames are written into ``out_dir``).
        output: the animation file.
        settings: what to keep and how to align (:class:`~alignimate.settings.FacesSettings`:
            identity, the frontal filter's thresholds, template, landmarks, output size, refine,
            every, dedupe, smooth, ...).
        animation: how the frames become ``output`` (:class:`~alignimate.settings.AnimateSettings`,
            default :data:`~alignimate.settings.FACES_ANIMATION`).
        out_dir: the frames folder (default ``<output stem>_frames/``).
        max_width: as :func:`alignimate.pipeline.animate`.
        cache_dir: detection cache folder (default ``$ALIGNIMATE_CACHE`` or ``~/.cache/alignimate``).
        use_cache: False looks nothing up and stores nothing.
        overwrite: start over: delete the files an earlier run wrote in the frames folder, and
            replace an existing ``output``.
        progress: show progress bars on stderr.
        log: where messages go (default: nowhere).
        detector, embedder: replace the MTCNN face detector and the face embedder (dlib's
            descriptor, else FaceNet: :func:`~alignimate.detect.identity.make_face_embedder`), e.g.
            with a file-based detector.
        exclude: an exclusion file saved by the review page (:mod:`alignimate.pipeline.exclusions`):
            its photos are left out with the reason "excluded by review" (a selection, like
            ``every``).
        options: replace fields of ``settings`` or ``animation`` by name (``every="week"``,
            ``fps=12``), checked like the flags.

    Returns:
        a :class:`FacesResult` (``exit_code`` 0 or 1). Raises :class:`UsageError` for a bad request.
    """
    folder, output = Path(folder), Path(output)
    log = log or _noop
    settings, animation = _settings(settings, animation, options)
    landmarks68 = load_landmarks68_model() if settings.landmarks == 68 else None
    out = Path(out_dir) if out_dir is not None else output.parent / f"{output.stem}_frames"
    _validate(output, settings, animation)  # before a video's frames are written
    source = open_job_input(
        folder, out, settings, command="faces", overwrite=overwrite, label="frames folder", log=log
    )
    folder, inputs, overwrite = source.folder, source.inputs, source.overwrite
    check_animation_options(output, animation)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)  # like `register --out`, create what is missing
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UsageError(f"{output.parent}: cannot create the animation's folder ({reason})") from None
    identity_path = None
    if settings.identity not in ("auto", "largest"):
        identity_path = Path(settings.identity)
        if not identity_path.is_file():
            raise UsageError(
                f"identity must be auto, largest or the path of a photo; {settings.identity!r} is not a file"
            )
        settings = dataclasses.replace(settings, identity=str(identity_path.resolve()))
    torch_device = pick_device(settings.device)
    photos, unreadable = find_photos(
        source,
        out,
        sort=settings.sort,
        max_pixels=settings.max_pixels,
        leave_out=output,
        label="frames folder",
    )
    excluded = read_exclusions(exclude) if exclude is not None else frozenset()
    outputs, previous = open_output(
        out,
        overwrite,
        command="faces",
        inputs=inputs,
        extra_names=[CONTACT_SHEET_NAME],
        label="frames folder",
        hint="choose another one (--out-dir)",
    )
    with outputs:
        if not outputs.may_replace_animation(output):
            check_animation_target(output, None, overwrite=overwrite)
        try:
            return _run_faces(
                folder,
                output,
                outputs,
                previous,
                photos,
                unreadable,
                settings,
                torch_device,
                detector,
                embedder,
                identity_path,
                cache_dir,
                use_cache,
                progress,
                log,
                excluded,
                animation=animation,
                max_width=max_width,
                landmarks68=landmarks68,
            )
        except OSError as err:
            raise failure_from_os_error(err, "write") from None


def _run_faces(
    folder: Path,
    output: Path,
    outputs: OutputFolder,
    previous: RunRecord | None,
    photos: list[Photo],
    unreadable: list[Skipped],
    settings: FacesSettings,
    torch_device: torch.device,
    detector: Detector | None,
    embedder: FaceEmbedder | None,
    identity_path: Path | None,
    cache_dir: str | os.PathLike[str] | None,
    use_cache: bool,
    progress: bool,
    log: Callable[[str], None],
    excluded: frozenset[str],
    animation: AnimateSettings,
    max_width: int | None,
    landmarks68: Any = None,
) -> FacesResult:
    """The steps of :func:`make_face_timeline` once its requests are checked and its folder is open."""
    out = outputs.path
    identity = settings.identity
    cache = DetectionCache(cache_dir, enabled=use_cache, warn=log)
    if detector is None:
        from alignimate.detect.faces import FaceDetector

        detector = FaceDetector(working_size=settings.detect_size, device=torch_device)
    if embedder is None and identity != "largest":
        from alignimate.detect.identity import make_face_embedder

        embedder = make_face_embedder(device=torch_device, log=log)  # None: says why
    run = _FacesRun(folder, outputs, settings, torch_device, cache, progress, log)
    try:
        run.add_photos(photos, unreadable, previous)
        run.leave_out(excluded)
        run.detect(detector, None if identity == "largest" else embedder)
        if identity_path is not None:
            if embedder is None:
                raise UsageError("--identity PHOTO needs a face descriptor and none is available (see above)")
            chosen: str | np.ndarray = _reference_embedding(identity_path, detector, embedder, cache)
        else:
            chosen = identity
        max_distance = None if embedder is None else embedder.default_max_distance
        run.choose_identity(chosen, max_distance)
        run.filter_frontal(
            FrontalThresholds(
                max_yaw=settings.max_yaw,
                max_roll_deg=settings.max_roll,
                max_pitch=settings.max_pitch,
            )
        )
        run.thin(settings.every)
        if landmarks68 is not None:
            run.use_landmarks68(landmarks68)
        run.fit()
        if settings.dedupe:
            run.dedupe(DEDUPE_THRESHOLD)
        if settings.refine == "heatmaps":
            run.refine()
        run.smooth(settings.smooth)
        run.render()
        record = run.finish()
    finally:
        # Whatever stopped the run (an error, Ctrl-C), what was done is recorded for a resume.
        run.book.flush(quietly=True)
    sheet = contact_sheet(record.photos, out, outputs.path_of(CONTACT_SHEET_NAME))
    detections = {"photos": len(run.items), "detected": run.detected, "cached": run.cached}
    kept = [p for p in record.photos if p.usable and p.output]
    if not kept:
        log("no photo has a usable face: no animation written")
        return FacesResult(out, record, None, None, sheet, detections)
    outputs.record_animation(output)  # before it exists: a rerun may replace what this run wrote
    info = animate(out, output, animation, max_width=max_width, log=log, overwrite=True)
    return FacesResult(out, record, info.path, info, sheet, detections)
