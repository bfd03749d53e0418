"""``register --mode body|faces|keypoints|masks`` end to end.

Ground truth: synthetic series made here (a silhouette and three keypoints moved by known
similarities over photos whose pixels share nothing, so only the semantic content can align them)
and the sample face timeline (sample_data/faces/ground_truth.json) with the real MTCNN. Body mode
runs with a fake person detector for accuracy, and through the CLI with randomly initialised
R-CNN weights for the plumbing (model loading, cache, reasons, exit codes).
"""

from __future__ import annotations

import csv
import json
import math
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from alignimate import align_folder
from alignimate.cli import app
from alignimate.core import warp_perspective
from alignimate.detect.base import Instance
from alignimate.detect.weights import model_info
from alignimate.pipeline import UsageError
from alignimate.pipeline.semantic_sources import keypoint_init, parse_mode, working_size

ROOT = Path(__file__).resolve().parents[2]
FACES = ROOT / "sample_data" / "faces"
SIZE_HW = (240, 320)
# Where three body keypoints sit on the base silhouette (pixels of the base canvas).
BASE_POINTS = {"left_ear": (150.0, 52.0), "left_shoulder": (160.0, 95.0), "left_hip": (150.0, 185.0)}
runner = CliRunner()


def similarity(angle_deg: float, scale: float, tx: float, ty: float, centre=(160.0, 120.0)) -> np.ndarray:
    """``photo_H_base``: rotate and scale about ``centre``, then shift."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    cx, cy = centre
    return np.array([[c, -s, cx - c * cx + s * cy + tx], [s, c, cy - s * cx - c * cy + ty], [0, 0, 1.0]])


MOVES = [
    similarity(0, 1.0, 0, 0),
    similarity(8, 1.1, 12, -6),
    similarity(-6, 0.92, -15, 8),
    similarity(4, 1.05, 6, 10),
    similarity(-9, 1.12, -8, -10),
]


def base_mask() -> np.ndarray:
    """An asymmetric silhouette (head, torso, belly) as a float mask of SIZE_HW."""
    h, w = SIZE_HW
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    head = ((x - 152) / 22) ** 2 + ((y - 55) / 26) ** 2 <= 1
    torso = ((x - 158) / 38) ** 2 + ((y - 140) / 70) ** 2 <= 1
    belly = ((x - 192) / 30) ** 2 + ((y - 150) / 34) ** 2 <= 1
    return (head | torso | belly).astype(np.float32)


def moved_mask(photo_H_base: np.ndarray) -> np.ndarray:
    mask = torch.from_numpy(base_mask())[None, None]
    out = warp_perspective(mask, torch.from_numpy(photo_H_base).float()[None], SIZE_HW)
    return out[0, 0].numpy()


def moved_points(photo_H_base: np.ndarray) -> dict[str, tuple[float, float]]:
    out = {}
    for name, (x, y) in BASE_POINTS.items():
        p = photo_H_base @ np.array([x, y, 1.0])
        out[name] = (float(p[0] / p[2]), float(p[1] / p[2]))
    return out


def write_series(folder: Path, seed: int = 0) -> list[str]:
    """Photos of unrelated noise textures (pixels mode cannot align them), one per move."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i, _ in enumerate(MOVES):
        noise = rng.integers(0, 256, (SIZE_HW[0] // 8, SIZE_HW[1] // 8, 3), dtype=np.uint8)
        image = Image.fromarray(noise).resize((SIZE_HW[1], SIZE_HW[0]), Image.Resampling.BILINEAR)
        name = f"week_{i:02d}.png"
        image.save(folder / name)
        names.append(name)
    return names


def expected_matrix(i: int, reference: int = 0) -> np.ndarray:
    """``reference_H_photo`` of photo ``i``."""
    return MOVES[reference] @ np.linalg.inv(MOVES[i])


def corner_error(estimate: list[list[float]], truth: np.ndarray) -> float:
    h, w = SIZE_HW
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    a, b = np.asarray(estimate) @ corners, truth @ corners
    return float(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0).max())


def records(out: Path) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in json.loads((out / "transforms.json").read_text())["photos"]}


def invoke(*args: Any):
    return runner.invoke(app, [str(a) for a in args])


# -- parts -------------------------------------------------------------------------------------------
def test_parse_mode_accepts_inline_and_separate_sources(tmp_path: Path) -> None:
    assert parse_mode("pixels", None) == ("pixels", None)
    assert parse_mode("keypoints:pts.json", None) == ("keypoints", Path("pts.json"))
    assert parse_mode("masks", tmp_path) == ("masks", tmp_path)
    with pytest.raises(ValueError, match="needs a keypoint file"):
        parse_mode("keypoints", None)
    with pytest.raises(ValueError, match="only used by"):
        parse_mode("body", "x.json")
    with pytest.raises(ValueError, match="names another"):
        parse_mode("masks:a", "b")


def test_working_size_keeps_the_aspect_ratio() -> None:
    assert working_size((3000, 4000), 512) == (384, 512)
    assert working_size((4000, 3000), 512) == (512, 384)
    assert working_size((100, 50), 512) == (512, 256)


def test_keypoint_init_is_exact_on_noiseless_points_and_degrades_gracefully() -> None:
    truth = similarity(7, 1.2, 5, -3)
    moving = np.array([[10.0, 20.0], [200.0, 40.0], [120.0, 200.0]])
    fixed = (np.c_[moving, np.ones(3)] @ truth.T)[:, :2]
    ones = np.ones(3)
    np.testing.assert_allclose(keypoint_init(moving, ones, fixed, ones, "similarity"), truth, atol=1e-9)
    # Homography needs 4 points; with 3 the richest model they support (affine) is fitted instead.
    np.testing.assert_allclose(keypoint_init(moving, ones, fixed, ones, "homography"), truth, atol=1e-9)
    one = np.array([0.0, 0.0, 1.0])
    shift = keypoint_init(moving, one, fixed, one, "similarity")
    np.testing.assert_allclose(shift[:2, 2], fixed[2] - moving[2], atol=1e-9)
    np.testing.assert_allclose(shift[:2, :2], np.eye(2), atol=1e-12)
    assert keypoint_init(moving, np.zeros(3), fixed, ones, "similarity") is None


# -- keypoints FILE ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keypoint_series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("kp")
    names = write_series(root / "photos")
    entries = {name: moved_points(m) for name, m in zip(names, MOVES, strict=True)}
    del entries[names[3]]  # a photo the file does not mention
    points = root / "points.json"
    points.write_text(json.dumps(entries))
    return root / "photos", points, names


def test_keypoints_mode_recovers_the_moves_and_explains_missing_entries(
    keypoint_series, tmp_path: Path
) -> None:
    photos, points, names = keypoint_series
    out = tmp_path / "out"
    result = invoke("register", photos, "--out", out, "--mode", f"keypoints:{points}", "--json")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["skipped"] == [{"name": names[3], "reason": f"no entry for this photo in {points}"}]
    got = records(out)
    for i, name in enumerate(names):
        if i == 3:
            continue
        assert got[name]["status"] in ("aligned", "reference")
        assert corner_error(got[name]["matrix"], expected_matrix(i)) < 0.5, (name, got[name])
        # The heatmap registration lands where the closed-form keypoint fit puts the points.
        assert got[name]["extra"]["semantic"].get("keypoint_rms", 0.0) < 1e-3
    run = json.loads((out / "transforms.json").read_text())
    assert run["settings"]["mode"] == "keypoints"
    assert run["settings"]["source"] == str(points.resolve())
    assert run["settings"]["keypoints"] is None and run["settings"]["loss"] == "mse"
    with (out / "report.csv").open() as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert rows[names[3]]["status"] == "skipped" and "no entry" in rows[names[3]]["reason"]
    assert all((out / got[n]["output"]).is_file() for n in names if n != names[3])


def test_keypoints_mode_with_a_separate_source_and_chosen_names(keypoint_series, tmp_path: Path) -> None:
    photos, points, names = keypoint_series
    result = align_folder(
        photos, tmp_path / "out", mode="keypoints", source=points, keypoints=["left_ear", "left_hip"]
    )
    assert result.run.settings["keypoints"] == ["left_ear", "left_hip"]
    for i, name in enumerate(names):
        record = result.run.by_name()[name]
        if i != 3:
            assert corner_error(record.matrix, expected_matrix(i)) < 0.5


def test_keypoint_and_mask_modes_need_their_source(keypoint_series, tmp_path: Path) -> None:
    photos, _, _ = keypoint_series
    result = invoke("register", photos, "--out", tmp_path / "a", "--mode", "keypoints")
    assert result.exit_code == 2 and "needs a keypoint file" in result.output
    result = invoke("register", photos, "--out", tmp_path / "b", "--mode", "masks:" + str(tmp_path / "nope"))
    assert result.exit_code == 2 and "does not exist" in result.output
    result = invoke("register", photos, "--out", tmp_path / "c", "--keypoints", "nose")
    assert result.exit_code == 2 and "--keypoints is not used by --mode pixels" in result.output


def test_explicit_reference_without_keypoints_is_a_usage_error(keypoint_series, tmp_path: Path) -> None:
    photos, points, names = keypoint_series
    with pytest.raises(UsageError, match=f"reference photo .*{names[3]}: no entry"):
        align_folder(photos, tmp_path / "out", mode=f"keypoints:{points}", reference=names[3])
    # An automatic reference without keypoints gives way to the nearest photo that has some.
    result = align_folder(photos, tmp_path / "auto", mode=f"keypoints:{points}", reference="middle")
    assert result.run.reference in (names[2], names[4])
    assert result.run.by_name()[names[3]].status == "skipped"


# -- masks DIR -----------------------------------------------------------------------------------------
def test_masks_mode_registers_silhouettes(tmp_path: Path) -> None:
    names = write_series(tmp_path / "photos", seed=1)
    masks = tmp_path / "masks"
    masks.mkdir()
    for name, move in zip(names, MOVES, strict=True):
        mask = (moved_mask(move) * 255).round().astype(np.uint8)
        Image.fromarray(mask).save(masks / (Path(name).stem + ".png"))
    # A mask of the wrong shape (e.g. saved without the photo's rotation) is refused with a reason.
    Image.fromarray(np.zeros((320, 240), np.uint8) + 255).save(masks / "week_04.png")
    result = align_folder(tmp_path / "photos", tmp_path / "out", mode="masks", source=masks)
    got = result.run.by_name()
    assert got["week_04.png"].status == "skipped"
    assert "the mask must have the photo's aspect ratio" in got["week_04.png"].reason
    for i, name in enumerate(names[:4]):
        assert got[name].usable, got[name]
        assert corner_error(got[name].matrix, expected_matrix(i)) < 1.0, (name, got[name].matrix)
    assert result.exit_code == 1


# -- body --------------------------------------------------------------------------------------------
class TruthBodyDetector:
    """A person detector that knows the series: it recognises each photo by its pixels and returns
    the true keypoints and mask (plus a bystander), like Keypoint/Mask R-CNN would on a real photo."""

    name = "truth-body"

    def __init__(self, photos: Path, names: list[str], fail_on: str | None = None) -> None:
        self.by_pixels = {}
        for name, move in zip(names, MOVES, strict=True):
            key = np.asarray(Image.open(photos / name).convert("RGB")).tobytes()
            self.by_pixels[key] = (name, move)
        self.fail_on = fail_on
        self.seen: list[str] = []

    def settings(self) -> dict[str, Any]:
        return {"version": 1}

    def detect(self, images: list[np.ndarray]) -> list[list[Instance]]:
        out = []
        for image in images:
            name, move = self.by_pixels[image.tobytes()]
            self.seen.append(name)
            if name == self.fail_on:
                raise RuntimeError("model crashed")
            pts = moved_points(move)
            person = Instance(
                box=np.array([100, 20, 240, 230], np.float32),
                score=0.98,
                mask=moved_mask(move),
                keypoints=np.array(list(pts.values()), np.float32),
                keypoint_scores=np.full(3, 0.99, np.float32),
                keypoint_names=tuple(pts),
                image_size=SIZE_HW,
                label="person",
            )
            bystander = Instance(
                box=np.array([0, 0, 30, 40], np.float32),
                score=0.6,
                keypoints=np.zeros((3, 2), np.float32),
                keypoint_scores=np.full(3, 0.99, np.float32),
                keypoint_names=tuple(pts),
                image_size=SIZE_HW,
                label="person",
            )
            out.append([] if name == "week_02.png" else [bystander, person])
        return out


def test_body_mode_aligns_the_main_person_and_resumes_without_detecting(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    names = write_series(photos, seed=2)
    detector = TruthBodyDetector(photos, names, fail_on="week_04.png")
    kwargs = dict(mode="body", detector=detector, cache_dir=tmp_path / "cache")
    result = align_folder(photos, tmp_path / "out", **kwargs)
    got = result.run.by_name()
    assert got["week_02.png"].reason == "no person detected"
    assert got["week_04.png"].reason == "truth-body detection failed on this photo"
    for i in (0, 1, 3):
        assert corner_error(got[names[i]].matrix, expected_matrix(i)) < 0.5, got[names[i]]
        assert got[names[i]].extra["semantic"]["detected"] == 2
    assert result.run.settings["keypoints"] is None  # the default body keypoints
    # Resuming recomputes nothing; the photo without a person comes from the detection cache, so
    # only the photo the detector failed on is tried again. The same holds for a fresh output folder.
    for out in ("out", "out2"):
        detector.seen.clear()
        again = align_folder(photos, tmp_path / out, **kwargs)
        assert set(detector.seen) == {"week_04.png"}
        for before, after in zip(result.run.photos, again.run.photos, strict=True):
            if out == "out":
                assert after.matrix == before.matrix  # reused from the checkpoint as it was
            elif before.matrix is not None:  # recomputed from cached detections (float16 masks)
                np.testing.assert_allclose(after.matrix, before.matrix, atol=1e-4)


@pytest.fixture
def hub_with_random_weights(random_rcnn_weights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TORCH_HOME whose hub cache holds the random R-CNN weights under their published names."""
    home = tmp_path / "torch_home"
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name, path in random_rcnn_weights.items():
        (checkpoints / model_info(name).file_name).symlink_to(path)
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("ALIGNIMATE_CACHE", str(tmp_path / "cache"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError(f"network access attempted in a test: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return home


def test_body_mode_cli_runs_the_real_models_from_the_hub_cache(
    hub_with_random_weights: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_series(photos, seed=3)
    out = tmp_path / "out"
    args = ["register", photos, "--out", out, "--mode", "body", "--detect-size", "64"]
    result = invoke(*args, "--json", "--batch-size", "2")
    # Random weights find "persons" with random keypoints: whatever they give, every photo ends
    # aligned or skipped with a reason, and the run is recorded.
    assert result.exit_code in (0, 1), result.output
    run = json.loads((out / "transforms.json").read_text())
    assert run["settings"]["mode"] == "body" and run["settings"]["detect_size"] == 64
    assert len(run["photos"]) == len(MOVES)
    for p in run["photos"]:
        assert p["status"] in ("reference", "aligned", "skipped")
        assert p["status"] != "skipped" or p["reason"]
    assert run["reference"] is not None, "the biased random models report a person somewhere"
    assert any((tmp_path / "cache" / "detections").rglob("*.npz")), "detections were cached"


def test_body_mode_without_weights_fails_with_a_clear_message(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    photos = tmp_path / "photos"
    write_series(photos)
    result = invoke("register", photos, "--out", tmp_path / "out", "--mode", "body")
    assert result.exit_code == 2
    assert "maskrcnn" in result.output and "alignimate models download" in result.output


# -- faces ---------------------------------------------------------------------------------------------
def test_faces_mode_aligns_the_sample_faces_on_the_reference_photo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALIGNIMATE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    result = invoke(
        "register", FACES, "--out", out, "--mode", "faces", "--reference", "face_05.jpg", "--json"
    )
    assert result.exit_code == 1, result.output  # the photo without a face
    summary = json.loads(result.stdout)
    assert summary["skipped"] == [{"name": "no_face_01.jpg", "reason": "no face detected"}]
    truth = {f["file"]: f for f in json.loads((FACES / "ground_truth.json").read_text())["frames"]}
    reference = truth["face_05.jpg"]
    target = np.array(list(reference["landmarks"].values()))
    errors = []
    for name, record in records(out).items():
        if record["status"] == "skipped":
            continue
        landmarks = np.array(list(truth[name]["landmarks"].values()))
        mapped = np.c_[landmarks, np.ones(5)] @ np.asarray(record["matrix"]).T
        errors.append(np.linalg.norm(mapped[:, :2] / mapped[:, 2:] - target, axis=1).max())
    # The true landmarks of every photo land on the reference's: errors in reference pixels
    # (640 x 512; the eyes are 44 px apart). Measured: median 1.0, worst 2.8.
    assert len(errors) == 14
    assert np.median(errors) < 1.5 and max(errors) < 4.0, errors
