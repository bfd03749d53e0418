from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignimate.detect.files import KeypointFile, MaskFolder

SAMPLE_FACES = Path(__file__).resolve().parents[2] / "sample_data" / "faces"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_json_named_points_with_optional_scores(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "kp.json",
        json.dumps({"IMG_1.jpg": {"left_ear": [10, 20], "left_hip": [30.5, 40, 0.25]}}),
    )
    src = KeypointFile(f)
    (inst,) = src.lookup("some/dir/IMG_1.jpg", image_size=(100, 80))
    assert inst.keypoint_names == ("left_ear", "left_hip")
    np.testing.assert_allclose(inst.keypoints, [[10, 20], [30.5, 40]])
    np.testing.assert_allclose(inst.keypoint_scores, [1.0, 0.25])
    np.testing.assert_allclose(inst.box, [10, 20, 30.5, 40])
    assert inst.image_size == (100, 80)


def test_json_lists_take_the_callers_names_and_records_work(tmp_path: Path) -> None:
    f = _write(tmp_path / "kp.json", json.dumps({"a.png": [[1, 2], [3, 4]]}))
    (inst,) = KeypointFile(f, names=["x", "y"]).lookup("a.png")
    assert inst.keypoint_names == ("x", "y")
    with pytest.raises(ValueError, match="2 points but names lists 3"):
        KeypointFile(f, names=["x", "y", "z"])
    g = _write(
        tmp_path / "records.json",
        json.dumps([{"image": "b.png", "keypoints": [[5, 6]], "names": ["nose"], "scores": [0.5]}]),
    )
    (inst,) = KeypointFile(g).lookup("B.PNG")  # case-insensitive match
    assert inst.keypoint_names == ("nose",) and inst.keypoint_scores[0] == pytest.approx(0.5)


def test_sample_ground_truth_reads_as_keypoints() -> None:
    truth = json.loads((SAMPLE_FACES / "ground_truth.json").read_text())
    src = KeypointFile(SAMPLE_FACES / "ground_truth.json")
    frame = truth["frames"][3]
    (inst,) = src.lookup(SAMPLE_FACES / frame["file"])
    assert inst.keypoint_names == tuple(frame["landmarks"])
    np.testing.assert_allclose(inst.keypoints, list(frame["landmarks"].values()), rtol=0, atol=1e-4)
    assert src.lookup(SAMPLE_FACES / "no_face_01.jpg") == []  # dropped frame: no entry


def test_csv_long_and_wide(tmp_path: Path) -> None:
    long = _write(
        tmp_path / "long.csv",
        "image,name,x,y,score\nIMG_1.jpg,left_ear,1,2,0.9\nIMG_1.jpg,left_hip,3,4,\nIMG_2.jpg,left_ear,5,6,1\n",
    )
    src = KeypointFile(long)
    (a,) = src.lookup("IMG_1")  # by stem
    assert a.keypoint_names == ("left_ear", "left_hip")
    np.testing.assert_allclose(a.keypoints, [[1, 2], [3, 4]])
    np.testing.assert_allclose(a.keypoint_scores, [0.9, 1.0])
    assert len(src.for_paths(["IMG_2.jpg", "IMG_3.jpg"])[0]) == 1
    assert src.for_paths(["IMG_3.jpg"]) == [[]]

    wide = _write(tmp_path / "wide.csv", "file,ear_x,ear_y,hip_x,hip_y,hip_score\nq.jpg,1,2,3,4,0.5\n")
    (b,) = KeypointFile(wide).lookup("q.jpg")
    assert b.keypoint_names == ("ear", "hip")
    np.testing.assert_allclose(b.keypoints, [[1, 2], [3, 4]])
    np.testing.assert_allclose(b.keypoint_scores, [1.0, 0.5])


def test_bad_keypoint_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        KeypointFile(tmp_path / "missing.json")
    with pytest.raises(ValueError, match=r"must end in \.json or \.csv"):
        KeypointFile(_write(tmp_path / "kp.yaml", "a: 1"))
    with pytest.raises(ValueError, match="not in a supported format"):
        KeypointFile(_write(tmp_path / "broken.json", "{not json"))
    with pytest.raises(ValueError, match="image column"):
        KeypointFile(_write(tmp_path / "noimage.csv", "name,x,y\na,1,2\n"))
    with pytest.raises(ValueError, match=r"\[x, y\]"):
        KeypointFile(_write(tmp_path / "fourd.json", json.dumps({"a.jpg": [[1, 2, 3, 4]]})))


def test_mask_folder_grey_alpha_and_missing(tmp_path: Path) -> None:
    folder = tmp_path / "masks"
    folder.mkdir()
    grey = np.zeros((40, 60), np.uint8)
    grey[10:20, 5:30] = 255
    Image.fromarray(grey).save(folder / "IMG_1.png")
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., :3] = 255  # colour says nothing, alpha is the mask
    rgba[0:5, 50:60, 3] = 128
    Image.fromarray(rgba).save(folder / "IMG_2_mask.png")
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(folder / "IMG_3.jpg.png")

    masks = MaskFolder(folder)
    (a,) = masks.lookup("photos/IMG_1.jpg")
    assert a.mask.shape == (40, 60) and a.mask.max() == pytest.approx(1.0)
    # Pixel centres 5..29 and 10..19: edges half a pixel outside.
    np.testing.assert_allclose(a.box, [4.5, 9.5, 29.5, 19.5])
    # The same mask for a photo twice as large: the box scales edge to edge.
    (a2,) = masks.lookup("IMG_1.jpg", image_size=(80, 120))
    np.testing.assert_allclose(a2.box, [9.5, 19.5, 59.5, 39.5])
    assert a2.image_size == (80, 120)

    b = MaskFolder(folder, threshold=0.4).lookup("IMG_2.jpg")
    assert len(b) == 1 and b[0].mask[0, 55] == pytest.approx(128 / 255)
    assert MaskFolder(folder, threshold=0.6).lookup("IMG_2.jpg") == []  # nothing above threshold
    assert masks.lookup("IMG_3.jpg") == []  # blank mask: no person
    assert masks.lookup("IMG_4.jpg") == []  # no file: no person, not an error
    with pytest.raises(FileNotFoundError):
        MaskFolder(tmp_path / "nope")
    with pytest.raises(ValueError, match="threshold"):
        MaskFolder(folder, threshold=1.0)
