"""Persons from torchvision's Mask R-CNN (soft masks) and Keypoint R-CNN (17 COCO keypoints).

Both models run batched on a working copy whose long side is ``working_size`` pixels; boxes and
keypoints are mapped back to the original photo, masks stay at the working resolution (they cover
the whole photo). A keypoint detection is attached to the mask detection it overlaps most (box IoU).
Weights are resolved by :mod:`alignimate.detect.weights` and never downloaded implicitly.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from alignimate.detect.base import (
    ImageBatch,
    Instance,
    as_uint8_hwc,
    map_instance_to_original,
    resize_uint8,
)
from alignimate.detect.weights import load_state_dict

__all__ = [
    "COCO_KEYPOINT_NAMES",
    "DEFAULT_BODY_KEYPOINTS",
    "MainPersonWeights",
    "PersonDetector",
    "build_keypoint_rcnn",
    "build_mask_rcnn",
    "build_rcnn",
    "choose_main_instance",
]

# torchvision.models.detection.KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.meta["keypoint_names"].
COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# The side-on pose of a pregnancy series (what alignimation hard-coded); configurable everywhere.
DEFAULT_BODY_KEYPOINTS: tuple[str, ...] = ("left_ear", "left_shoulder", "left_hip")

_COCO_PERSON_LABEL = 1  # index of "person" in the COCO category list both models use
# torchvision reports boxes and keypoints in continuous coordinates (pixel i spans [i, i + 1], its
# centre is i + 0.5; roi_heads.heatmaps_to_keypoints cites Heckbert 1990). Ours put the centre at i.
_CONTINUOUS_TO_CENTRE = 0.5


RCNNName = Literal["maskrcnn", "keypointrcnn"]

# torchvision's constructor of each model and the head sizes its COCO weights were trained with.
_RCNN_MODELS: dict[str, tuple[str, dict[str, int]]] = {
    "maskrcnn": ("maskrcnn_resnet50_fpn", {"num_classes": 91}),
    "keypointrcnn": (
        "keypointrcnn_resnet50_fpn",
        {"num_classes": 2, "num_keypoints": len(COCO_KEYPOINT_NAMES)},
    ),
}


def build_rcnn(
    name: RCNNName,
    weights: str | os.PathLike[str] | None = None,
    *,
    working_size: int = 800,
    min_score: float = 0.5,
    max_detections: int = 10,
    proposals: int = 1000,
) -> torch.nn.Module:
    """A torchvision ResNet-50 FPN R-CNN in eval mode.

    Args:
        name: ``"maskrcnn"`` (Mask R-CNN, COCO, 91 classes) or ``"keypointrcnn"`` (Keypoint R-CNN,
            COCO person, 17 keypoints).
        weights: an explicit file, else the hub cache
            (:func:`alignimate.detect.weights.load_state_dict`).
        working_size: its internal resize is pinned so the long side of every input becomes this.
        min_score: detections scoring lower are dropped.
        max_detections: boxes kept per image at most (torchvision's default of 100 makes the mask
            and keypoint heads the slowest part on a CPU).
        proposals: region proposals kept before and after NMS (torchvision's default 1000; the box
            head's cost grows linearly with it).
    """
    from torchvision.models import detection

    constructor, heads = _RCNN_MODELS[name]
    state = load_state_dict(name, weights)
    # weights_backbone=None: constructing must never trigger a download of ImageNet weights.
    model = getattr(detection, constructor)(
        weights=None,
        weights_backbone=None,
        min_size=working_size,
        max_size=working_size,
        box_score_thresh=min_score,
        box_detections_per_img=max_detections,
        rpn_pre_nms_top_n_test=proposals,
        rpn_post_nms_top_n_test=proposals,
        **heads,
    )
    model.load_state_dict(state)
    return model.eval()


# The public names of the two models' builders (same options as build_rcnn).
build_mask_rcnn = functools.partial(build_rcnn, "maskrcnn")
build_keypoint_rcnn = functools.partial(build_rcnn, "keypointrcnn")


@dataclass(frozen=True)
class MainPersonWeights:
    """Weights of the three terms that pick the main person (each term is in ``[0, 1]``):
    ``score`` the detection score, ``size`` the square root of the box area relative to the largest
    candidate's, ``centrality`` one minus the distance of the box centre from the photo centre over
    half the photo diagonal."""

    score: float = 1.0
    size: float = 1.0
    centrality: float = 0.5


def choose_main_instance(
    instances: Sequence[Instance],
    image_size: tuple[int, int],
    weights: MainPersonWeights = MainPersonWeights(),
    *,
    min_score: float = 0.0,
) -> int | None:
    """The main instance of a photo: the highest weighted sum of score, size and centrality.

    Args:
        instances: the photo's instances.
        image_size: the photo's ``(H, W)``.
        weights: the weights of the three terms (:class:`MainPersonWeights`).
        min_score: instances scoring lower are not considered.

    Returns:
        its index in ``instances``, or None when there is none.
    """
    candidates = [i for i, inst in enumerate(instances) if inst.score >= min_score]
    if not candidates:
        return None
    h, w = image_size
    sizes = np.array([np.sqrt(instances[i].area) for i in candidates])
    rel_size = sizes / sizes.max() if sizes.max() > 0 else np.ones_like(sizes)
    half_diag = 0.5 * float(np.hypot(w, h))
    best, best_value = candidates[0], -np.inf
    for k, i in enumerate(candidates):
        x0, y0, x1, y1 = (float(v) for v in instances[i].box)
        offset = np.hypot(0.5 * (x0 + x1) - (w - 1) / 2, 0.5 * (y0 + y1) - (h - 1) / 2)
        centrality = max(0.0, 1.0 - offset / half_diag)
        value = (
            weights.score * instances[i].score + weights.size * rel_size[k] + weights.centrality * centrality
        )
        if value > best_value:
            best, best_value = i, value
    return best


class PersonDetector:
    """Persons per photo: :class:`Instance` with label ``"person"``, box, score, a soft mask (when
    ``masks``) and the 17 COCO keypoints (when ``keypoints``) with confidences ``sigmoid(logit)`` of
    Keypoint R-CNN's heatmap maxima.

    working_size: long side of the copy both models run on (torchvision's default is about 800-1333).
    min_score: persons scoring lower are dropped. match_iou: smallest box IoU that attaches a
    keypoint detection to a mask detection; an unmatched keypoint detection becomes a person without
    mask. max_persons: most detections kept per photo and model (highest scores first). proposals:
    region proposals per photo (see :func:`build_rcnn`). mask_weights / keypoint_weights:
    explicit weight files (else the hub cache).
    """

    name = "persons"

    def __init__(
        self,
        *,
        masks: bool = True,
        keypoints: bool = True,
        working_size: int = 800,
        min_score: float = 0.5,
        match_iou: float = 0.5,
        max_persons: int = 10,
        proposals: int = 1000,
        batch_size: int = 2,
        mask_weights: str | os.PathLike[str] | None = None,
        keypoint_weights: str | os.PathLike[str] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not (masks or keypoints):
            raise ValueError("at least one of masks and keypoints must be True")
        if working_size < 32:
            raise ValueError(f"working_size must be >= 32 pixels, got {working_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_persons < 1:
            raise ValueError(f"max_persons must be >= 1, got {max_persons}")
        if proposals < 1:
            raise ValueError(f"proposals must be >= 1, got {proposals}")
        self.max_persons = max_persons
        self.proposals = proposals
        self.masks, self.keypoints = masks, keypoints
        self.working_size = working_size
        self.min_score = float(min_score)
        self.match_iou = float(match_iou)
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")

        def build(name: RCNNName, weights: str | os.PathLike[str] | None) -> torch.nn.Module:
            model = build_rcnn(
                name,
                weights,
                working_size=working_size,
                min_score=min_score,
                max_detections=max_persons,
                proposals=proposals,
            )
            return model.to(self.device)

        self._mask_model = build("maskrcnn", mask_weights) if masks else None
        self._kp_model = build("keypointrcnn", keypoint_weights) if keypoints else None

    def settings(self) -> dict[str, Any]:
        """Every option that changes the detections (part of the cache key)."""
        return {
            "masks": self.masks,
            "keypoints": self.keypoints,
            "working_size": self.working_size,
            "min_score": self.min_score,
            "match_iou": self.match_iou,
            "max_persons": self.max_persons,
            "proposals": self.proposals,
        }

    def detect(self, images: ImageBatch) -> list[list[Instance]]:
        """Persons per photo sorted by decreasing score; ``[]`` for a photo without a person.

        Arguments and coordinates as :meth:`~alignimate.detect.base.Detector.detect`."""
        originals = as_uint8_hwc(images)
        results: list[list[Instance]] = []
        for start in range(0, len(originals), self.batch_size):
            chunk = originals[start : start + self.batch_size]
            work = [resize_uint8(a, self.working_size) for a in chunk]
            found = self._detect_batch(work)
            for orig, w, persons in zip(chunk, work, found, strict=True):
                results.append([map_instance_to_original(p, w.shape[:2], orig.shape[:2]) for p in persons])
        return results

    def _run(self, model: torch.nn.Module | None, tensors: list[torch.Tensor]) -> list[dict] | None:
        if model is None:
            return None
        with torch.inference_mode():
            return model(tensors)

    def _detect_batch(self, work: list[np.ndarray]) -> list[list[Instance]]:
        tensors = [
            torch.from_numpy(w.copy()).permute(2, 0, 1).to(self.device, torch.float32) / 255.0 for w in work
        ]
        mask_out = self._run(self._mask_model, tensors)
        kp_out = self._run(self._kp_model, tensors)
        out = []
        for i, w in enumerate(work):
            size = (int(w.shape[0]), int(w.shape[1]))
            with_masks = _mask_instances(mask_out[i], size, self.min_score) if mask_out is not None else []
            with_kps = _keypoint_instances(kp_out[i], size, self.min_score) if kp_out is not None else []
            persons = _merge(with_masks, with_kps, self.match_iou) if mask_out is not None else with_kps
            persons.sort(key=lambda p: -p.score)
            out.append(persons)
        return out


def _persons(
    output: dict[str, torch.Tensor], min_score: float
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The person rows of one R-CNN output scoring at least ``min_score``: their indices, boxes
    (centre convention) and scores."""
    keep = (output["labels"] == _COCO_PERSON_LABEL) & (output["scores"] >= min_score)
    rows = torch.nonzero(keep).flatten().cpu()
    boxes = output["boxes"][rows].float().cpu().numpy() - _CONTINUOUS_TO_CENTRE
    return rows, boxes, output["scores"][rows].float().cpu().numpy()


def _mask_instances(
    output: dict[str, torch.Tensor], size: tuple[int, int], min_score: float
) -> list[Instance]:
    rows, boxes, scores = _persons(output, min_score)
    masks = output["masks"][rows, 0].float().cpu().numpy()
    return [
        Instance(box=boxes[k], score=float(scores[k]), mask=masks[k], image_size=size, label="person")
        for k in range(len(rows))
    ]


def _keypoint_instances(
    output: dict[str, torch.Tensor], size: tuple[int, int], min_score: float
) -> list[Instance]:
    rows, boxes, scores = _persons(output, min_score)
    kps = output["keypoints"][rows, :, :2].float().cpu().numpy() - _CONTINUOUS_TO_CENTRE
    # Keypoint R-CNN scores are heatmap logits; the sigmoid maps them to [0, 1] (0 logits -> 0.5).
    kp_conf = torch.sigmoid(output["keypoints_scores"][rows].float()).cpu().numpy()
    return [
        Instance(
            box=boxes[k],
            score=float(scores[k]),
            keypoints=kps[k],
            keypoint_scores=kp_conf[k],
            keypoint_names=COCO_KEYPOINT_NAMES,
            image_size=size,
            label="person",
        )
        for k in range(len(rows))
    ]


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from torchvision.ops import box_iou

    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return box_iou(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)).numpy()


def _merge(with_masks: list[Instance], with_kps: list[Instance], match_iou: float) -> list[Instance]:
    """Attach each keypoint detection to the mask detection it overlaps most (greedy by IoU)."""
    iou = _box_iou(np.array([m.box for m in with_masks]), np.array([k.box for k in with_kps]))
    merged = list(with_masks)
    used_kp: set[int] = set()
    pairs = sorted(
        ((iou[i, j], i, j) for i in range(iou.shape[0]) for j in range(iou.shape[1])), reverse=True
    )
    used_mask: set[int] = set()
    for value, i, j in pairs:
        if value < match_iou:
            break
        if i in used_mask or j in used_kp:
            continue
        used_mask.add(i)
        used_kp.add(j)
        kp = with_kps[j]
        m = merged[i]
        merged[i] = Instance(
            box=m.box,
            score=max(m.score, kp.score),
            mask=m.mask,
            keypoints=kp.keypoints,
            keypoint_scores=kp.keypoint_scores,
            keypoint_names=kp.keypoint_names,
            image_size=m.image_size,
            label="person",
        )
    merged.extend(kp for j, kp in enumerate(with_kps) if j not in used_kp)
    return merged
