"""End-to-end tests of `alignimate register`, `apply` and `animate` on the sample scenes and on bad inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import alignimate.pipeline.register_folder as register_folder
import alignimate.pipeline.register_stages as register_stages
from alignimate.cli import app

ROOT = Path(__file__).resolve().parents[2]
SCENES = ROOT / "sample_data" / "scenes"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def corner_error(estimate: np.ndarray, truth: np.ndarray, size_hw: tuple[int, int]) -> float:
    h, w = size_hw
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    a, b = estimate @ corners, truth @ corners
    return float(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0).mean())


@pytest.fixture(scope="module")
def scenes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("scenes") / "aligned"
    result = invoke("register", SCENES, "--out", out, "--model", "homography", "--json")
    return out, result


def test_register_sample_scenes_matches_ground_truth(scenes_run) -> None:
    out, result = scenes_run
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["aligned"] == 10 and summary["skipped"] == []
    truth = json.loads((SCENES / "ground_truth.json").read_text())
    run = json.loads((out / "transforms.json").read_text())
    records = {p["name"]: p for p in run["photos"]}
    errors = []
    for frame in truth["frames"]:
        reference_H_frame = np.linalg.inv(np.array(frame["frame_H_reference"]))
        errors.append(
            corner_error(np.array(records[frame["file"]]["matrix"]), reference_H_frame, frame["size"])
        )
    assert max(errors) < 0.5, errors
    # Every frame is written at the crop size, which is even (H.264) and inside the canvas.
    h, w = run["output_size"]
    assert h % 2 == 0 and w % 2 == 0 and h <= run["canvas"][0] and w <= run["canvas"][1]
    for record in run["photos"]:
        assert iio.imread(out / record["output"]).shape[:2] == (h, w)
    report = (out / "report.csv").read_text().splitlines()
    assert report[0].startswith("index,name,status,reason")
    assert len(report) == 11


def test_apply_reproduces_register_frames(scenes_run, tmp_path: Path) -> None:
    out, _ = scenes_run
    result = invoke("apply", out / "transforms.json", "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    for frame in sorted(out.glob("scene_*.jpg")):
        assert np.array_equal(iio.imread(frame), iio.imread(tmp_path / "again" / frame.name)), frame.name


def test_apply_to_larger_versions_scales_the_frames(scenes_run, tmp_path: Path) -> None:
    out, _ = scenes_run
    big = tmp_path / "big"
    big.mkdir()
    for path in sorted(SCENES.glob("scene_0[0-3].jpg")):
        with Image.open(path) as image:
            image.resize((image.width * 2, image.height * 2), Image.Resampling.BICUBIC).save(big / path.name)
    result = invoke("apply", out / "transforms.json", "--out", tmp_path / "full", "--images", big)
    # Photos without a bigger version are skipped with a reason: exit status 1.
    assert result.exit_code == 1, result.output
    run = json.loads((out / "transforms.json").read_text())
    frame = iio.imread(tmp_path / "full" / "scene_02.jpg")
    assert abs(frame.shape[0] - 2 * run["output_size"][0]) <= 2
    assert abs(frame.shape[1] - 2 * run["output_size"][1]) <= 2
    small = np.asarray(Image.fromarray(frame).resize(tuple(run["output_size"][::-1]), Image.Resampling.BOX))
    assert np.abs(small.astype(float) - iio.imread(out / "scene_02.jpg").astype(float)).mean() < 6
    report = (tmp_path / "full" / "report.csv").read_text()
    assert "no version of scene_05.jpg" in report


def test_animate_gif_and_mp4(scenes_run, tmp_path: Path) -> None:
    out, _ = scenes_run
    gif = tmp_path / "scenes.gif"
    result = invoke("animate", out, "-o", gif, "--fps", "5", "--hold-last", "1", "--caption", "index")
    assert result.exit_code == 0, result.output
    assert iio.improps(gif, index=None).shape[0] == 10 + 5
    mp4 = tmp_path / "scenes.mp4"
    result = invoke("animate", out, "-o", mp4, "--fps", "12", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["frames"] == 10
    frames = iio.imread(mp4, plugin="FFMPEG", index=None)
    assert frames.shape[0] == 10
    assert frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0


def make_bad_folder(folder: Path) -> dict[str, str]:
    """Good scene frames plus one of each kind of bad file; returns {name: expected reason fragment}."""
    folder.mkdir()
    for path in sorted(SCENES.glob("scene_0[0-3].jpg")):
        shutil.copy(path, folder / path.name)
    good = (SCENES / "scene_04.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not a photo")
    (folder / "noise.png").write_bytes(bytes(range(256)) * 4)
    return {"truncated.jpg": "truncated", "empty.jpg": "empty", "notes.jpg": "not an image", "noise.png": ""}


def test_bad_photos_are_reported_and_the_rest_aligned(tmp_path: Path) -> None:
    expected = make_bad_folder(tmp_path / "in")
    result = invoke("register", tmp_path / "in", "--out", tmp_path / "out", "--model", "homography", "-q")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    run = json.loads((tmp_path / "out" / "transforms.json").read_text())
    status = {p["name"]: p for p in run["photos"]}
    for name, fragment in expected.items():
        assert status[name]["status"] == "skipped", name
        assert status[name]["reason"], name
        assert fragment in status[name]["reason"], (name, status[name]["reason"])
    aligned = [n for n, p in status.items() if p["status"] in ("aligned", "reference")]
    assert sorted(aligned) == [f"scene_0{i}.jpg" for i in range(4)]
    assert len(list((tmp_path / "out").glob("scene_*.jpg"))) == 4


def test_inputs_are_never_modified(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(SCENES.glob("scene_0[0-2].jpg")):
        shutil.copy(path, folder / path.name)
        (folder / path.name).chmod(0o444)
    before = {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in folder.iterdir()
    }
    # The output folder lies inside the input folder: it must not be read as input.
    result = invoke("register", folder, "--out", folder / "aligned", "-q")
    assert result.exit_code == 0, result.output
    after = {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in folder.iterdir()
        if p.is_file()
    }
    assert before == after
    rerun = invoke("register", folder, "--out", folder / "aligned", "-q", "--overwrite")
    assert rerun.exit_code == 0, rerun.output
    names = [p["name"] for p in json.loads((folder / "aligned" / "transforms.json").read_text())["photos"]]
    assert names == ["scene_00.jpg", "scene_01.jpg", "scene_02.jpg"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("register", tmp_path / "empty", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "no photos found" in result.output
    result = invoke("register", tmp_path / "missing", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "not a folder" in result.output
    result = invoke("register", SCENES, "--out", tmp_path / "o", "--model", "warp-drive")
    assert result.exit_code == 2 and "model must be one of" in result.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    result = invoke("register", SCENES, "--out", foreign)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (foreign / "thesis.docx").read_text() == "precious"


def test_single_photo_folder(tmp_path: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(SCENES / "scene_03.jpg", folder)
    result = invoke("register", folder, "--out", tmp_path / "o", "-q")
    assert result.exit_code == 0, result.output
    frame = iio.imread(tmp_path / "o" / "scene_03.jpg")
    original = iio.imread(SCENES / "scene_03.jpg")
    assert frame.shape == original.shape
    assert np.abs(frame.astype(float) - original.astype(float)).mean() < 1.5  # identity warp, JPEG re-encode


def test_interrupted_run_resumes_without_recomputing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(SCENES.glob("scene_0[0-4].jpg")):
        shutil.copy(path, folder / path.name)
    out = tmp_path / "out"
    registered: list[int] = []
    real_register = register_stages.register

    def counting_register(moving, *args, **kwargs):
        registered.append(moving.shape[0])
        return real_register(moving, *args, **kwargs)

    saves = {"n": 0}
    real_save = register_folder.save_image_pixels

    def failing_save(path, frame, **kwargs):
        saves["n"] += 1
        if saves["n"] == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while the third frame was written
        return real_save(path, frame, **kwargs)

    monkeypatch.setattr(register_stages, "register", counting_register)
    monkeypatch.setattr(register_folder, "save_image_pixels", failing_save)
    with pytest.raises(KeyboardInterrupt):
        register_folder.align_folder(folder, out, model="homography")
    assert sum(registered) == 4
    written = sorted(p.name for p in out.glob("*.jpg"))
    assert len(written) == 2  # no half-written third frame
    assert not list(out.glob(".*tmp*"))
    mtimes = {name: (out / name).stat().st_mtime_ns for name in written}

    monkeypatch.setattr(register_folder, "save_image_pixels", real_save)
    registered.clear()
    result = register_folder.align_folder(folder, out, model="homography")
    assert registered == []  # every registration came from the checkpoint
    assert result.exit_code == 0
    assert len(result.aligned) == 5
    assert {name: (out / name).stat().st_mtime_ns for name in written} == mtimes  # not rewritten
    assert not (out / ".alignimate-checkpoint.json").exists()

    # A plain rerun of a finished run redoes nothing either.
    again = register_folder.align_folder(folder, out, model="homography")
    assert registered == [] and len(again.aligned) == 5


@pytest.mark.parametrize(
    ("loss_name", "converged", "loss", "agreement", "expected"),
    [
        ("zncc", True, 0.004, None, None),
        ("zncc", False, 0.03, None, "kept: not fully converged"),
        ("zncc", True, 0.65, None, "registration looks wrong"),
        ("zncc", False, 1.0, None, "registration looks wrong"),
        ("mse", False, 0.001, None, "registration did not converge"),
        ("mse", True, 0.5, None, None),
        ("zncc", True, 0.004, 0.8, None),
        ("zncc", True, 0.004, 0.3, "only 30% of the photo agrees"),
    ],
)
def test_registration_verdict(
    loss_name: str, converged: bool, loss: float, agreement: float | None, expected: str | None
) -> None:
    verdict = register_stages.registration_verdict(loss_name, converged, loss, agreement)
    if expected is None:
        assert verdict is None
    else:
        assert verdict.startswith(expected)


def test_a_mostly_occluded_photo_is_reported_not_silently_misaligned(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("scene_00.jpg", "scene_01.jpg", "scene_02.jpg"):
        shutil.copy(SCENES / name, folder / name)
    covered = np.asarray(Image.open(folder / "scene_02.jpg")).copy()
    h, w = covered.shape[:2]
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    covered[: int(h * 0.85)] = blocks.repeat(16, 0).repeat(16, 1)[: int(h * 0.85), :w]
    Image.fromarray(covered).save(folder / "scene_02.jpg", quality=95)
    result = register_folder.align_folder(folder, tmp_path / "out", reference="first")
    records = result.run.by_name()
    assert records["scene_01.jpg"].status == "aligned"
    assert records["scene_01.jpg"].extra["agreement"] > 0.8
    assert records["scene_02.jpg"].status == "skipped", records["scene_02.jpg"]
    assert "agrees" in records["scene_02.jpg"].reason or "looks wrong" in records["scene_02.jpg"].reason


def test_similarity_on_tilted_shots_keeps_them_with_a_note(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("scene_00.jpg", "scene_03.jpg", "scene_06.jpg"):  # 03 and 06 have perspective
        shutil.copy(SCENES / name, folder / name)
    result = register_folder.align_folder(folder, tmp_path / "out", model="similarity")
    assert result.exit_code == 0
    notes = {p.name: p.reason for p in result.run.photos}
    assert notes["scene_00.jpg"] == ""
    for name in ("scene_03.jpg", "scene_06.jpg"):
        assert notes[name] == "" or notes[name].startswith("kept"), notes[name]
