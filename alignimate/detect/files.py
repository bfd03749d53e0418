"""Semantic sources that need no model: keypoints from a user's JSON or CSV file, masks from a
folder of PNGs. They let users plug in any outside tool (a pose estimator, a hand-annotation tool,
a segmentation app). A photo the file or folder does not mention gives ``[]``, like a detector that
found nothing.

Photos are matched by the path as written in the file, else by file name, else by stem (name
without extension), case-insensitively, so ``IMG_0001.JPG`` matches an entry ``img_0001``.

Keypoint JSON, any of::

    {"IMG_1.jpg": [[x, y], [x, y], ...]}                      # names given by the caller
    {"IMG_1.jpg": {"left_ear": [x, y], "left_hip": [x, y, score]}}
    {"IMG_1.jpg": {"keypoints": [[x, y], ...], "names": [...], "scores": [...]}}
    [{"image": "IMG_1.jpg", "keypoints": ..., "names": ..., "scores": ...}, ...]
    {"frames": [{"file": "IMG_1.jpg", "landmarks": {"left_eye": [x, y], ...}}, ...]}

Keypoint CSV, long (one row per point; ``score`` optional) or wide (one row per photo)::

    image,name,x,y,score              image,left_ear_x,left_ear_y,left_hip_x,left_hip_y
    IMG_1.jpg,left_ear,812.5,400,0.9  IMG_1.jpg,812.5,400,900,1300

Coordinates are pixels of the photo as displayed, i.e. after its EXIF orientation (docs/conventions.md).
Scores default to 1.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignimate.detect.base import Instance

__all__ = ["KeypointFile", "MaskFolder"]

_IMAGE_COLUMNS = ("image", "file", "filename", "photo", "path")
_NAME_COLUMNS = ("name", "keypoint", "point", "label")


def _lookup_keys(photo: str | os.PathLike[str]) -> list[str]:
    p = Path(photo)
    return [str(photo).lower(), p.name.lower(), p.stem.lower()]


class _PhotoIndex:
    """Entries findable by written path, file name or stem."""

    def __init__(self) -> None:
        self._by_key: dict[str, Any] = {}

    def add(self, written: str, value: Any) -> None:
        for key in _lookup_keys(written):
            self._by_key.setdefault(key, value)

    def get(self, photo: str | os.PathLike[str]) -> Any:
        for key in _lookup_keys(photo):
            if key in self._by_key:
                return self._by_key[key]
        return None


class KeypointFile:
    """Keypoints per photo read from a JSON or CSV file (formats in the module docstring).

    names: the keypoint names for entries that give bare point lists (JSON lists without names);
    entries with their own names keep them.
    """

    name = "keypoint-file"

    def __init__(self, path: str | os.PathLike[str], names: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.default_names = tuple(names) if names is not None else None
        if not self.path.is_file():
            raise FileNotFoundError(f"keypoint file {self.path} does not exist")
        self._index = _PhotoIndex()
        suffix = self.path.suffix.lower()
        try:
            if suffix == ".json":
                self._read_json()
            elif suffix in (".csv", ".txt"):
                self._read_csv()
            else:
                raise ValueError(f"keypoint file {self.path} must end in .json or .csv")
        except (KeyError, IndexError, TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"keypoint file {self.path} is not in a supported format: {err}") from err

    def settings(self) -> dict[str, Any]:
        """The file's path and modification time (part of any cache key)."""
        return {"path": str(self.path.resolve()), "mtime_ns": self.path.stat().st_mtime_ns}

    # -- reading -------------------------------------------------------------------------------
    def _add(self, image: str, points: np.ndarray, names: Sequence[str], scores: np.ndarray) -> None:
        if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] != len(names):
            raise ValueError(
                f"keypoint file {self.path}: entry {image!r} has points of shape {points.shape} for "
                f"{len(names)} names"
            )
        if scores.shape != (len(names),):
            raise ValueError(
                f"keypoint file {self.path}: entry {image!r} has {scores.size} scores for {len(names)} points"
            )
        self._index.add(image, (points.astype(np.float32), tuple(names), scores.astype(np.float32)))

    def _names_for(self, image: str, count: int) -> tuple[str, ...]:
        if self.default_names is None:
            return tuple(f"kp{i}" for i in range(count))
        if len(self.default_names) != count:
            raise ValueError(
                f"keypoint file {self.path}: entry {image!r} has {count} points but names lists "
                f"{len(self.default_names)}"
            )
        return self.default_names

    def _parse_entry(self, image: str, value: Any) -> None:
        names: tuple[str, ...] | None = None
        scores = None
        if isinstance(value, dict) and ("keypoints" in value or "landmarks" in value):
            if "scores" in value:
                scores = np.asarray(value["scores"], dtype=np.float64).reshape(-1)
            names = tuple(value["names"]) if value.get("names") else None
            value = value["keypoints"] if "keypoints" in value else value["landmarks"]
        if isinstance(value, dict):
            names = tuple(value)
            points = list(value.values())
        else:
            points = list(value)
            names = names or self._names_for(image, len(points))
        rows = np.ones((len(points), 3))  # a point without a score gets score 1
        for i, p in enumerate(points):
            p = np.asarray(p, dtype=np.float64).reshape(-1)
            if p.shape[0] not in (2, 3):
                raise ValueError(
                    f"keypoint file {self.path}: entry {image!r} points must be [x, y] or [x, y, score]"
                )
            rows[i, : p.shape[0]] = p
        if scores is None:
            scores = rows[:, 2]
        self._add(image, rows[:, :2], names, scores)

    def _read_json(self) -> None:
        data = json.loads(self.path.read_text())
        # A document with a list of per-photo records (e.g. sample_data/faces/ground_truth.json).
        if isinstance(data, dict):
            records = next((data[k] for k in ("frames", "images") if isinstance(data.get(k), list)), None)
            if records is not None:
                data = records
        if isinstance(data, dict):
            for image, value in data.items():
                self._parse_entry(str(image), value)
        elif isinstance(data, list):
            for item in data:
                if not ("keypoints" in item or "landmarks" in item):
                    continue  # a record for a photo without points, e.g. a dropped frame
                image = next(str(item[c]) for c in _IMAGE_COLUMNS if c in item)
                self._parse_entry(image, item)
        else:
            raise ValueError(f"keypoint file {self.path}: top level must be an object or a list")

    def _read_csv(self) -> None:
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        columns = {c.strip().lower(): c for c in rows[0]}
        image_col = next((columns[c] for c in _IMAGE_COLUMNS if c in columns), None)
        if image_col is None:
            raise ValueError(
                f"keypoint file {self.path}: needs an image column (one of {', '.join(_IMAGE_COLUMNS)})"
            )
        name_col = next((columns[c] for c in _NAME_COLUMNS if c in columns), None)
        if name_col is not None and "x" in columns and "y" in columns:
            self._read_long(rows, image_col, name_col, columns)
        else:
            self._read_wide(rows, image_col, columns)

    def _read_long(
        self, rows: list[dict[str, str]], image_col: str, name_col: str, columns: dict[str, str]
    ) -> None:
        grouped: dict[str, list[tuple[str, float, float, float]]] = {}
        score_col = columns.get("score")
        for r in rows:
            score = float(r[score_col]) if score_col and r[score_col] not in ("", None) else 1.0
            grouped.setdefault(r[image_col], []).append(
                (r[name_col], float(r[columns["x"]]), float(r[columns["y"]]), score)
            )
        for image, pts in grouped.items():
            self._add(
                image,
                np.array([[p[1], p[2]] for p in pts]),
                [p[0] for p in pts],
                np.array([p[3] for p in pts]),
            )

    def _read_wide(self, rows: list[dict[str, str]], image_col: str, columns: dict[str, str]) -> None:
        names = [c[:-2] for c in columns if c.endswith("_x") and f"{c[:-2]}_y" in columns]
        if not names:
            raise ValueError(
                f"keypoint file {self.path}: expected columns name,x,y (long) or <name>_x,<name>_y (wide)"
            )
        for r in rows:
            pts = np.array([[float(r[columns[f"{n}_x"]]), float(r[columns[f"{n}_y"]])] for n in names])
            scores = np.array(
                [float(r[columns[f"{n}_score"]]) if f"{n}_score" in columns else 1.0 for n in names]
            )
            self._add(r[image_col], pts, names, scores)

    # -- lookup --------------------------------------------------------------------------------
    def lookup(
        self, photo: str | os.PathLike[str], image_size: tuple[int, int] | None = None
    ) -> list[Instance]:
        """The photo's keypoints as one :class:`Instance`.

        Args:
            photo: the photo, matched to an entry by its path as written in the file, its file name
                or its stem (case-insensitive).
            image_size: ``(H, W)`` of the photo, recorded in the instance.

        Returns:
            ``[instance]`` (box = bounding box of the points, score = mean keypoint score), or
            ``[]`` when the file has no entry for it.
        """
        entry = self._index.get(photo)
        if entry is None:
            return []
        points, names, scores = entry
        if len(points) == 0:
            return []
        box = np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)
        return [
            Instance(
                box=box,
                score=float(np.mean(scores)),
                keypoints=points.copy(),
                keypoint_scores=scores.copy(),
                keypoint_names=names,
                image_size=image_size,
                label="keypoints",
            )
        ]

    def for_paths(self, paths: Sequence[str | os.PathLike[str]]) -> list[list[Instance]]:
        """:meth:`lookup` for every path, in order."""
        return [self.lookup(p) for p in paths]


class MaskFolder:
    """Person masks from a folder of PNG files, one per photo, named ``<stem>.png``,
    ``<name>.png`` (e.g. ``IMG_1.jpg.png``), ``<stem>_mask.png`` or ``<stem>.mask.png``.

    A mask is the PNG's alpha channel when it has a non-opaque one, else its grey level, scaled to
    ``[0, 1]``. It covers the whole photo; its box is the bounding box of values above ``threshold``
    (rescaled to ``image_size`` when the photo's size differs from the mask's). An all-empty mask or
    a missing file gives ``[]``.
    """

    name = "mask-folder"

    def __init__(self, folder: str | os.PathLike[str], threshold: float = 0.5) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"mask folder {self.folder} does not exist")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        self.threshold = threshold
        self._files = {p.name.lower(): p for p in self.folder.iterdir() if p.suffix.lower() == ".png"}

    def mask_path(self, photo: str | os.PathLike[str]) -> Path | None:
        """The PNG that belongs to ``photo``, or None."""
        p = Path(photo)
        for candidate in (f"{p.stem}.png", f"{p.name}.png", f"{p.stem}_mask.png", f"{p.stem}.mask.png"):
            found = self._files.get(candidate.lower())
            if found is not None:
                return found
        return None

    @staticmethod
    def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
        """A PNG as a ``(H, W)`` float32 mask in ``[0, 1]`` (alpha if present and used, else grey)."""
        from PIL import Image

        with Image.open(path) as img:
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                alpha = np.asarray(img.convert("RGBA"))[:, :, 3]
                if alpha.min() < 255:
                    return alpha.astype(np.float32) / 255.0
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img).astype(np.float32)
                return np.clip(arr / 65535.0, 0.0, 1.0)
            return np.asarray(img.convert("L")).astype(np.float32) / 255.0

    def lookup(
        self, photo: str | os.PathLike[str], image_size: tuple[int, int] | None = None
    ) -> list[Instance]:
        """The photo's mask as one :class:`Instance`.

        Args:
            photo: the photo (its PNG: :meth:`mask_path`).
            image_size: ``(H, W)`` of the photo: the box is scaled to it from the mask's size
                (default: the mask's size).

        Returns:
            ``[instance]`` (label ``"person"``, score 1), or ``[]`` without a mask or with an empty one.
        """
        path = self.mask_path(photo)
        if path is None:
            return []
        mask = self.read_mask(path)
        ys, xs = np.nonzero(mask > self.threshold)
        if len(xs) == 0:
            return []
        h, w = mask.shape
        size = image_size if image_size is not None else (h, w)
        sx, sy = size[1] / w, size[0] / h
        # Box edges: pixel i spans [i - 0.5, i + 0.5]; an edge e maps to (e + 0.5) * s - 0.5.
        box = np.array(
            [xs.min() * sx - 0.5, ys.min() * sy - 0.5, (xs.max() + 1) * sx - 0.5, (ys.max() + 1) * sy - 0.5],
            dtype=np.float32,
        )
        return [
            Instance(box=box, score=1.0, mask=mask, image_size=(int(size[0]), int(size[1])), label="person")
        ]

    def for_paths(self, paths: Sequence[str | os.PathLike[str]]) -> list[list[Instance]]:
        """:meth:`lookup` for every path, in order."""
        return [self.lookup(p) for p in paths]
