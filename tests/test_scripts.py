"""The batch scripts in scripts/, run as a user runs them: bash, with `alignimate` on PATH, on small
folders of sample faces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SAMPLE = ROOT / "sample_data" / "faces"
# Small frames and GIFs keep each run to a few seconds; the options go through to `alignimate faces`.
FAST = ["--output-size", "96", "--caption", "none", "--fps", "4", "--hold-first", "0", "--hold-last", "0"]


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The venv's bin first, so the scripts find this checkout's `alignimate`.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ALIGNIMATE_CACHE"] = str(cache)
    env["SUFFIX"] = "gif"
    # One thread per run: two spin-waiting threads per process on a small shared CPU are much slower.
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(script: str, *args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _folder(path: Path, names: list[str]) -> Path:
    path.mkdir(parents=True)
    for name in names:
        shutil.copy2(SAMPLE / name, path / name)
    return path


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("people")
    _folder(root / "alice", ["face_00.jpg", "face_01.jpg", "face_02.jpg"])
    _folder(root / "bob smith", ["face_05.jpg", "face_06.jpg", "no_face_01.jpg", "face_07.jpg"])
    (root / ".thumbnails").mkdir()  # hidden: left out
    return root


def test_every_script_has_a_usage_line() -> None:
    env = _env(Path("/nonexistent"))
    for script in ("video_per_subfolder.sh", "nightly_update.sh", "parallel_folders.sh"):
        text = (SCRIPTS / script).read_text()
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
        assert os.access(SCRIPTS / script, os.X_OK), script
        result = _run(script, env=env)
        assert result.returncode == 2 and result.stderr.startswith(f"usage: {script} "), script


def test_the_cli_has_the_faces_command() -> None:
    """The scripts call `alignimate faces`; this fails clearly when the command is not wired."""
    result = subprocess.run(
        ["alignimate", "faces", "--help"], env=_env(Path("/nonexistent")), capture_output=True, text=True
    )
    assert result.returncode == 0 and "--output-size" in result.stdout, result.stdout + result.stderr


def test_video_per_subfolder(parent: Path, tmp_path: Path) -> None:
    out = tmp_path / "videos"
    result = _run("video_per_subfolder.sh", parent, out, *FAST, env=_env(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.gif")) == ["alice.gif", "bob smith.gif"]
    assert len(list((out / "alice_frames").glob("face_*.jpg"))) == 3
    assert len(list((out / "bob smith_frames").glob("face_*.jpg"))) == 3  # the coffee photo is dropped
    assert (out / "bob smith_frames" / "contact_sheet.jpg").exists()
    assert "made 2 timeline(s)" in result.stderr


def test_nightly_update_processes_only_new_photos(tmp_path: Path) -> None:
    photos = _folder(tmp_path / "selfies", ["face_03.jpg", "face_04.jpg", "face_08.jpg"])
    output = tmp_path / "timeline.gif"
    env = _env(tmp_path / "cache")
    first = _run("nightly_update.sh", photos, output, *FAST, "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["detections"] == {"photos": 3, "detected": 3, "cached": 0}
    # Nothing changed: no run at all.
    idle = _run("nightly_update.sh", photos, output, *FAST, "--json", env=env)
    assert idle.returncode == 0 and idle.stdout == "" and "nothing new" in idle.stderr
    # A new photo arrives: only it goes through the face detector, its frame is added.
    frames = output.parent / "timeline_frames"
    before = {p.name: p.stat().st_mtime_ns for p in frames.glob("face_*.jpg")}
    shutil.copy2(SAMPLE / "face_09.jpg", photos / "face_09.jpg")
    second = _run("nightly_update.sh", photos, output, *FAST, "--json", env=env)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["detections"] == {"photos": 4, "detected": 1, "cached": 3}
    assert summary["aligned"] == 4
    after = {p.name: p.stat().st_mtime_ns for p in frames.glob("face_*.jpg")}
    assert set(after) == {*before, "face_09.jpg"}
    assert all(after[name] == before[name] for name in before)  # old frames untouched


def test_parallel_folders(parent: Path, tmp_path: Path) -> None:
    work = tmp_path / "parent"
    shutil.copytree(parent, work)
    (work / "empty").mkdir()  # no photos: its run fails, the others still finish
    out = tmp_path / "videos"
    result = _run("parallel_folders.sh", "-j", "2", work, out, *FAST, env=_env(tmp_path / "cache"))
    assert result.returncode == 1
    assert sorted(p.name for p in out.glob("*.gif")) == ["alice.gif", "bob smith.gif"]
    assert sorted(p.name for p in out.glob("*.log")) == ["alice.log", "bob smith.log", "empty.log"]
    lines = sorted(result.stdout.splitlines())
    assert lines[0].startswith("FAILED  empty (exit status 2")
    assert lines[1].startswith("ok      alice -> ") and lines[2].startswith("ok      bob smith -> ")
    assert "no photos found" in (out / "empty.log").read_text()
    assert len(list((out / "alice_frames").glob("face_*.jpg"))) == 3
