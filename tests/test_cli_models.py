"""`alignimate models list|path|download` with a fake hub cache and no network."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignimate.cli import app
from alignimate.detect import weights

runner = CliRunner()


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tmp_path / "torch"


def test_list_shows_missing_and_present_weights(torch_home: Path) -> None:
    info = weights.model_info("keypointrcnn")
    cached = torch_home / "hub" / "checkpoints" / info.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not really weights")
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["keypointrcnn"]["present"] and rows["keypointrcnn"]["path"] == str(cached)
    assert not rows["maskrcnn"]["present"]
    assert rows["mtcnn"]["present"]  # bundled with facenet-pytorch
    text = runner.invoke(app, ["models", "list"]).output
    assert "alignimate models download maskrcnn" in text


def test_path_found_and_missing(torch_home: Path) -> None:
    info = weights.model_info("maskrcnn")
    result = runner.invoke(app, ["models", "path", "maskrcnn"])
    assert result.exit_code == 1
    assert "maskrcnn" in result.output and "alignimate models download maskrcnn" in result.output
    assert "Traceback" not in result.output
    cached = torch_home / "hub" / "checkpoints" / info.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    result = runner.invoke(app, ["models", "path", "maskrcnn"])
    assert result.exit_code == 0 and result.stdout.strip() == str(cached)


def test_download_offline_is_a_clear_error(torch_home: Path) -> None:
    result = runner.invoke(app, ["models", "download", "keypointrcnn", "--quiet"])
    assert result.exit_code == 1
    assert "could not download model 'keypointrcnn'" in result.output
    assert "Traceback" not in result.output
    assert not list((torch_home).rglob("*.pth"))  # nothing half-written left behind


def test_unknown_model_is_a_usage_error(torch_home: Path) -> None:
    result = runner.invoke(app, ["models", "path", "nonsense"])
    assert result.exit_code == 2 and "known models" in result.output
