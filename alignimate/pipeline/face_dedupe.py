"""``faces --dedupe``: thumbnails of the aligned face to compare consecutive photos by.

Near-duplicates: mean absolute difference, in [0, 1] grey levels, of two 32 x 32 grey thumbnails of
the aligned face (a square of 2.5 eye distances around the template's landmarks), each blurred with a
Gaussian of sigma 1 px so that landmark jitter between two shots matters less than their content.
Brightness is deliberately not normalised: the same face in other light is not a duplicate. The
threshold's measured basis: docs/benchmarks.md, "Design measurements quoted by the code".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from alignimate.core import gaussian_blur2d, rgb_to_grayscale, warp_affine
from alignimate.pipeline.render import linear_scale, read_for_scale
from alignimate.pipeline.stages import Row, RowStage, batch_rows, run_stages

__all__ = ["DEDUPE_THRESHOLD", "face_thumbnails"]

DEDUPE_THRESHOLD = 0.016
_BLUR = 1.0
_THUMB = 32
_BOX_EYES = 2.5


class _Thumbnail(RowStage):
    """``path``, ``size_hw``, ``matrix`` (canvas_H_photo) -> ``thumb`` ``(32, 32)`` float32."""

    def __init__(self, thumb_H_canvas: np.ndarray, scale: float) -> None:
        self.thumb_H_canvas, self.scale = thumb_H_canvas, scale

    def process(self, row: Row) -> Row:
        matrix = np.asarray(row["matrix"], dtype=np.float64)
        image, work_H_photo = read_for_scale(
            row["path"], row["size_hw"], self.scale * linear_scale(matrix), margin=2.0
        )
        thumb_H_work = self.thumb_H_canvas @ matrix @ np.linalg.inv(work_H_photo)
        tensor = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255
        thumb = warp_affine(
            rgb_to_grayscale(tensor), torch.from_numpy(thumb_H_work).float()[None], (_THUMB,) * 2
        )
        assert isinstance(thumb, torch.Tensor)
        return {"thumb": gaussian_blur2d(thumb, None, _BLUR, border_type="replicate")[0, 0].numpy()}


def face_thumbnails(
    photos: Sequence[tuple[Path, tuple[int, int], np.ndarray]], template: np.ndarray, workers: int = 2
) -> Iterator[np.ndarray | str]:
    """The thumbnails near-duplicates are compared on: the blurred, grey, aligned face of each photo.

    Args:
        photos: ``(path, size_hw, canvas_H_photo)`` of each photo (the pixel matrix that aligns it).
        template: the template's points, canvas pixels; the thumbnail covers the face around them.
        workers: threads reading photos (at reduced size) at once.

    Returns:
        for each photo, in order, its ``(32, 32)`` thumbnail, or the reason it could not be read.
    """
    eye_distance = float(np.linalg.norm(template[1] - template[0]))
    centre = np.asarray(template, dtype=np.float64).mean(axis=0)
    # thumb_H_canvas: the square of 2.5 eye distances around the template's centroid -> 32 px.
    k = _THUMB / (_BOX_EYES * eye_distance)
    thumb_H_canvas = np.array(
        [[k, 0, (_THUMB - 1) / 2 - k * centre[0]], [0, k, (_THUMB - 1) / 2 - k * centre[1]], [0, 0, 1]]
    )
    rows = ({"path": p, "size_hw": s, "matrix": m} for p, s, m in photos)
    for batch in run_stages(rows, [_Thumbnail(thumb_H_canvas, k)], batch_size=1, workers=workers):
        for row in batch_rows(batch):
            yield row["reason"] if row.get("status") == "skipped" else row["thumb"]
