"""Shared fixtures of the semantic-stage tests. No test here may touch the network: every socket
connection fails loudly, so an accidental weight download is an error, not a slow pass."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE_FACES = REPO / "sample_data" / "faces"


class NetworkDisabledError(ConnectionRefusedError):
    """Raised instead of connecting; an OSError like a real refused connection."""


def _refuse(*args: object, **kwargs: object) -> None:
    raise NetworkDisabledError(f"network access attempted in a test: {args!r}")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TORCH_HOME pointing at an empty folder, so no real cached weights are found."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> object:
    """One intra-op thread while these tests run: on a small shared CPU, two threads competing with
    other processes made the R-CNN backbone 20x slower (spin-waiting), one thread is predictable."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
