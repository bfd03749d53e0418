"""The stages of ``register`` (:mod:`alignimate.pipeline.register_folder`), in the format of
:mod:`alignimate.pipeline.stages`.

Rows carry ``name`` and ``photo`` (:class:`~alignimate.pipeline.photos.Photo`). The stages add:

- :class:`ReadWorkingCopy`: ``image``, the working copy (``(h, w, 1)`` luma or ``(h, w, 3)`` RGB; JPEG
  draft mode, so a 12 MP photo decodes at a fraction of the cost);
- :class:`RegisterPixels`: registers the working copies onto the reference's, batched per working
  size; :class:`FindSemantic` and :class:`RegisterSemantic` do the same for the semantic modes
  (detections or user files, then heatmaps or masks, starting from the closed-form keypoint fit).

Both registration stages add ``loss``, ``converged``, ``iterations``, ``agreement`` (robust pixel
registration) or ``semantic`` (what the source found), and then either ``matrix``, the full-resolution
``canvas_H_photo`` (3x3 pixel matrix, docs/conventions.md) with ``note`` (a "kept: ..." remark or
""), or mark the row skipped with the reason (:func:`registration_verdict`, an unusable matrix).
They drop the working copy, so a batch leaving them holds no image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignimate.core.fit import point_rms
from alignimate.core.transforms import rescale_matrix, transform_points
from alignimate.pipeline.photos import Photo
from alignimate.pipeline.records import matrix_problem
from alignimate.pipeline.render import linear_scale
from alignimate.pipeline.semantic_sources import SemanticSource, keypoint_init, working_size
from alignimate.pipeline.stages import Batch, Row, RowStage, Stage, batch_rows, rows_batch
from alignimate.registration import register

__all__ = [
    "MAX_ZNCC_LOSS",
    "MIN_AGREEMENT",
    "FindSemantic",
    "ReadWorkingCopy",
    "RegisterPixels",
    "RegisterSemantic",
    "SemanticReference",
    "registration_verdict",
]

MAX_ZNCC_LOSS = 0.25
MIN_AGREEMENT = 0.5


def registration_verdict(
    loss_name: str, converged: bool, loss: float, agreement: float | None = None
) -> str | None:
    """Whether a registration is usable, judged from its loss, convergence and agreement.

    Args:
        loss_name: the loss it minimised.
        converged: whether it converged.
        loss: its final loss.
        agreement: robust registrations: the fraction of the overlap the alignment explains
            (:attr:`~alignimate.registration.RegistrationResult.agreement`). Below
            :data:`MIN_AGREEMENT` the photo is mostly occluded or shows another scene, and is
            skipped with that reason, whatever its loss (which robust registrations take over the
            agreeing pixels only).

    Returns:
        ``None`` for a clean result, a reason starting with "kept" for a usable one worth a note,
        any other reason for a photo to skip.

    With ``zncc`` (1 - correlation, the default for photos) the loss itself says whether the
    alignment is right: correct pairs score near 0, wrong ones (a mirror-image match, noise, no
    overlap) far higher (observed values: docs/benchmarks.md, design measurements). So a pair is
    kept when its loss is at most :data:`MAX_ZNCC_LOSS`, even if it ran out of iterations just
    short of the tolerance (common when the model cannot fit the photo exactly, e.g. a similarity
    on a tilted shot), and skipped above it even if it converged. Other losses have no such
    absolute scale; there a pair must converge."""
    if agreement is not None and agreement < MIN_AGREEMENT:
        return (
            f"only {agreement:.0%} of the photo agrees with the reference (mostly occluded, or another "
            f"scene); at least {MIN_AGREEMENT:.0%} is needed"
        )
    if loss_name == "zncc":
        if loss > MAX_ZNCC_LOSS:
            return f"registration looks wrong (zncc loss {loss:.3f} > {MAX_ZNCC_LOSS})"
        return None if converged else f"kept: not fully converged (zncc loss {loss:.3f})"
    return None if converged else f"registration did not converge ({loss_name} loss {loss:.3g})"


def _as_tensor(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    batch = torch.from_numpy(np.stack(images)).to(device)
    return batch.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)


def _full_resolution_matrix(fixed_H_moving: np.ndarray, work: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Turn a working-resolution ``fixed_H_moving`` into ``canvas_H_photo`` between the full-size
    images; ``work`` is ``(moving_work, fixed_work, moving_full, fixed_full)``, each ``(h, w)``."""
    matrix = torch.from_numpy(np.asarray(fixed_H_moving, dtype=np.float64))[None]
    return rescale_matrix(matrix, *work)[0].numpy()


def _keypoint_rms(
    fixed_H_moving: np.ndarray,
    moving: tuple[np.ndarray, np.ndarray],
    fixed: tuple[np.ndarray, np.ndarray],
    fixed_size: tuple[int, int],
) -> float:
    """Weighted RMS distance between the mapped moving keypoints and the reference's, as a fraction of
    the reference's longer side (a diagnostic stored per photo in transforms.json)."""
    matrix = torch.from_numpy(np.asarray(fixed_H_moving, dtype=np.float64))[None]
    mapped = transform_points(matrix, torch.from_numpy(np.asarray(moving[0], dtype=np.float64))[None])
    weights = torch.from_numpy(np.asarray(moving[1] * fixed[1], dtype=np.float64))[None]
    rms = float(point_rms(mapped, torch.from_numpy(np.asarray(fixed[0], dtype=np.float64))[None], weights)[0])
    return round(rms / max(fixed_size), 6)


def _usable_matrix(row: Row, matrix: np.ndarray) -> Row:
    """The row with its full-resolution ``matrix``, or skipped when the matrix cannot be used."""
    photo: Photo = row["photo"]
    problem = matrix_problem(matrix.tolist(), photo.size_hw)
    if problem is not None:
        return {**row, "status": "skipped", "reason": f"registration gave an unusable matrix (it {problem})"}
    return {**row, "matrix": matrix.tolist()}


def _skipped(row: Row, reason: str) -> Row:
    return {**row, "status": "skipped", "reason": reason}


class ReadWorkingCopy(RowStage):
    """``photo`` -> ``image``: the working copy ``read(path)`` gives, ``(h, w, 1)`` or ``(h, w, 3)``
    uint8 (e.g. :func:`~alignimate.io.planes.read_image_pixels` with the working size as ``max_side``
    and ``grey``: the engine registers the luma anyway)."""

    num_cpus = 0.5

    def __init__(self, read: Callable[[Path], np.ndarray]) -> None:
        self.read = read

    def process(self, row: Row) -> Row:
        return {"image": self.read(row["photo"].path)}


class RegisterPixels(Stage):
    """Register each row's working copy onto the reference's working copy ``fixed_image`` (module
    docstring for the columns it adds), batched per working size."""

    def __init__(
        self,
        fixed_image: np.ndarray,
        reference_size_hw: tuple[int, int],
        model: str,
        loss: str,
        device: torch.device,
    ) -> None:
        self.fixed_image, self.reference_size_hw = fixed_image, reference_size_hw
        self.model, self.loss, self.device = model, loss, device
        self.fixed: torch.Tensor | None = None

    def setup(self) -> None:
        self.fixed = _as_tensor([self.fixed_image], self.device)

    def __call__(self, batch: Batch) -> Batch:
        rows = batch_rows(batch)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, row in enumerate(rows):
            if row.get("status") != "skipped":
                groups.setdefault(tuple(row["image"].shape[:2]), []).append(i)
        for work_size, members in groups.items():
            self._register(rows, members, work_size)
        return rows_batch([{**row, "image": None} for row in rows])

    def _register(self, rows: list[Row], members: list[int], work_size: tuple[int, int]) -> None:
        if self.fixed is None:
            self.setup()
        moving = _as_tensor([rows[i]["image"] for i in members], self.device)
        result = register(moving, self.fixed, self.model, loss=self.loss, device=self.device, grey=True)
        matrices = result.matrix.double().cpu().numpy()
        fixed_work = tuple(self.fixed_image.shape[:2])
        for k, i in enumerate(members):
            agreement = None if result.agreement is None else round(float(result.agreement[k]), 4)
            row = {
                **rows[i],
                "loss": float(result.loss[k]),
                "converged": bool(result.converged[k]),
                "iterations": int(result.iterations[k]),
                "agreement": agreement,
            }
            verdict = registration_verdict(self.loss, row["converged"], row["loss"], agreement)
            if verdict is not None and not verdict.startswith("kept"):
                rows[i] = _skipped(row, verdict)
                continue
            sizes = (work_size, fixed_work, row["photo"].size_hw, self.reference_size_hw)
            matrix = _full_resolution_matrix(matrices[k], sizes)
            rows[i] = _usable_matrix({**row, "note": verdict or ""}, matrix)


class FindSemantic(Stage):
    """``photo`` -> ``choice``: what ``source`` found in each photo (its detector runs once per batch);
    a photo where it found nothing is skipped with the source's reason."""

    def __init__(self, source: SemanticSource) -> None:
        self.source = source

    def __call__(self, batch: Batch) -> Batch:
        rows = batch_rows(batch)
        todo = [i for i, row in enumerate(rows) if row.get("status") != "skipped"]
        found = self.source.find([rows[i]["photo"] for i in todo]) if todo else []
        for i, choice in zip(todo, found, strict=True):
            rows[i] = (
                {**rows[i], "choice": choice}
                if choice.instance is not None
                else _skipped(rows[i], choice.reason)
            )
        return rows_batch(rows)


class SemanticReference:
    """What every photo is registered onto in a semantic mode: the reference's semantic image and, for
    modes that use keypoints, its points and heatmap sigma, at the working size ``work``."""

    def __init__(self, source: SemanticSource, choice: Any, photo: Photo, size: int) -> None:
        source.resolve_names(choice.instance)
        self.size_hw = photo.size_hw
        self.work = working_size(photo.size_hw, size)
        self.points = (
            source.points(choice.instance, photo.size_hw, self.work) if source.uses_keypoints else None
        )
        self.sigma = None if self.points is None else source.sigma(*self.points, self.work)
        self.image = source.image(choice.instance, self.work, self.points, self.sigma)[None]


class RegisterSemantic(Stage):
    """Register each row's semantic image (made from its ``choice``) onto the reference's, starting
    from the closed-form keypoint fit; batched per working size (module docstring for the columns)."""

    def __init__(
        self,
        source: SemanticSource,
        reference: SemanticReference,
        size: int,
        model: str,
        loss: str,
        device: torch.device,
    ) -> None:
        self.source, self.reference, self.size = source, reference, size
        self.model, self.loss, self.device = model, loss, device

    def __call__(self, batch: Batch) -> Batch:
        rows = batch_rows(batch)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, row in enumerate(rows):
            if row.get("status") != "skipped":
                groups.setdefault(working_size(row["photo"].size_hw, self.size), []).append(i)
        for work, members in groups.items():
            self._register(rows, members, work)
        return rows_batch(rows)

    def _register(self, rows: list[Row], members: list[int], work: tuple[int, int]) -> None:
        ref, source = self.reference, self.source
        inits: list[np.ndarray | None] = []
        keypoints: list[tuple[np.ndarray, np.ndarray] | None] = []
        usable: list[int] = []
        for i in members:
            init, points = None, None
            if ref.points is not None:
                points = source.points(rows[i]["choice"].instance, rows[i]["photo"].size_hw, work)
                init = keypoint_init(*points, *ref.points, self.model)
                if init is None:
                    names = ", ".join(source.names or ())
                    rows[i] = _skipped(
                        rows[i], f"none of the keypoints ({names}) was found with enough confidence"
                    )
                    continue
            usable.append(i)
            inits.append(init)
            keypoints.append(points)
        if not usable:
            return
        # The moving heatmaps get the reference's sigma divided by their scale, so once warped their
        # blobs are the reference's size and do not bias the scale the registration finds.
        sigmas = [None if m is None or ref.sigma is None else ref.sigma / linear_scale(m) for m in inits]
        moving = torch.stack(
            [
                source.image(rows[i]["choice"].instance, work, k, s)
                for i, k, s in zip(usable, keypoints, sigmas, strict=True)
            ]
        )
        init_t = None if ref.points is None else torch.as_tensor(np.stack(inits), dtype=torch.float32)
        result = register(
            moving,
            ref.image,
            self.model,
            loss=self.loss,
            init=init_t,
            device=self.device,
            # Heatmaps and silhouettes are exactly 0 almost everywhere: that is content here, not an
            # empty border, and their residuals are too sparse for a robust scale.
            robust=False,
            ignore_empty=False,
        )
        matrices = result.matrix.double().cpu().numpy()
        for k, i in enumerate(usable):
            row = {
                **rows[i],
                "loss": float(result.loss[k]),
                "converged": bool(result.converged[k]),
                "iterations": int(result.iterations[k]),
            }
            matrix, note = matrices[k], ""
            if not (row["converged"] and np.isfinite(matrix).all()):
                if inits[k] is None:
                    rows[i] = _skipped(
                        row, f"registration did not converge ({self.loss} loss {row['loss']:.3g})"
                    )
                    continue
                matrix = inits[k]
                note = "kept: keypoint fit (the heatmap registration did not converge)"
            detail = dict(row["choice"].detail or {})
            if keypoints[k] is not None and ref.points is not None:
                detail["keypoint_rms"] = _keypoint_rms(matrix, keypoints[k], ref.points, ref.work)
            full = _full_resolution_matrix(matrix, (work, ref.work, row["photo"].size_hw, ref.size_hw))
            rows[i] = _usable_matrix({**row, "semantic": detail, "note": note}, full)
