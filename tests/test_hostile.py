"""Hostile and clumsy input (issue #12): alignimate never touches a file that is not its own, never
prints a traceback without --debug, and says what went wrong with the documented exit status.

Every test runs the real command line on real files in temporary folders and checks, besides the exit
status and the message, that a neighbouring folder and the input photos are byte-for-byte unchanged.
Property-based variants (random mutations) are in test_hostile_properties.py.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import alignimate.pipeline.register_folder as register_folder
from alignimate.cli import app
from alignimate.pipeline.outputs import LEDGER_NAME, LOCK_NAME

runner = CliRunner()
FAST = ("--size", "64", "--model", "translation", "--device", "cpu", "--quiet")


def invoke(*args: object, env: dict[str, str] | None = None):
    result = runner.invoke(app, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    return result


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (links as their target text)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(folder))] = "link:" + os.readlink(path)
        elif path.is_file():
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def make_photos(folder: Path, count: int = 3) -> list[Path]:
    """``count`` textured JPEGs of one scene, each shifted by a few pixels (easy to register)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    scene = rng.random((40, 52, 3))
    scene = np.kron(scene, np.ones((4, 4, 1)))  # 160 x 208, smooth blocks
    paths = []
    for i in range(count):
        crop = scene[4 + i : 4 + i + 120, 6 + 2 * i : 6 + 2 * i + 160]
        path = folder / f"IMG_{i + 1}.jpg"
        Image.fromarray((crop * 255).astype(np.uint8)).save(path, quality=95)
        paths.append(path)
    return paths


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """Photos, a neighbouring folder of someone else's files, and where outputs go."""
    photos = tmp_path / "photos"
    make_photos(photos)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.jpg").write_bytes(b"not yours")
    (victim / "notes.txt").write_text("mine too")
    return {"root": tmp_path, "photos": photos, "victim": victim, "out": tmp_path / "aligned"}


def untouched(world: dict[str, Path], before: dict[str, dict[str, str]]) -> None:
    assert snapshot(world["victim"]) == before["victim"]
    assert snapshot(world["photos"]) == before["photos"]


def before_of(world: dict[str, Path]) -> dict[str, dict[str, str]]:
    return {"victim": snapshot(world["victim"]), "photos": snapshot(world["photos"])}


def registered(world: dict[str, Path]) -> Path:
    result = invoke("register", world["photos"], "--out", world["out"], *FAST)
    assert result.exit_code == 0, result.output
    return world["out"]


def edit_transforms(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, allow_nan=True))


# -- paths read back from disk ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["relative", "absolute", "nested", "hidden"])
def test_apply_never_writes_where_a_transforms_entry_points(world, where: str) -> None:
    out = registered(world)
    target = {
        "relative": "../victim/precious.jpg",
        "absolute": str(world["victim"] / "precious.jpg"),
        "nested": "sub/precious.jpg",
        "hidden": ".precious.jpg",
    }[where]
    edit_transforms(out / "transforms.json", lambda d: d["photos"][1].update(output=target))
    before = before_of(world)
    result = invoke("apply", out / "transforms.json", "--out", world["root"] / "applied", "--quiet")
    assert result.exit_code == 1, result.output  # that photo is skipped, the others are written
    untouched(world, before)
    report = (world["root"] / "applied" / "report.csv").read_text()
    assert "bad entry in transforms.json" in report and "plain file name" in report
    written = {p.name for p in (world["root"] / "applied").iterdir() if p.suffix == ".jpg"}
    assert written == {"IMG_1.jpg", "IMG_3.jpg"}


def test_register_rerun_ignores_a_hostile_output_in_its_transforms(world) -> None:
    out = registered(world)
    edit_transforms(out / "transforms.json", lambda d: d["photos"][1].update(output="../victim/precious.jpg"))
    (out / "IMG_2.jpg").unlink()  # makes the rerun write that frame again
    before = before_of(world)
    result = invoke("register", world["photos"], "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    untouched(world, before)
    assert (out / "IMG_2.jpg").is_file()


def fake_faces(world: dict[str, Path], **options):
    """``make_face_timeline`` on the photos with a detector that finds one face in each (no model)."""
    from alignimate.pipeline.face_timeline import make_face_timeline
    from tests.pipeline.test_face_timeline import FakeDetector, MeanColourEmbedder, _face

    detector = FakeDetector()
    for path in sorted(world["photos"].glob("*.jpg")):
        detector.register(np.asarray(Image.open(path).convert("RGB")), [_face(40, 20, 70)])
    defaults = dict(sort="name", output_size=64, caption="none", device="cpu", detector=detector)
    defaults |= dict(embedder=MeanColourEmbedder(), cache_dir=world["root"] / "cache")
    return make_face_timeline(world["photos"], world["root"] / "t.gif", **{**defaults, **options})


def test_faces_rerun_never_deletes_what_a_hostile_record_names(world) -> None:
    first = fake_faces(world)
    frames = first.out
    assert first.exit_code == 0 and len(first.aligned) == 3
    # Someone edits transforms.json so that two photos' frames are the victim's files; the next run
    # no longer has one of those photos, so it deletes that photo's frame and rewrites the other.
    edit_transforms(
        frames / "transforms.json",
        lambda d: d["photos"][2].update(output=str(world["victim"] / "precious.jpg")),
    )
    edit_transforms(frames / "transforms.json", lambda d: d["photos"][1].update(output="../victim/notes.txt"))
    (world["photos"] / "IMG_3.jpg").rename(world["root"] / "IMG_3.jpg")
    before = before_of(world)
    second = fake_faces(world)
    assert second.exit_code == 0 and len(second.aligned) == 2
    untouched(world, before)
    assert not (frames / "IMG_3.jpg").exists()  # its own stale frame is gone


# -- the output folder ----------------------------------------------------------------------------------


def test_apply_into_the_input_folder_is_refused_even_with_overwrite(world) -> None:
    out = registered(world)
    before = before_of(world)
    result = invoke("apply", out / "transforms.json", "--out", world["photos"], "--overwrite")
    assert result.exit_code == 2
    assert "never writes among the photos it reads" in result.output
    untouched(world, before)


def test_faces_gif_frame_rate_is_checked_before_any_work(world) -> None:
    result = invoke("faces", world["photos"], "-o", world["root"] / "t.gif", "--fps", "60")
    assert result.exit_code == 2 and "--fps must be at most 50 for GIF" in result.output
    assert not (world["root"] / "t_frames").exists()


@pytest.mark.parametrize("command", ["register", "faces"])
def test_output_folder_that_is_or_contains_the_input_is_refused(world, command: str) -> None:
    before = before_of(world)
    for out in (world["photos"], world["root"]):
        if command == "register":
            result = invoke("register", world["photos"], "--out", out, "--overwrite", *FAST)
        else:
            result = invoke(
                "faces", world["photos"], "-o", world["root"] / "t.gif", "--out-dir", out, "--overwrite"
            )
        assert result.exit_code == 2, result.output
        assert "input folder" in result.output
    untouched(world, before)


def test_overwrite_never_replaces_a_users_photo_in_a_folder_without_a_run(world) -> None:
    world["out"].mkdir()
    (world["out"] / "IMG_1.jpg").write_bytes(b"my own photo")
    result = invoke("register", world["photos"], "--out", world["out"], "--overwrite", *FAST)
    assert result.exit_code == 2
    assert "IMG_1.jpg" in result.output and "never replaces or deletes" in result.output
    assert (world["out"] / "IMG_1.jpg").read_bytes() == b"my own photo"


def test_user_file_next_to_an_earlier_run_is_never_replaced(world) -> None:
    out = registered(world)
    make_photos(world["photos"], 4)  # a new photo, IMG_4.jpg, arrives ...
    (out / "IMG_4.jpg").write_bytes(b"the user's own file")  # ... and the user put a file there
    (out / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        result = invoke("register", world["photos"], "--out", out, *FAST, *extra)
        assert result.exit_code == 0, result.output
        assert (out / "IMG_4.jpg").read_bytes() == b"the user's own file"
        assert (out / "notes.txt").read_text() == "mine"
        run = json.loads((out / "transforms.json").read_text())
        fourth = next(p for p in run["photos"] if p["name"] == "IMG_4.jpg")
        assert fourth["output"] == "IMG_4-1.jpg" and (out / "IMG_4-1.jpg").is_file()


def test_overwrite_deletes_only_recorded_files(world) -> None:
    out = registered(world)
    (out / "holiday.jpg").write_bytes(b"mine")
    result = invoke("register", world["photos"], "--out", out, "--overwrite", *FAST)
    assert result.exit_code == 0
    assert (out / "holiday.jpg").read_bytes() == b"mine"
    ledger = json.loads((out / LEDGER_NAME).read_text())
    assert "holiday.jpg" not in ledger["files"] and "IMG_1.jpg" in ledger["files"]


def test_a_ledger_claiming_a_path_outside_is_ignored(world) -> None:
    out = registered(world)
    ledger = json.loads((out / LEDGER_NAME).read_text())
    ledger["files"] += ["../victim/precious.jpg", str(world["victim"] / "notes.txt"), ".", ".."]
    (out / LEDGER_NAME).write_text(json.dumps(ledger))
    before = before_of(world)
    result = invoke("register", world["photos"], "--out", out, "--overwrite", *FAST)
    assert result.exit_code == 0
    untouched(world, before)


def test_another_commands_folder_needs_overwrite(world) -> None:
    out = registered(world)
    applied = world["root"] / "applied"
    assert invoke("apply", out / "transforms.json", "--out", applied).exit_code == 0
    again = invoke("apply", out / "transforms.json", "--out", applied)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert invoke("apply", out / "transforms.json", "--out", applied, "--overwrite").exit_code == 0
    into_register = invoke("register", world["photos"], "--out", applied, *FAST)
    assert into_register.exit_code == 2 and "earlier alignimate apply" in into_register.output


def test_animation_file_is_not_replaced_without_overwrite(world) -> None:
    out = registered(world)
    movie = world["victim"] / "precious.gif"
    movie.write_bytes(b"GIF89a someone's gif")
    result = invoke("animate", out, "-o", movie)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert movie.read_bytes() == b"GIF89a someone's gif"
    assert invoke("animate", out, "-o", movie, "--overwrite").exit_code == 0
    assert movie.read_bytes()[:6] == b"GIF89a" and movie.stat().st_size > 100
    frame = out / "IMG_1.jpg"
    assert invoke("animate", out, "-o", frame.with_suffix(".gif")).exit_code == 0  # a new name is fine


# -- values read back from disk -------------------------------------------------------------------------


BAD_MATRICES = {
    "nan": "NaN",
    "infinite": "Infinity",
    "singular": [[0, 0, 0], [0, 0, 0], [0, 0, 1]],
    "2x3": [[1, 0, 0], [0, 1, 0]],
    "text": [["1", 0, 0], [0, 1, 0], [0, 0, 1]],
    "huge": [[1e300, 0, 0], [0, 1, 0], [0, 0, 1]],
    "folded": [[1, 0, 0], [0, 1, 0], [-0.02, 0, 1]],
    "stretched": [[5000, 0, 0], [0, 0.001, 0], [0, 0, 1]],
}


@pytest.mark.parametrize("kind", sorted(BAD_MATRICES))
def test_bad_matrix_skips_that_photo_and_writes_the_others(world, kind: str) -> None:
    out = registered(world)
    value = BAD_MATRICES[kind]

    def change(data):
        if isinstance(value, str):
            data["photos"][1]["matrix"][0][0] = float(value.lower().replace("infinity", "inf"))
        else:
            data["photos"][1]["matrix"] = value

    edit_transforms(out / "transforms.json", change)
    applied = world["root"] / "applied"
    result = invoke("apply", out / "transforms.json", "--out", applied, "--json")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["aligned"] == 2
    assert [s["name"] for s in summary["skipped"]] == ["IMG_2.jpg"]
    assert "matrix" in summary["skipped"][0]["reason"]
    assert sorted(p.name for p in applied.glob("*.jpg")) == ["IMG_1.jpg", "IMG_3.jpg"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.update(canvas=[10**6, 10**6]), "pixel budget"),
        (lambda d: d.update(canvas=[-5, 100]), "pixel budget"),
        (lambda d: d.update(canvas="big"), "canvas must be"),
        (lambda d: d.update(crop={"top": 0, "left": 0, "height": 10**9, "width": 4}), "pixel budget"),
        (lambda d: d.update(output_size=[2, 2]), "does not match"),
        (lambda d: d.update(photos="all"), "photos must be a list"),
        (lambda d: d.update(command="rm -rf"), "command must be"),
    ],
)
def test_bad_run_values_are_refused_with_exit_2(world, change, fragment: str) -> None:
    out = registered(world)
    edit_transforms(out / "transforms.json", change)
    applied = world["root"] / "applied"
    result = invoke("apply", out / "transforms.json", "--out", applied)
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert not applied.exists()


def test_unknown_status_missing_matrix_and_repeated_outputs_are_counted(world) -> None:
    out = registered(world)

    def change(data):
        data["photos"][0]["status"] = "maybe"
        data["photos"][1]["matrix"] = None
        data["photos"].append(dict(data["photos"][2], name="copy.jpg"))  # same output as IMG_3

    edit_transforms(out / "transforms.json", change)
    result = invoke("apply", out / "transforms.json", "--out", world["root"] / "applied", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    reasons = {s["name"]: s["reason"] for s in summary["skipped"]}
    assert summary["aligned"] == 1
    assert "unknown status" in reasons["IMG_1.jpg"]
    assert "without a matrix" in reasons["IMG_2.jpg"]
    assert "also the output of photo 'IMG_3.jpg'" in reasons["copy.jpg"]


@pytest.mark.parametrize(
    "text",
    ["{", "[]", '{"format": "alignimate-transforms"}', "[" * 100_000, "\udcff", ""],
    ids=["broken", "list", "empty-run", "deep", "bad-utf8", "empty"],
)
def test_unreadable_transforms_is_a_usage_error(world, text: str) -> None:
    path = world["root"] / "transforms.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    result = invoke("apply", path, "--out", world["root"] / "applied")
    assert result.exit_code == 2 and str(path) in result.output


# -- checkpoints and caches ---------------------------------------------------------------------------


def test_hostile_checkpoint_is_checked_like_transforms(world) -> None:
    out = registered(world)
    data = json.loads((out / "transforms.json").read_text())
    data["photos"][1]["output"] = "../victim/precious.jpg"
    data["photos"][1]["extra"] = {"stat": "anything"}
    (out / ".alignimate-checkpoint.json").write_text(json.dumps(data))
    (out / "IMG_2.jpg").unlink()
    before = before_of(world)
    assert invoke("register", world["photos"], "--out", out, *FAST).exit_code == 0
    untouched(world, before)
    assert (out / "IMG_2.jpg").is_file()


def test_cache_path_that_is_a_file_warns_once_and_the_run_goes_on(world) -> None:
    cache = world["root"] / "cache-is-a-file"
    cache.write_text("not a folder")
    messages: list[str] = []
    result = fake_faces(world, cache_dir=cache, log=messages.append)
    assert result.exit_code == 0 and len(result.aligned) == 3
    warnings = [m for m in messages if "cache" in m]
    assert len(warnings) == 1 and str(cache) in warnings[0], messages
    assert cache.read_text() == "not a folder"


# -- flags and configs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--fps", "1e-9"], "--fps must be between 0.1 and 120"),
        (["--fps", "1e9"], "--fps must be between 0.1 and 120"),
        (["--fps", "100"], "--fps must be at most 50 for GIF"),  # fine for MP4, too fast for a GIF
        (["--hold-last", "1e7"], "--hold-last must be between 0 and 60"),
        (["--hold-first", "-1"], "--hold-first must be between 0 and 60"),
        (["--scale", "100"], "--scale must be between 0.01 and 4"),
        (["--crossfade", "100000"], "--crossfade must be between 0 and 100"),
        (["--quality", "nan"], "--quality must be between 0 and 100"),
    ],
)
def test_animation_limits_are_checked_before_any_work(world, args: list[str], fragment: str) -> None:
    out = registered(world)
    gif = world["root"] / "t.gif"
    result = invoke("animate", out, "-o", gif, *args)
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert not gif.exists() and not list(world["root"].glob(".t.tmp-*"))


def test_scale_that_makes_huge_frames_is_refused(world, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    Image.new("RGB", (4000, 3000)).save(big / "a.jpg")
    result = invoke("animate", big, "-o", tmp_path / "x.mp4", "--scale", "4")
    assert result.exit_code == 2 and "8192-pixel limit" in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--sort", "size"], "--sort must be one of date, name"),
        (["--loss", "magic"], "--loss must be one of"),
        (["--model", "warp"], "--model must be one of"),
        (["--size", "100000"], "--size must be between 32 and 4096"),
        (["--batch-size", "0"], "--batch-size must be between 1 and 1024"),
        (["--max-pixels", "5"], "--max-pixels must be between"),
        (["--threads", "100000"], "--threads must be between 1 and 256"),
        (["--device", "tpu"], "device must be"),
    ],
)
def test_register_flags_are_checked(world, args: list[str], fragment: str) -> None:
    result = invoke("register", world["photos"], "--out", world["out"], *args)
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert not world["out"].exists() or not any(world["out"].iterdir())


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\xff\xfe[register]\n", "not UTF-8"),
        (b"a = " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b"[register]\nsort = 'size'\n", "[register] sort must be one of date, name"),
        (b"[animate]\nfps = 1e9\n", "[animate] fps must be between"),
        (b"[register]\nkeypoints = [1, 2]\n", "list of names"),
        (b"x" * (2 << 20), "larger than 1 MiB"),
    ],
)
def test_bad_config_files_are_usage_errors(world, content: bytes, fragment: str) -> None:
    config = world["root"] / "preset.toml"
    config.write_bytes(content)
    result = invoke("register", world["photos"], "--out", world["out"], "--config", config)
    assert result.exit_code == 2 and fragment in result.output and str(config) in result.output


def test_a_config_that_is_a_folder_is_a_usage_error(world) -> None:
    result = invoke("register", world["photos"], "--out", world["out"], "--config", world["victim"])
    assert result.exit_code == 2 and "cannot read config file" in result.output


def test_output_folder_that_cannot_be_created(world) -> None:
    blocker = world["root"] / "file"
    blocker.write_text("x")
    result = invoke("register", world["photos"], "--out", blocker / "sub", *FAST)
    assert result.exit_code == 2 and "cannot be created" in result.output


# -- failures: full disk, internal errors ----------------------------------------------------------------


def test_full_disk_exits_3_and_a_rerun_resumes(world, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = register_folder.save_image_pixels
    saved: list[Path] = []

    def save_until_full(path, planes, *args, **kwargs):
        if len(saved) == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        saved.append(Path(path))
        return real_save(path, planes, *args, **kwargs)

    monkeypatch.setattr(register_folder, "save_image_pixels", save_until_full)
    result = invoke("register", world["photos"], "--out", world["out"], *FAST)
    assert result.exit_code == 3, result.output
    message = result.output.strip().splitlines()[-1]
    assert "No space left on device" in message and "rerun the same command to resume" in message
    assert len(result.output.strip().splitlines()) == 1
    monkeypatch.setattr(register_folder, "save_image_pixels", real_save)
    again = invoke("register", world["photos"], "--out", world["out"], *FAST, "--json")
    assert again.exit_code == 0
    assert sorted(p.name for p in world["out"].glob("*.jpg")) == ["IMG_1.jpg", "IMG_2.jpg", "IMG_3.jpg"]
    assert not (world["out"] / ".alignimate-checkpoint.json").exists()


def test_internal_error_is_one_line_unless_debug(world, monkeypatch: pytest.MonkeyPatch) -> None:
    import alignimate.pipeline as pipeline

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(pipeline, "align_folder", broken)
    result = invoke("register", world["photos"], "--out", world["out"])
    assert result.exit_code == 3
    assert result.output.strip() == (
        "alignimate: internal error: RuntimeError: a bug (rerun with --debug for the traceback, and "
        "please report it)"
    )
    verbose = runner.invoke(app, ["--debug", "register", str(world["photos"]), "--out", str(world["out"])])
    assert verbose.exit_code == 3 and "Traceback" in verbose.output
    by_env = runner.invoke(
        app, ["register", str(world["photos"]), "--out", str(world["out"])], env={"ALIGNIMATE_DEBUG": "1"}
    )
    assert by_env.exit_code == 3 and "Traceback" in by_env.output


def test_ctrl_c_is_exit_130_with_a_hint(world, monkeypatch: pytest.MonkeyPatch) -> None:
    import alignimate.pipeline as pipeline

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "align_folder", interrupted)
    result = invoke("register", world["photos"], "--out", world["out"])
    assert result.exit_code == 130 and "rerun the command to resume" in result.output


# -- concurrent runs -------------------------------------------------------------------------------------


def test_second_run_into_the_same_folder_is_refused(world) -> None:
    out = registered(world)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename, "since": 0}))
        result = invoke("register", world["photos"], "--out", out, *FAST)
        assert result.exit_code == 2 and f"process {holder.pid}" in result.output
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: its lock is stale and the next run takes it over.
    result = invoke("register", world["photos"], "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert not (out / LOCK_NAME).exists()


# -- nothing dropped silently ----------------------------------------------------------------------------


def test_every_photo_named_entry_is_in_the_report(world) -> None:
    photos = world["photos"]
    (photos / "folder.jpg").mkdir()
    os.mkfifo(photos / "pipe.jpg")
    (photos / "broken.jpg").symlink_to(photos / "absent.jpg")
    (photos / "loop.jpg").symlink_to(photos / "loop.jpg")
    (photos / "notes.txt").write_text("ignored by rule: not an image suffix")
    (photos / ".hidden.jpg").write_bytes(b"ignored by rule: hidden")
    result = invoke("register", photos, "--out", world["out"], *FAST)
    assert result.exit_code == 1
    report = (world["out"] / "report.csv").read_text()
    for name in ("folder.jpg", "pipe.jpg", "broken.jpg", "loop.jpg"):
        assert name in report
    assert "notes.txt" not in report and ".hidden.jpg" not in report


def test_a_photo_that_vanishes_before_detection_is_skipped_alone(world, monkeypatch) -> None:
    from alignimate.detect.cache import DetectionCache

    real_hash = DetectionCache.photo_hash

    def vanishing(self, path):
        if Path(path).name == "IMG_2.jpg":
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_hash(self, path)

    monkeypatch.setattr(DetectionCache, "photo_hash", vanishing)
    result = fake_faces(world)
    assert sorted(p.name for p in result.aligned) == ["IMG_1.jpg", "IMG_3.jpg"]
    assert [(p.name, p.reason) for p in result.skipped] == [
        ("IMG_2.jpg", "cannot be read (No such file or directory)")
    ]
    assert result.exit_code == 1
