from __future__ import annotations

import dataclasses
import hashlib
import inspect
from pathlib import Path

import pytest
import torch

from alignimate.detect import weights as W  # noqa: N812  (short alias for a module used on every line)


def test_registry_facts_come_from_the_publishers() -> None:
    from facenet_pytorch.models import inception_resnet_v1
    from torchvision.models import detection

    names = [m.name for m in W.list_models()]
    assert names == ["maskrcnn", "keypointrcnn", "facenet-vggface2", "mtcnn"]
    mask = W.model_info("maskrcnn")
    assert mask.url == detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1.url
    assert mask.file_name == "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    assert mask.sha256_prefix == "bf2d0c1e"
    assert mask.size_mb == pytest.approx(169.84)
    kp = W.model_info("keypointrcnn")
    assert kp.url == detection.KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.url
    assert kp.sha256_prefix is not None and kp.file_name.endswith(f"-{kp.sha256_prefix}.pth")
    facenet = W.model_info("facenet-vggface2")
    # The URL must be the one facenet-pytorch itself would fetch.
    assert facenet.url in inspect.getsource(inception_resnet_v1.load_weights)
    assert facenet.sha256_prefix is None


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'yolo'.*maskrcnn"):
        W.model_info("yolo")


def test_mtcnn_weights_are_bundled(empty_torch_home: Path) -> None:
    path = W.model_path("mtcnn")
    assert {"pnet.pt", "rnet.pt", "onet.pt"} <= {p.name for p in path.iterdir()}
    assert W.download("mtcnn") == path  # nothing to fetch


def test_missing_weights_message_names_model_places_and_fix(empty_torch_home: Path) -> None:
    with pytest.raises(W.WeightsNotFound) as info:
        W.model_path("maskrcnn")
    msg = str(info.value)
    assert "'maskrcnn'" in msg
    assert "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth" in msg
    assert str(empty_torch_home / "hub" / "checkpoints") in msg
    assert str(empty_torch_home / "checkpoints") in msg
    assert "alignimate models download maskrcnn" in msg and "--weights PATH" in msg
    assert W.find_model("maskrcnn") is None
    assert isinstance(info.value, FileNotFoundError)


def test_explicit_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(W.WeightsNotFound, match="does not exist"):
        W.model_path("keypointrcnn", tmp_path / "nope.pth")


def test_resolution_order_explicit_then_hub_then_torch_home(empty_torch_home: Path, tmp_path: Path) -> None:
    info = W.model_info("facenet-vggface2")
    legacy = empty_torch_home / "checkpoints" / info.file_name
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"x")
    assert W.model_path(info.name) == legacy
    hub = empty_torch_home / "hub" / "checkpoints" / info.file_name
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"y")
    assert W.model_path(info.name) == hub
    explicit = tmp_path / "mine.pt"
    explicit.write_bytes(b"z")
    assert W.model_path(info.name, explicit) == explicit
    assert W.search_dirs() == [hub.parent, legacy.parent]


def test_load_state_dict_round_trip_and_corrupt_file(tmp_path: Path) -> None:
    state = {"a": torch.arange(3.0), "b": torch.ones(2, 2)}
    good = tmp_path / "good.pt"
    torch.save(state, good)
    loaded = W.load_state_dict("maskrcnn", good)
    assert set(loaded) == {"a", "b"} and torch.equal(loaded["a"], state["a"])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(W.WeightsError, match=r"cannot read weights of model 'maskrcnn' from .*bad\.pt"):
        W.load_state_dict("maskrcnn", bad)


@pytest.fixture
def local_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A registry entry whose URL is a local file (urllib serves file:// without a network)."""
    payload = tmp_path / "served" / "tiny-weights.pt"
    payload.parent.mkdir()
    payload.write_bytes(b"0123456789" * 50_000)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    entry = dataclasses.replace(
        W.model_info("keypointrcnn"),
        file_name="tiny-weights.pt",
        url=payload.as_uri(),
        sha256_prefix=digest[:8],
    )
    registry = dict(W._registry())
    registry["keypointrcnn"] = entry
    monkeypatch.setattr(W, "_REGISTRY", registry)
    return payload, digest


def test_download_writes_atomically_and_checks_hash(local_model: tuple[Path, str], tmp_path: Path) -> None:
    payload, _ = local_model
    calls: list[tuple[int, int | None]] = []
    dest = tmp_path / "dest"
    path = W.download("keypointrcnn", dest, progress=lambda done, total: calls.append((done, total)))
    assert path == dest / "tiny-weights.pt"
    assert path.read_bytes() == payload.read_bytes()
    assert calls and calls[-1][0] == payload.stat().st_size
    assert W.verify("keypointrcnn", path) is True
    assert [p.name for p in dest.iterdir()] == ["tiny-weights.pt"]  # no temporary file left


def test_download_checksum_mismatch_leaves_nothing(
    local_model: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = dataclasses.replace(W.model_info("keypointrcnn"), sha256_prefix="00000000")
    monkeypatch.setitem(W._REGISTRY, "keypointrcnn", entry)
    dest = tmp_path / "dest"
    with pytest.raises(W.WeightsDownloadError, match="checksum mismatch"):
        W.download("keypointrcnn", dest)
    assert list(dest.iterdir()) == []


def test_download_offline_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real http URL: the autouse fixture makes every connection fail, as on an offline machine.
    entry = dataclasses.replace(W.model_info("maskrcnn"), url="http://weights.invalid/x-bf2d0c1e.pth")
    registry = dict(W._registry())
    registry["maskrcnn"] = entry
    monkeypatch.setattr(W, "_REGISTRY", registry)
    with pytest.raises(W.WeightsError, match=r"could not download model 'maskrcnn'.*--weights PATH"):
        W.download("maskrcnn", tmp_path)
    assert list(tmp_path.iterdir()) == []
