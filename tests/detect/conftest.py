"""Shared fixtures of the semantic-stage tests. No test here may touch the network: every socket
connection except to this machine's own loopback address fails loudly, so an accidental weight
download is an error, not a slow pass. Downloads on first use are off for every test
(``ALIGNIMATE_OFFLINE``, tests/conftest.py) unless a test turns them on against its own server on
127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers import one_torch_thread  # noqa: F401  (an autouse fixture, used by being imported)

REPO = Path(__file__).resolve().parents[2]
SAMPLE_FACES = REPO / "sample_data" / "faces"


class NetworkDisabledError(ConnectionRefusedError):
    """Raised instead of connecting; an OSError like a real refused connection."""


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _is_loopback(address: object) -> bool:
    return isinstance(address, tuple) and bool(address) and address[0] in _LOOPBACK


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    connect, create_connection = socket.socket.connect, socket.create_connection

    def guarded_connect(self: socket.socket, address: object) -> None:
        if not _is_loopback(address):
            raise NetworkDisabledError(f"network access attempted in a test: {address!r}")
        connect(self, address)

    def guarded_create_connection(address: object, *args: object, **kwargs: object) -> socket.socket:
        if not _is_loopback(address):
            raise NetworkDisabledError(f"network access attempted in a test: {address!r}")
        return create_connection(address, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TORCH_HOME pointing at an empty folder, so no real cached weights are found."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home

