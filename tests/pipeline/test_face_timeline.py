"""``make_face_timeline`` (``alignimate faces``) end to end.

The real MTCNN runs on the sample face timeline (ground truth in sample_data/faces/ground_truth.json);
the identity and frontal wiring is tested with a fake detector (detections registered per image) and
a fake embedder (mean colour of the aligned crop), because no photo of a second real person is
available offline.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.transform import SimilarityTransform

import alignimate.pipeline.face_timeline as faces_module
from alignimate.detect.base import Instance
from alignimate.detect.faces import FACE_LANDMARKS, FaceDetector
from alignimate.errors import UsageError
from alignimate.io import count_output_frames, read_image
from alignimate.pipeline.face_geometry import EYE_WEIGHT, face_template, similarity_parameters
from alignimate.pipeline.face_timeline import DEDUPE_THRESHOLD, FacesResult, make_face_timeline, period_key
from tests.helpers import one_torch_thread  # noqa: F401  (an autouse fixture, used by being imported)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data" / "faces"
ORDER = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# ArcFace 112 x 112 template (peers.md section 3: the 96 x 112 SphereFace points with x + 8).
ARCFACE = np.array(
    [
        (30.2946 + 8, 51.6963),
        (65.5318 + 8, 51.5014),
        (48.0252 + 8, 71.7366),
        (33.5493 + 8, 92.3655),
        (62.7299 + 8, 92.2041),
    ]
)



def _truth() -> dict[str, Any]:
    return json.loads((SAMPLE / "ground_truth.json").read_text())


def _fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scikit-image, an independent implementation) as a 3x3 matrix."""
    return SimilarityTransform.from_estimate(src, dst).params


def _map(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _weighted_similarity_map(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``src`` mapped by the weighted least-squares similarity onto ``dst``, solved independently of
    alignimate as complex numbers: ``dst ~ a * src + b`` with ``a`` a complex scale-rotation."""
    z, t = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    zc = z - np.average(z, weights=weights)
    tc = t - np.average(t, weights=weights)
    a = np.sum(weights * np.conj(zc) * tc) / np.sum(weights * np.abs(zc) ** 2)
    mapped = a * zc + np.average(t, weights=weights)
    return np.stack([mapped.real, mapped.imag], axis=1)


def _eyes_template(size: int) -> np.ndarray:
    """The documented "eyes" template: ArcFace moved so its eyes land on (0.35 S, 0.40 S), (0.65 S, 0.40 S)
    (edge-based fractions: pixel coordinate = f * S - 0.5)."""
    eyes = np.array([[0.35 * size - 0.5, 0.40 * size - 0.5], [0.65 * size - 0.5, 0.40 * size - 0.5]])
    return _map(_fit(ARCFACE[:2], eyes), ARCFACE)


def _read_report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------------
# one real run on the sample timeline, shared by many tests
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("faces")
    messages: list[str] = []
    result = make_face_timeline(
        SAMPLE, tmp / "timeline.mp4", cache_dir=tmp / "cache", device="cpu", log=messages.append
    )
    frames = {p.name: (result.out / p.output).stat().st_mtime_ns for p in result.aligned}
    return {"tmp": tmp, "result": result, "messages": messages, "frame_times": frames}


def test_no_face_photo_is_dropped_and_the_rest_kept(sample_run: dict[str, Any]) -> None:
    result: FacesResult = sample_run["result"]
    truth = _truth()
    kept = {f["file"] for f in truth["frames"] if f["expected"] == "kept"}
    assert {p.name for p in result.aligned} == kept
    assert [(p.name, p.reason, p.extra["drop"]) for p in result.skipped] == [
        ("no_face_01.jpg", "no face", "no_face")
    ]
    assert result.exit_code == 1  # a photo was dropped for a problem
    rows = _read_report(result.out / "report.csv")
    assert len(rows) == 15
    row = next(r for r in rows if r["name"] == "no_face_01.jpg")
    assert row["status"] == "skipped" and row["reason"] == "no face" and row["output"] == ""
    # Ordered by capture date: the coffee photo (2024-02-21) sits between face_06 and face_07.
    names = [r["name"] for r in rows]
    assert names.index("no_face_01.jpg") == names.index("face_06.jpg") + 1
    assert any("no_face_01.jpg: no face" in m for m in sample_run["messages"])


def test_redetected_landmarks_lie_on_the_template(sample_run: dict[str, Any]) -> None:
    """Issue target: MTCNN run again on every output frame finds the 5 landmarks within a median 1.5 %
    and at worst 3 % of the output size of where they belong.

    Where they belong is the template as this person's face fills it: no face has the template's
    proportions, so even a perfect alignment leaves each landmark a fixed distance from its template
    point. That position is derived independently, by fitting the hand-measured ground-truth landmarks
    to the template with scikit-image. The distances to the bare template points are reported too."""
    result: FacesResult = sample_run["result"]
    size = 768
    template = _eyes_template(size)
    np.testing.assert_allclose(face_template("eyes", size), template, atol=1e-6)
    truth = _truth()
    source = np.array([truth["landmarks_source"][k] for k in ORDER])
    # The "eyes" template holds the eyes (face_geometry.fit_to_template): the same eye-weighted fit of
    # the true landmarks (EYE_WEIGHT on each eye) gives where this person's face belongs.
    subject = _weighted_similarity_map(source, template, np.array([EYE_WEIGHT, EYE_WEIGHT, 1.0, 1.0, 1.0]))
    shape_offset = np.linalg.norm(subject - template, axis=1) / size
    detector = FaceDetector()  # as the pipeline runs it
    to_subject, to_template = [], []
    for record in result.aligned:
        frame = read_image(result.out / record.output)
        assert frame.shape == (size, size, 3)
        found = detector.detect([frame])[0]
        assert len(found) == 1, record.name
        points = found[0].keypoints.astype(np.float64)
        to_subject.append(np.linalg.norm(points - subject, axis=1) / size)
        to_template.append(np.linalg.norm(points - template, axis=1) / size)
    d_subject, d_template = np.concatenate(to_subject), np.concatenate(to_template)
    numbers = (
        f"to the subject's template position: median {np.median(d_subject):.4f}, "
        f"worst {d_subject.max():.4f}; "
        f"to the bare template: median {np.median(d_template):.4f}, worst {d_template.max():.4f}; "
        f"shape offset per point {np.round(shape_offset, 4).tolist()}"
    )
    eyes = np.stack(to_template)[:, :2]
    numbers += f"; eyes to the template's eyes: median {np.median(eyes):.4f}, worst {eyes.max():.4f}"
    print(numbers)
    assert np.median(d_subject) < 0.015, numbers
    assert d_subject.max() < 0.03, numbers
    # Held eyes: issue #16's target, median 0.5 % and worst 1.5 % of the frame side (measured well
    # inside it: docs/benchmarks.md, "Eyes held").
    assert np.median(eyes) < 0.005 and eyes.max() < 0.015, numbers
    # The distance to the bare template is the subject's shape offset plus that alignment error.
    assert np.all(np.abs(np.stack(to_template) - shape_offset) <= np.stack(to_subject) + 1e-9), numbers


def test_matrices_map_the_true_landmarks_onto_the_template(sample_run: dict[str, Any]) -> None:
    result: FacesResult = sample_run["result"]
    run = json.loads((result.out / "transforms.json").read_text())
    assert run["command"] == "faces" and run["output_size"] == [768, 768] and run["crop"] is None
    assert run["settings"]["template"] == "eyes" and run["settings"]["identity"] == "auto"
    template = np.array(run["settings"]["template_points"])
    np.testing.assert_allclose(template, _eyes_template(768), atol=1e-3)
    truth = _truth()
    source = np.array([truth["landmarks_source"][k] for k in ORDER])
    # The "eyes" template holds the eyes (face_geometry.fit_to_template): the same eye-weighted fit of
    # the true landmarks (EYE_WEIGHT on each eye) gives where this person's face belongs.
    subject = _weighted_similarity_map(source, template, np.array([EYE_WEIGHT, EYE_WEIGHT, 1.0, 1.0, 1.0]))
    records = {p["name"]: p for p in run["photos"]}
    errors, true_eyes = [], []
    for frame in truth["frames"]:
        if frame["expected"] != "kept":
            continue
        record = records[frame["file"]]
        landmarks = np.array([frame["landmarks"][k] for k in ORDER])
        mapped = _map(np.array(record["matrix"]), landmarks)
        errors.append(np.linalg.norm(mapped - subject, axis=1) / 768)
        true_eyes.append(mapped[:2])
        # The recorded loss is the RMS distance of the detected landmarks to the template (fraction of S).
        detected = np.array(record["extra"]["face"]["landmarks"])
        rms = np.sqrt(np.mean(np.sum((_map(np.array(record["matrix"]), detected) - template) ** 2, axis=1)))
        assert record["loss"] == pytest.approx(rms / 768, abs=1e-5)
        assert record["extra"]["frontal"]["yaw"] < 0.35
    errors = np.concatenate(errors)
    print(f"true landmarks after alignment: median {np.median(errors):.4f}, worst {errors.max():.4f} of S")
    assert np.median(errors) < 0.015 and errors.max() < 0.03
    # The true eyes barely move from frame to frame (distance to their mean position): what a viewer
    # sees, with no detector in the measurement. A bound about twice what they measured
    # (docs/benchmarks.md, "Eyes held").
    eyes = np.stack(true_eyes)
    move = np.linalg.norm(eyes - eyes.mean(axis=0), axis=2) / 768
    print(f"true eyes move: median {np.median(move):.4f}, worst {move.max():.4f} of S")
    assert np.median(move) < 0.002 and move.max() < 0.006


def test_outputs_frames_animation_and_contact_sheet(sample_run: dict[str, Any]) -> None:
    result: FacesResult = sample_run["result"]
    tmp: Path = sample_run["tmp"]
    assert result.out == tmp / "timeline_frames"
    assert result.output == tmp / "timeline.mp4" and result.output.stat().st_size > 0
    assert result.animation is not None
    assert result.animation.n_frames == count_output_frames(14, fps=8, hold_first=0.5, hold_last=1.5)
    assert result.animation.size_hw == (768, 768)
    assert not (result.out / ".alignimate-checkpoint.json").exists()
    sheet = np.asarray(Image.open(result.contact_sheet))
    # 15 photos: 4 columns of 160 px tiles with 4 px gaps.
    assert sheet.shape == (4 * 164 + 4, 4 * 164 + 4, 3)
    # The dropped photo (8th in date order: row 1, column 3) has a red border.
    top, left = 4 + 164, 4 + 3 * 164
    border = sheet[top + 80, left : left + 2].astype(int)
    assert np.all(border[:, 0] > 180) and np.all(border[:, 1:] < 80)
    summary = result.summary()
    assert summary["aligned"] == 14 and summary["detections"]["photos"] == 15
    assert summary["skipped"] == [{"name": "no_face_01.jpg", "reason": "no face", "kind": "no_face"}]
    json.dumps(summary)


def test_rerun_uses_the_cache_and_keeps_the_frames(sample_run: dict[str, Any]) -> None:
    first: FacesResult = sample_run["result"]
    assert first.detections == {"photos": 15, "detected": 15, "cached": 0}
    tmp: Path = sample_run["tmp"]
    again = make_face_timeline(SAMPLE, tmp / "timeline.mp4", cache_dir=tmp / "cache", device="cpu")
    assert again.detections == {"photos": 15, "detected": 0, "cached": 15}
    times = {p.name: (again.out / p.output).stat().st_mtime_ns for p in again.aligned}
    assert times == sample_run["frame_times"]  # no frame written again
    assert [p.matrix for p in again.run.photos] == [p.matrix for p in first.run.photos]


def test_interrupted_run_resumes_without_redoing_frames(
    sample_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = sample_run["tmp"] / "cache"
    written: list[str] = []
    real_save = faces_module.save_image

    def failing_save(path: Path, array: np.ndarray, **kw: Any) -> Path:
        if len(written) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while the 4th frame was written
        written.append(Path(path).name)
        return real_save(path, array, **kw)

    monkeypatch.setattr(faces_module, "save_image", failing_save)
    options = {"cache_dir": cache, "device": "cpu", "output_size": 128, "caption": "none"}
    with pytest.raises(KeyboardInterrupt):
        make_face_timeline(SAMPLE, tmp_path / "t.gif", **options)
    checkpoint = tmp_path / "t_frames" / ".alignimate-checkpoint.json"
    assert checkpoint.exists() and not (tmp_path / "t.gif").exists()
    done = {p["name"] for p in json.loads(checkpoint.read_text())["photos"] if p["extra"].get("frame")}
    assert len(done) == 3

    def counting_save(path: Path, array: np.ndarray, **kw: Any) -> Path:
        written.append(Path(path).name)
        return real_save(path, array, **kw)

    written.clear()
    monkeypatch.setattr(faces_module, "save_image", counting_save)
    result = make_face_timeline(SAMPLE, tmp_path / "t.gif", **options)
    frames = {p.output for p in result.aligned}
    assert len(frames) == 14 and not checkpoint.exists()
    assert set(written) == frames - {f"{Path(n).stem}.jpg" for n in done}
    assert result.detections["detected"] == 0


def test_every_week_and_month_keep_the_most_frontal_photo_per_period(
    sample_run: dict[str, Any], tmp_path: Path
) -> None:
    options = {
        "cache_dir": sample_run["tmp"] / "cache",
        "device": "cpu",
        "output_size": 64,
        "caption": "none",
    }
    weekly = make_face_timeline(SAMPLE, tmp_path / "w.gif", every="week", **options)
    assert len(weekly.aligned) == 14  # one photo a week already
    monthly = make_face_timeline(SAMPLE, tmp_path / "m.gif", every="month", **options)
    assert monthly.exit_code == 1  # the no-face photo; thinning alone would be 0
    yaw = {p.name: p.extra["frontal"]["yaw"] for p in weekly.aligned}
    months: dict[str, list[str]] = {}
    for frame in _truth()["frames"]:
        if frame["expected"] == "kept":
            months.setdefault(frame["datetime"][:7], []).append(frame["file"])
    expected = {min(names, key=lambda n: yaw[n]) for names in months.values()}
    assert {p.name for p in monthly.aligned} == expected and len(expected) == 4
    thinned = [p for p in monthly.skipped if p.extra["drop"] == "every"]
    assert len(thinned) == 10
    for record in thinned:
        assert record.reason.startswith(f"every month: {record.datetime[:7]} keeps ")
    assert len(list((tmp_path / "m_frames").glob("face_*.jpg"))) == 4


def test_period_key_uses_iso_weeks_and_calendar_months() -> None:
    from datetime import datetime

    assert period_key(datetime(2024, 12, 30, 8), "week") == "2025-W01"  # ISO week of the Thursday
    assert period_key(datetime(2024, 12, 29, 8), "week") == "2024-W52"
    assert period_key(datetime(2024, 2, 29, 23, 59), "month") == "2024-02"
    assert period_key(datetime(2024, 2, 29, 23, 59), "day") == "2024-02-29"
    assert period_key(None, "week") is None and period_key(datetime(2024, 1, 1), "all") is None
    with pytest.raises(ValueError, match="every"):
        period_key(datetime(2024, 1, 1), "year")


def _burst_copy(source: Path, target: Path) -> None:
    """A second shot of the same burst: turned 0.7 deg, 1 % larger, moved (2.5, -1.5) px, sensor noise,
    re-encoded; the capture date is kept."""
    import cv2

    image = Image.open(source)
    exif = image.info.get("exif")
    a = np.asarray(image.convert("RGB")).astype(np.float32)
    h, w = a.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.7, 1.01)
    m[:, 2] += (2.5, -1.5)
    b = cv2.warpAffine(a, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    b = np.clip(b + np.random.default_rng(0).normal(0, 3, b.shape), 0, 255).astype(np.uint8)
    Image.fromarray(b).save(target, quality=85, exif=exif)


def test_dedupe_and_heatmap_refinement(sample_run: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "burst"
    folder.mkdir()
    for name in ("face_02.jpg", "face_03.jpg", "face_04.jpg", "face_11.jpg", "face_12.jpg"):
        shutil.copy(SAMPLE / name, folder / name)
    _burst_copy(SAMPLE / "face_03.jpg", folder / "face_03b.jpg")
    result = make_face_timeline(
        folder,
        tmp_path / "b.gif",
        cache_dir=sample_run["tmp"] / "cache",
        device="cpu",
        output_size=128,
        sort="name",
        dedupe=True,
        refine="heatmaps",
        caption="none",
    )
    assert result.detections == {"photos": 6, "detected": 1, "cached": 5}
    assert [(p.name, p.extra["drop"]) for p in result.skipped] == [("face_03b.jpg", "dedupe")]
    assert result.skipped[0].reason.startswith("near-duplicate of face_03.jpg (difference 0.0")
    assert result.exit_code == 0  # leaving out a duplicate is a choice, not a problem
    differences = {p.name: p.extra.get("dedupe_difference") for p in result.run.photos}
    print(f"dedupe differences (threshold {DEDUPE_THRESHOLD}): {differences}")
    assert differences["face_03b.jpg"] < DEDUPE_THRESHOLD / 1.4
    # The same portrait in other light is not a duplicate, with a margin.
    others = [d for n, d in differences.items() if d is not None and n != "face_03b.jpg"]
    assert len(others) == 4 and min(others) > 1.4 * DEDUPE_THRESHOLD
    # Refinement converged for every kept photo and moved the landmarks by little.
    for record in result.aligned:
        info = record.extra["refine"]
        assert info["converged"] and info["used"], record.name
        assert info["reference_rms_after"] <= info["reference_rms_before"] + 1e-4
        closed = np.array(record.extra["matrix_closed_form"])
        points = np.array(record.extra["face"]["landmarks"])
        moved = np.linalg.norm(_map(np.array(record.matrix), points) - _map(closed, points), axis=1)
        assert moved.max() < 0.01 * 128, record.name


# ------------------------------------------------------------------------------------------------
# smoothing in the pipeline (the smoothing itself: tests/pipeline/test_face_geometry.py)
# ------------------------------------------------------------------------------------------------


def test_smoothing_in_the_pipeline_steadies_a_fixed_camera_series(
    sample_run: dict[str, Any], tmp_path: Path
) -> None:
    """A webcam-like series (the same framing every day, other light and noise): the landmarks jitter,
    the smoothed transforms jitter less."""
    folder = tmp_path / "webcam"
    folder.mkdir()
    base = np.asarray(Image.open(SAMPLE / "face_05.jpg").convert("RGB")).astype(np.float32)
    rng = np.random.default_rng(5)
    for i in range(8):
        shot = np.clip(base * rng.uniform(0.75, 1.25) + rng.normal(0, 6, base.shape), 0, 255)
        Image.fromarray(shot.astype(np.uint8)).save(folder / f"day_{i:02d}.jpg", quality=80)
    options = {
        "cache_dir": sample_run["tmp"] / "cache",
        "device": "cpu",
        "output_size": 64,
        "caption": "none",
    }
    raw = make_face_timeline(folder, tmp_path / "raw.gif", **options)
    smooth = make_face_timeline(folder, tmp_path / "smooth.gif", smooth=1.5, **options)
    assert smooth.detections["cached"] == 8
    sizes = [p.size for p in raw.aligned]
    raw_params = similarity_parameters(np.array([p.matrix for p in raw.aligned]), sizes)
    smooth_params = similarity_parameters(np.array([p.matrix for p in smooth.aligned]), sizes)
    assert [p.extra["matrix_unsmoothed"] for p in smooth.aligned] == [p.matrix for p in raw.aligned]
    assert np.all(np.diff(smooth_params, axis=0).var(axis=0) < np.diff(raw_params, axis=0).var(axis=0) / 2)
    assert (
        json.loads((tmp_path / "smooth_frames" / "transforms.json").read_text())["settings"]["smooth"] == 1.5
    )


# ------------------------------------------------------------------------------------------------
# identity and frontal filter wiring with a fake detector and embedder
# ------------------------------------------------------------------------------------------------

RED, BLUE = (220, 40, 40), (40, 40, 220)


class FakeDetector:
    """Returns the faces registered for each image (keyed by the hash of its pixels)."""

    name = "fake-faces"

    def __init__(self) -> None:
        self.faces: dict[str, list[Instance]] = {}
        self.calls = 0

    def settings(self) -> dict[str, Any]:
        return {"version": 1}

    @staticmethod
    def key(image: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()

    def register(self, image: np.ndarray, faces: list[Instance]) -> None:
        self.faces[self.key(image)] = faces

    def detect(self, images: list[np.ndarray]) -> list[list[Instance]]:
        self.calls += len(images)
        return [[Instance(**vars(f)) for f in self.faces[self.key(im)]] for im in images]


class MeanColourEmbedder:
    """ "Identity" = the colour of the face patch: the mean RGB of the aligned crop, unit length."""

    name = "mean-colour"
    crop_size = 16
    face_scale = 1.5
    default_max_distance = 0.1

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(crops.mean(dim=(2, 3)), dim=1)


def _face(x0: float, y0: float, side: float, *, yaw: bool = False, roll_deg: float = 0.0) -> Instance:
    """A face in the square (x0, y0, side): landmarks of a frontal face, or with the nose and mouth
    slid towards the left eye (a head turned about 60 degrees), or turned in the image plane."""
    u = np.array([[0.32, 0.38], [0.68, 0.38], [0.50, 0.58], [0.36, 0.76], [0.64, 0.76]])
    if yaw:
        u[2:, 0] = [0.30, 0.24, 0.42]
    angle = np.radians(roll_deg)
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    points = (u - 0.5) @ rot.T * side + np.array([x0 + side / 2, y0 + side / 2])
    return Instance(
        box=np.array([x0, y0, x0 + side, y0 + side], dtype=np.float32),
        score=0.99,
        keypoints=points.astype(np.float32),
        keypoint_scores=np.full(5, 0.99, np.float32),
        keypoint_names=FACE_LANDMARKS,
        label="face",
    )


def _scene(
    folder: Path, name: str, detector: FakeDetector, patches: list[tuple[tuple[int, int, int], Instance]]
) -> None:
    image = np.full((120, 160, 3), 128, np.uint8)
    for colour, face in patches:
        x0, y0, x1, y1 = (round(float(v)) for v in face.box)
        image[y0:y1, x0:x1] = colour
    Image.fromarray(image).save(folder / name)  # PNG: lossless, so the hash of the pixels is stable
    detector.register(read_image(folder / name), [face for _, face in patches])


@pytest.fixture
def fake_folder(tmp_path: Path) -> tuple[Path, FakeDetector]:
    folder = tmp_path / "people"
    folder.mkdir()
    det = FakeDetector()
    _scene(folder, "p1.png", det, [(RED, _face(50, 30, 50))])
    # Two people: the person (red) and a larger bystander (blue).
    _scene(folder, "p2.png", det, [(RED, _face(20, 40, 40)), (BLUE, _face(80, 20, 70))])
    _scene(folder, "p3.png", det, [(RED, _face(55, 35, 50, yaw=True))])
    _scene(folder, "p4.png", det, [(BLUE, _face(40, 20, 70))])  # only the bystander
    _scene(folder, "p5.png", det, [(RED, _face(52, 32, 46, roll_deg=45))])
    _scene(folder, "p6.png", det, [(RED, _face(45, 35, 45))])
    (folder / "p7.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder, det


def _run_fake(folder: Path, det: FakeDetector, tmp: Path, **kw: Any) -> FacesResult:
    options: dict[str, Any] = {
        "sort": "name",
        "output_size": 64,
        "caption": "none",
        "device": "cpu",
        "cache_dir": tmp / "cache",
        "detector": det,
        "embedder": MeanColourEmbedder(),
    }
    return make_face_timeline(folder, tmp / f"t{len(list(tmp.iterdir()))}.gif", **{**options, **kw})


def test_identity_frontal_and_unreadable_photos(
    fake_folder: tuple[Path, FakeDetector], tmp_path: Path
) -> None:
    folder, det = fake_folder
    auto = _run_fake(folder, det, tmp_path)
    kept = {p.name: p for p in auto.aligned}
    assert set(kept) == {"p1.png", "p2.png", "p6.png"}
    # In the photo with two people the person is kept, not the larger bystander.
    assert kept["p2.png"].extra["face"]["box"] == [20.0, 40.0, 60.0, 80.0]
    assert kept["p2.png"].extra["faces_found"] == 2
    dropped = {p.name: p for p in auto.skipped}
    assert dropped["p3.png"].extra["drop"] == "not_frontal"
    assert dropped["p3.png"].reason.startswith("not frontal: yaw ")
    measures = dropped["p3.png"].extra["frontal"]
    assert measures["yaw"] > 0.35 and set(measures) >= {"eye_ratio", "mouth_ratio", "roll_deg", "nose_offset"}
    assert dropped["p4.png"].extra["drop"] == "identity"
    assert dropped["p4.png"].reason.startswith("not the same person (distance ")
    assert dropped["p5.png"].extra["drop"] == "not_frontal" and "roll 45.0 deg" in dropped["p5.png"].reason
    assert dropped["p5.png"].extra["frontal"]["roll_deg"] == pytest.approx(45.0)
    assert dropped["p7.png"].extra["drop"] == "unreadable"
    assert auto.exit_code == 1
    # --identity largest: no identity test, the larger bystander wins in p2 and p4 is kept.
    largest = _run_fake(folder, det, tmp_path, identity="largest")
    kept = {p.name: p for p in largest.aligned}
    assert set(kept) == {"p1.png", "p2.png", "p4.png", "p6.png"}
    assert kept["p2.png"].extra["face"]["box"] == [80.0, 20.0, 150.0, 90.0]
    # --identity PHOTO: the largest face in a photo of the person.
    reference = tmp_path / "me.png"
    image = np.full((100, 100, 3), 90, np.uint8)
    image[20:80, 20:80] = RED
    Image.fromarray(image).save(reference)
    det.register(read_image(reference), [_face(20, 20, 60)])
    by_photo = _run_fake(folder, det, tmp_path, identity=str(reference))
    assert {p.name for p in by_photo.aligned} == {"p1.png", "p2.png", "p6.png"}
    assert by_photo.run.settings["identity"] == str(reference.resolve())
    # Every detection came from the cache after the first run.
    assert det.calls == 6 + 1


def test_bad_requests_raise_usage_errors(fake_folder: tuple[Path, FakeDetector], tmp_path: Path) -> None:
    folder, det = fake_folder
    cases = [
        ({"template": "dlib"}, "template"),
        ({"every": "year"}, "every"),
        ({"refine": "yes"}, "refine"),
        ({"max_yaw": 2.0}, "max_yaw"),
        ({"output_size": 8}, "output_size"),
        ({"caption": "age:someday"}, "age"),
        ({"identity": str(tmp_path / "nobody.jpg")}, "identity"),
        ({"smooth": -1.0}, "smooth"),
    ]
    for kwargs, word in cases:
        with pytest.raises(UsageError, match=word):
            _run_fake(folder, det, tmp_path, **kwargs)
    with pytest.raises(UsageError, match="output must end in"):
        make_face_timeline(folder, tmp_path / "t.avi", detector=det)
    with pytest.raises(UsageError, match="not a folder"):
        make_face_timeline(tmp_path / "missing", tmp_path / "t.gif", detector=det)
    # A frames folder holding something else is not overwritten.
    other = tmp_path / "busy"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(UsageError, match="did not write"):
        make_face_timeline(folder, tmp_path / "t.gif", out_dir=other, detector=det)
    assert (other / "holiday.jpg").read_bytes() == b"mine"


def test_apply_reproduces_face_frames(sample_run: dict[str, Any], tmp_path: Path) -> None:
    """A faces run has no reference photo (its canvas is the template square); apply keeps that canvas."""
    import imageio.v3 as iio

    from alignimate.pipeline import apply_transforms

    result: FacesResult = sample_run["result"]
    again = apply_transforms(result.out / "transforms.json", tmp_path / "again", device="cpu")
    assert again.exit_code == 1  # the no-face photo stays skipped
    assert len(again.aligned) == len(result.aligned)
    for record in result.aligned:
        first = iio.imread(result.out / record.output).astype(int)
        second = iio.imread(tmp_path / "again" / record.output).astype(int)
        # faces decodes each photo near the output resolution (an antialiased downscale) before it
        # warps; apply warps the full-resolution original: the same geometry, slightly other pixels.
        difference = np.abs(first - second)
        assert difference.mean() < 0.5 and difference.max() <= 8, (record.name, difference.mean())
