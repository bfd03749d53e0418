"""The CLI's exit: once torch is loaded it skips the interpreter's teardown (freeing modules,
docs/benchmarks.md) but still runs the exit handlers, flushes the streams and gives the
status Python would give; it exits normally whenever a thread Python would wait for is running."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import alignimate.cli as cli


class _Exited(Exception):  # noqa: N818  (stands for os._exit, not an error)
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@pytest.fixture
def hard_exit(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``os._exit`` raises instead, and the exit handlers record that they ran."""
    ran: list[str] = []

    def fake_exit(status: int) -> None:
        raise _Exited(status)

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    monkeypatch.setattr(cli.atexit, "_run_exitfuncs", lambda: ran.append("handlers"))
    return ran


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (1, 1), (2, 2), ("bad things", 1)])
def test_exit_status_is_pythons(code: object, status: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli._exit_status(SystemExit(code)) == status
    if isinstance(code, str):
        assert "bad things" in capsys.readouterr().err


def test_with_torch_loaded_the_handlers_run_and_the_process_ends(hard_exit: list[str]) -> None:
    import torch  # noqa: F401  (loaded, as after a registration)

    with pytest.raises(_Exited) as exited:
        cli._exit_without_teardown(3)
    assert exited.value.status == 3 and hard_exit == ["handlers"]


def test_a_thread_python_would_wait_for_means_a_normal_exit(hard_exit: list[str]) -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait, args=(10,))  # not a daemon
    worker.start()
    try:
        with pytest.raises(SystemExit) as stop:
            cli._exit_without_teardown(1)
        assert stop.value.code == 1 and hard_exit == []
    finally:
        release.set()
        worker.join()


def test_without_torch_the_exit_is_normal(hard_exit: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch")
    with pytest.raises(SystemExit) as stop:
        cli._exit_without_teardown(0)
    assert stop.value.code == 0 and hard_exit == []


# A fresh CLI process whose exit handler leaves a mark: it must run, and the JSON (a pipe, so block
# buffered) must arrive whole.
_RUN = """
import atexit, sys
from pathlib import Path
mark = Path(sys.argv[1])
atexit.register(lambda: mark.write_text("ran"))
from alignimate.cli import main
sys.argv = ["alignimate", *sys.argv[2:]]
main()
"""


def test_a_real_run_exits_with_its_status_output_and_handlers(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        pixels = np.clip(rng.normal(128, 40, (60, 80, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.jpg", quality=90)
    mark = tmp_path / "mark"
    args = ["register", str(folder), "--out", str(tmp_path / "out"), "--size", "64", "--json"]
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(mark), *args], capture_output=True, text=True, timeout=300
    )
    summary = json.loads(done.stdout)
    assert summary["out"] == str(tmp_path / "out") and mark.read_text() == "ran"
    assert done.returncode == (0 if not summary["skipped"] else 1)
    assert (tmp_path / "out" / "transforms.json").is_file()
    nowhere = ["register", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")]
    missing = subprocess.run(
        [sys.executable, "-c", _RUN, str(mark), *nowhere],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "nowhere" in missing.stderr
