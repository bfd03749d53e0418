"""Fixtures shared by several test folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model download on first use in any test, also on a machine with internet (a test that
    wants one deletes the variable and serves the file itself on 127.0.0.1)."""
    monkeypatch.setenv("ALIGNIMATE_OFFLINE", "1")
    monkeypatch.delenv("ALIGNIMATE_WEIGHTS_MIRROR", raising=False)


@pytest.fixture(scope="session")
def random_rcnn_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Mask R-CNN and Keypoint R-CNN weight files of randomly initialised models (the real weights
    cannot be downloaded here). The "person" logit of each box classifier is raised before saving so
    the random models do report persons. Built once per test session: ~400 MB of temporary files."""
    from torchvision.models import detection

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    out = {}
    for name, builder, kwargs in (
        ("maskrcnn", detection.maskrcnn_resnet50_fpn, {"num_classes": 91}),
        ("keypointrcnn", detection.keypointrcnn_resnet50_fpn, {"num_classes": 2, "num_keypoints": 17}),
    ):
        model = builder(weights=None, weights_backbone=None, **kwargs)
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.bias[1] += 8.0  # make "person" win
        path = folder / f"{name}.pth"
        torch.save(model.state_dict(), path)
        out[name] = path
        del model
    return out
