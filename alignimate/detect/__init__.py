"""Semantic stage: detectors (faces, persons, user files), identity, frontal filter, heatmaps,
model weights and the detection cache. Submodules import their heavy dependencies (torchvision,
facenet-pytorch) only when used."""

from __future__ import annotations

from alignimate.detect.base import Detector, Instance

__all__ = ["Detector", "Instance"]
