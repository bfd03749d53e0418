"""The semantic modes of ``register``: what each photo is registered on when it is not its pixels.

``--mode body``
    the main person of each photo (Mask R-CNN + Keypoint R-CNN, :mod:`alignimate.detect.persons`):
    Gaussian heatmaps around the chosen COCO keypoints (default: left ear, shoulder and hip, the
    side-on pose of a pregnancy series), weighted by each keypoint's confidence and multiplied by
    the person's soft mask, so the silhouette near the keypoints counts and the background does not.
``--mode faces``
    the main face of each photo (MTCNN, :mod:`alignimate.detect.faces`): heatmaps of its 5
    landmarks. (``alignimate faces`` is the full face-timeline command; this mode keeps the
    reference photo's canvas instead of a face template.)
``--mode keypoints FILE``
    keypoints from a JSON/CSV file (:class:`alignimate.detect.files.KeypointFile`), any names.
``--mode masks DIR``
    one mask PNG per photo (:class:`alignimate.detect.files.MaskFolder`): the mask itself is the
    image that is registered.

A semantic image has one channel per keypoint (its heatmap times the mask), so the registration
matches each keypoint's blob only with its own partner: the left ear never pulls towards the
shoulder. Masks mode has one channel, the mask. The heatmaps are registered by plain least squares
(``robust=False``, ``ignore_empty=False``): they are exactly zero almost everywhere, which here is
content rather than an empty border, and their residuals are too sparse for a robust scale.
Coordinates in keypoint files and masks refer to the photo as it is displayed, i.e. after its EXIF
orientation, like every coordinate in alignimate (docs/conventions.md).

``--background person`` needs each photo's subject mask (:meth:`SemanticSource.subject_masks`): in
masks mode the user's file, read when the frame is written; in body mode the mask of the person the
registration chose, which the source keeps (compressed) when made with ``keep_masks=True``, so that
nothing is detected twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignimate.core.fit import MIN_POINTS
from alignimate.core.resize import fit_size
from alignimate.detect.base import Detector, Instance, detect_each, map_instance_to_original
from alignimate.detect.cache import DetectionCache
from alignimate.detect.semantic import confidence_weights, heatmap_image, keypoints_at, resized_mask
from alignimate.io import PhotoError, read_images_parallel
from alignimate.pipeline.cutout import SubjectMask
from alignimate.pipeline.modes import SEMANTIC_MODES, parse_mode
from alignimate.pipeline.photos import Photo
from alignimate.registration import register_points

__all__ = [
    "DEFAULT_BODY_DETECT_SIZE",
    "SEMANTIC_MODES",
    "SIGMA_FRAC",
    "SemanticSource",
    "keypoint_init",
    "parse_mode",
    "working_size",
]

# Gaussian sigma: a fraction of the working image's long side (alignimation's 0.04), but at most a
# quarter of the keypoints' spread, or a face's five blobs, 20 px each at 512 px, would melt into
# one round blob that says nothing about rotation or scale; and never below 1.5 px.
SIGMA_FRAC = 0.04
_SIGMA_OF_SPREAD = 0.25
_MIN_SIGMA = 1.5
# Long side of the copy the person detectors see; the photo is decoded at this size directly
# (JPEG draft mode), so a 12 MP photo costs a fraction of a full decode.
DEFAULT_BODY_DETECT_SIZE = 800
# Masks whose aspect ratio differs from the photo's by more than this are for another picture
# (typically one saved without the photo's EXIF rotation).
_ASPECT_TOLERANCE = 0.03
# Fewest points with weight each motion model needs for a closed-form fit.
_WHAT = {"body": "person", "faces": "face"}
# Photos detected at once when masks are fetched for frames whose registration was reused.
_MASK_BATCH = 16


def working_size(size_hw: Sequence[int], long_side: int) -> tuple[int, int]:
    """The size heatmaps and masks are drawn at, whatever the photo's.

    Args:
        size_hw: the photo's ``(h, w)``.
        long_side: pixels of the longer side (a smaller photo is enlarged too).

    Returns:
        ``(h, w)`` (:func:`alignimate.core.resize.fit_size`).
    """
    return fit_size((int(size_hw[0]), int(size_hw[1])), long_side, allow_upscale=True)


@dataclass
class _Choice:
    """What was found in one photo: the chosen instance in the photo's pixel coordinates, or why
    there is none."""

    instance: Instance | None
    reason: str = ""
    detail: dict[str, Any] | None = None


class SemanticSource:
    """Finds the semantic content of photos and turns it into images and points for registration.

    mode: one of :data:`SEMANTIC_MODES`. source: the keypoint file or mask folder of the file modes.
    keypoint_names: the keypoints to align on (empty: the mode's default; for a keypoint file, the
    names of the reference photo's entry). detect_size: long side of the detector's input (body).
    detector: replaces the mode's model (anything with the :class:`~alignimate.detect.base.Detector`
    interface); cache: detection cache for the model modes (None: no caching). keep_masks: keep the
    chosen person's mask of every photo :meth:`find` sees, for :meth:`subject_masks` (body mode).
    """

    def __init__(
        self,
        mode: str,
        *,
        source: Path | None = None,
        keypoint_names: Sequence[str] = (),
        detect_size: int | None = None,
        detector: Detector | None = None,
        device: torch.device | str = "cpu",
        cache: DetectionCache | None = None,
        keep_masks: bool = False,
    ) -> None:
        if mode not in SEMANTIC_MODES:
            raise ValueError(f"mode must be one of {', '.join(SEMANTIC_MODES)}, got {mode!r}")
        self.mode, self.source, self.cache = mode, source, cache
        self.device = torch.device(device)
        self.detect_size = detect_size
        self.keep_masks = keep_masks
        self._kept: dict[str, SubjectMask | str] = {}
        self.names: tuple[str, ...] | None = tuple(keypoint_names) or self._default_names()
        self._files: Any = None
        self.detector = detector
        if mode == "keypoints":
            from alignimate.detect.files import KeypointFile

            self._files = KeypointFile(source)  # type: ignore[arg-type]
        elif mode == "masks":
            from alignimate.detect.files import MaskFolder

            self._files = MaskFolder(source)  # type: ignore[arg-type]
        elif detector is None:
            self.detector = self._build_detector()

    def _default_names(self) -> tuple[str, ...] | None:
        if self.mode == "body":
            from alignimate.detect.persons import DEFAULT_BODY_KEYPOINTS

            return DEFAULT_BODY_KEYPOINTS
        if self.mode == "faces":
            from alignimate.detect.faces import FACE_LANDMARKS

            return tuple(FACE_LANDMARKS)
        return None  # keypoints: the reference's names; masks: no keypoints

    def _build_detector(self) -> Detector:
        if self.mode == "body":
            from alignimate.detect.persons import PersonDetector

            return PersonDetector(
                working_size=self.detect_size or DEFAULT_BODY_DETECT_SIZE, device=self.device
            )
        from alignimate.detect.faces import FaceDetector

        kwargs = {"working_size": self.detect_size} if self.detect_size else {}
        return FaceDetector(device=self.device, **kwargs)

    @property
    def uses_keypoints(self) -> bool:
        return self.mode != "masks"

    def settings(self) -> dict[str, Any]:
        """What changes the result (recorded in transforms.json; a resumed run must match it)."""
        return {
            "source": None if self.source is None else str(self.source.resolve()),
            "keypoints": None if self.names is None else list(self.names),
            "detect_size": self.detect_size,
        }

    # -- finding -------------------------------------------------------------------------------------
    def find(self, photos: Sequence[Photo]) -> list[_Choice]:
        """The chosen instance of each photo (in its pixel coordinates), or the reason there is none."""
        if self._files is not None:
            return [self._from_files(p) for p in photos]
        choices = self._from_detector(photos)
        if self.keep_masks:
            for photo, choice in zip(photos, choices, strict=True):
                self._kept[photo.name] = self._kept_mask(photo, choice)
        return choices

    def _kept_mask(self, photo: Photo, choice: _Choice) -> SubjectMask | str:
        if choice.instance is None:
            return choice.reason
        mask = choice.instance.mask
        if mask is None:
            return f"the detected {_WHAT[self.mode]} has no mask"
        # As for mask files (MaskFolder's threshold): a mask with nothing above one half is empty.
        if not (np.asarray(mask) > 0.5).any():
            return f"the detected {_WHAT[self.mode]}'s mask is empty"
        return SubjectMask.packed(mask, photo.size_hw)

    # -- subject masks (--background person) ---------------------------------------------------------
    def subject_masks(self, photos: Sequence[Photo]) -> list[SubjectMask | str]:
        """Each photo's subject mask (:class:`~alignimate.pipeline.cutout.SubjectMask`, covering the
        whole photo at the mask's own resolution), or the reason it has none.

        masks mode: the photo's PNG, read (and checked as :meth:`find` checks it) when loaded, with its
        size and modification time as the digest. body mode: the mask of the person :meth:`find` chose
        (kept with ``keep_masks``); photos it has not seen in this run (their registration was reused)
        are looked up now, in the detection cache first. Raises ``ValueError`` in modes without masks.
        """
        if self.mode == "masks":
            return [self._file_mask(p) for p in photos]
        if self.mode != "body":
            raise ValueError(f"--mode {self.mode} has no subject masks (body and masks modes have)")
        unseen = [p for p in photos if p.name not in self._kept]
        keep, self.keep_masks = self.keep_masks, True
        try:
            for start in range(0, len(unseen), _MASK_BATCH):
                self.find(unseen[start : start + _MASK_BATCH])
        finally:
            self.keep_masks = keep
        return [self._kept[p.name] for p in photos]

    def mask_digest(self, photo: Photo) -> str | None:
        """What identifies ``photo``'s subject mask beyond the photo itself, cheaply (no mask is read
        or detected): in masks mode its file's name, size and modification time (None without one);
        None in body mode, whose mask follows from the photo."""
        if self.mode != "masks":
            return None
        path = self._files.mask_path(photo.name)
        try:
            stat = path.stat() if path is not None else None
        except OSError:
            return None
        return None if stat is None else f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"

    def _file_mask(self, photo: Photo) -> SubjectMask | str:
        path = self._files.mask_path(photo.name)
        if path is None:
            return f"no mask for this photo in {self.source}"
        digest = self.mask_digest(photo)
        if digest is None:
            return f"its mask {path} cannot be read"

        def load() -> np.ndarray:
            try:
                choice = self._from_files(photo)
            except (OSError, ValueError, SyntaxError) as err:  # what Pillow raises for a broken PNG
                raise PhotoError(path, f"its mask cannot be read ({err})") from None
            if choice.instance is None or choice.instance.mask is None:
                raise PhotoError(path, choice.reason)
            return choice.instance.mask

        return SubjectMask(photo.size_hw, load, digest)

    def _from_files(self, photo: Photo) -> _Choice:
        found = self._files.lookup(photo.name, image_size=photo.size_hw)
        if not found:
            if self.mode == "keypoints":
                return _Choice(None, f"no entry for this photo in {self.source}")
            return _Choice(None, f"no mask for this photo in {self.source} (or the mask is empty)")
        inst = found[0]
        if inst.mask is not None:
            mh, mw = inst.mask.shape
            ph, pw = photo.size_hw
            if abs((mw / mh) / (pw / ph) - 1.0) > _ASPECT_TOLERANCE:
                return _Choice(
                    None,
                    f"its mask is {mw}x{mh} but the photo is {pw}x{ph} (upright): "
                    "the mask must have the photo's aspect ratio",
                )
        return _Choice(inst)

    def _from_detector(self, photos: Sequence[Photo]) -> list[_Choice]:
        assert self.detector is not None
        settings = {**self.detector.settings(), "input_max_side": self._input_side()}
        keys: list[str | None] = [None] * len(photos)
        found: list[list[Instance] | None] = [None] * len(photos)
        choices: list[_Choice | None] = [None] * len(photos)
        if self.cache is not None:
            for i, photo in enumerate(photos):
                try:
                    digest = self.cache.photo_hash(photo.path)
                except OSError:
                    continue  # unreadable now: the read below reports it for this photo alone
                keys[i] = self.cache.key(digest, self.detector.name, settings)
                found[i] = self.cache.load_instances(self.detector.name, keys[i])
        todo = [i for i in range(len(photos)) if found[i] is None]
        images: list[np.ndarray] = []
        readable: list[int] = []
        for i, (_, image) in zip(
            todo,
            read_images_parallel([photos[i].path for i in todo], max_side=self._input_side()),
            strict=True,
        ):
            if isinstance(image, PhotoError):
                choices[i] = _Choice(None, image.reason)
            else:
                images.append(image)
                readable.append(i)
        for i, instances in zip(readable, detect_each(self.detector, images), strict=True):
            if instances is None:
                choices[i] = _Choice(None, f"{self.detector.name} detection failed on this photo")
                continue
            found[i] = instances
            if self.cache is not None and keys[i] is not None:
                self.cache.save_instances(self.detector.name, keys[i], instances)
        return [
            c if c is not None else self._choose(p, found[i] or [])
            for i, (p, c) in enumerate(zip(photos, choices, strict=True))
        ]

    def _input_side(self) -> int | None:
        # Faces are re-detected on a full-resolution crop to sharpen the landmarks: full decode.
        return (self.detect_size or DEFAULT_BODY_DETECT_SIZE) if self.mode == "body" else None

    def _choose(self, photo: Photo, instances: list[Instance]) -> _Choice:
        from alignimate.detect.persons import choose_main_instance

        what = _WHAT[self.mode]
        if not instances:
            return _Choice(None, f"no {what} detected")
        in_photo = [
            map_instance_to_original(inst, inst.image_size or photo.size_hw, photo.size_hw)
            for inst in instances
        ]
        best = choose_main_instance(in_photo, photo.size_hw)
        if best is None:  # pragma: no cover - choose_main_instance keeps every score >= 0
            return _Choice(None, f"no {what} detected")
        detail = {"detected": len(in_photo), "score": round(float(in_photo[best].score), 4)}
        return _Choice(in_photo[best], detail=detail)

    # -- turning instances into registration inputs -------------------------------------------------
    def resolve_names(self, reference: Instance) -> None:
        """Keypoint files name their own points: align on the reference entry's names unless told."""
        if self.mode == "keypoints" and self.names is None:
            self.names = tuple(reference.keypoint_names or ())

    def points(
        self, inst: Instance, photo_size: Sequence[int], work: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """An instance's keypoints at the working size.

        Args:
            inst: the chosen instance (photo pixels).
            photo_size: the photo's ``(h, w)``.
            work: the working ``(h, w)`` (:func:`working_size`).

        Returns:
            ``(points, weights)``: ``(K, 2)`` in working pixels and ``(K,)`` in ``[0, 1]``.
        """
        assert self.names is not None
        out, scores = keypoints_at(inst, self.names, photo_size, work)
        weights = confidence_weights(torch.as_tensor(scores, dtype=torch.float64)).numpy()
        if self.mode == "keypoints":
            weights = np.where(scores > 0, 1.0, 0.0)  # user files: a given point is a trusted point
        return out, weights

    def sigma(self, points: np.ndarray, weights: np.ndarray, work: tuple[int, int]) -> float:
        """Heatmap sigma in working pixels (see :data:`SIGMA_FRAC`).

        Args:
            points, weights: :meth:`points` of an instance, ``(K, 2)`` and ``(K,)``.
            work: the working ``(h, w)``.
        """
        total = float(weights.sum())
        if total <= 0:
            return SIGMA_FRAC * max(work)
        centre = (weights[:, None] * points).sum(axis=0) / total
        spread = float(np.sqrt((weights * ((points - centre) ** 2).sum(axis=1)).sum() / total))
        return max(_MIN_SIGMA, min(SIGMA_FRAC * max(work), _SIGMA_OF_SPREAD * spread))

    def image(
        self,
        inst: Instance,
        work: tuple[int, int],
        keypoints: tuple[np.ndarray, np.ndarray] | None = None,
        sigma: float | None = None,
    ) -> torch.Tensor:
        """The semantic image of an instance at the working size, which the registration aligns.

        Args:
            inst: the chosen instance.
            work: the working ``(h, w)``.
            keypoints: the instance's :meth:`points` at that size (None in masks mode, which has none).
            sigma: heatmap sigma in working pixels (default :meth:`sigma` of those points).

        Returns:
            ``(K, h, w)`` float32: one heatmap per keypoint times the mask (``K = 1``, the mask, in
            masks mode).
        """
        if keypoints is None:
            assert inst.mask is not None, "an instance without keypoints needs a mask"
            return resized_mask(inst.mask, work)
        points, weights = keypoints
        sigma = self.sigma(points, weights, work) if sigma is None else sigma
        return heatmap_image(points, weights, work, sigma, inst.mask)


def keypoint_init(
    moving: np.ndarray, moving_w: np.ndarray, fixed: np.ndarray, fixed_w: np.ndarray, model: str
) -> np.ndarray | None:
    """A closed-form start for the registration from corresponding keypoints.

    Args:
        moving, fixed: corresponding ``(K, 2)`` points, pixels.
        moving_w, fixed_w: their ``(K,)`` weights; a point counts where both are above 0.
        model: the registration's model; with too few points for it, the richest model they support
            is used.

    Returns:
        ``fixed_H_moving`` ``(3, 3)`` (pixel matrix, docs/conventions.md), or None with no point, or
        where the fit does not converge to finite numbers.
    """
    weights = moving_w * fixed_w
    count = int((weights > 0).sum())
    usable = [m for m in ("homography", "affine", "similarity", "translation") if count >= MIN_POINTS[m]]
    if not usable:
        return None
    fit_model = model if count >= MIN_POINTS[model] else usable[0]
    result = register_points(
        torch.as_tensor(moving, dtype=torch.float64)[None],
        torch.as_tensor(fixed, dtype=torch.float64)[None],
        fit_model,
        torch.as_tensor(weights, dtype=torch.float64)[None],
    )
    matrix = result.matrix[0].numpy()
    return matrix if bool(result.converged[0]) and np.isfinite(matrix).all() else None
