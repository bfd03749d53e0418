"""Identity on real faces, offline: the face timeline's astronaut (sample_data/faces/) mixed with
photos of other real people (sample_data/strangers/: Obama, Biden, Grace Hopper, and a collage of
three of them), through the whole ``faces`` job with its default descriptor (dlib's, installed with
the package). Downloads are off and the network is refused (tests/detect/conftest.py).

The astronaut's 14 photos are all made from one portrait, so they are closer to each other than
photos of one person taken years apart; the strangers are real, different photos
(docs/benchmarks.md, "Identity", gives the distances).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip(
    "dlib", reason="dlib is not installed: dlib-bin has wheels for Linux x86-64 and Windows x64 only"
)

from alignimate.detect.dlib_face import DlibResnetEmbedder
from alignimate.pipeline.face_timeline import make_face_timeline

REPO = Path(__file__).resolve().parents[2]
FACES = REPO / "sample_data" / "faces"
STRANGERS = REPO / "sample_data" / "strangers"
LIMIT = DlibResnetEmbedder.default_max_distance
NOT_THE_SAME = re.compile(r"not the same person \(distance (0\.\d{3})\)")


def _pair(path: Path) -> int:
    """A photo of the astronaut (left) beside Grace Hopper (right); returns where the halves meet."""
    left = Image.open(FACES / "face_03.jpg").convert("RGB")
    right = Image.open(STRANGERS / "hopper_01.jpg").convert("RGB")
    right = right.resize((round(right.width * left.height / right.height), left.height))
    canvas = Image.new("RGB", (left.width + right.width, left.height))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    canvas.save(path, quality=92)
    return left.width


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, Path]:
    folder = tmp_path_factory.mktemp("mixed")
    photos = folder / "photos"
    photos.mkdir()
    for path in [*FACES.glob("*.jpg"), *STRANGERS.glob("*.jpg")]:
        shutil.copy(path, photos / path.name)
    seam = _pair(photos / "pair_astronaut_hopper.jpg")
    return photos, seam, folder / "cache"


def _run(photos: Path, out: Path, cache: Path, **options) -> tuple[object, list[str]]:
    said: list[str] = []
    result = make_face_timeline(
        photos,
        out / "timeline.gif",
        cache_dir=cache,
        log=said.append,
        sort="name",
        output_size=96,
        caption="none",
        device="cpu",
        **options,
    )
    return result, said


def test_keeps_the_person_and_drops_every_stranger(mixed: tuple[Path, int, Path], tmp_path: Path) -> None:
    photos, seam, cache = mixed
    result, said = _run(photos, tmp_path, cache)
    kept = {p.name: p for p in result.aligned}
    astronaut = {p.name for p in FACES.glob("face_*.jpg")}
    strangers = {p.name for p in STRANGERS.glob("*.jpg")}
    assert set(kept) == astronaut | {"pair_astronaut_hopper.jpg"}  # all 14, and none of the others
    # In the photo with both, the astronaut's face (left half) is the one kept.
    assert kept["pair_astronaut_hopper.jpg"].extra["faces_found"] == 2
    assert kept["pair_astronaut_hopper.jpg"].extra["face"]["box"][2] < seam
    for record in kept.values():
        assert 0 <= record.extra["identity_distance"] <= LIMIT
    skipped = {p.name: p for p in result.skipped}
    assert set(skipped) == strangers | {"no_face_01.jpg"}
    for name in strangers:
        match = NOT_THE_SAME.fullmatch(skipped[name].reason)
        assert match, skipped[name].reason
        assert float(match.group(1)) > LIMIT
        assert skipped[name].extra["identity_distance"] == pytest.approx(float(match.group(1)), abs=5e-4)
        assert skipped[name].extra["drop"] == "identity"
    assert skipped["group_01.jpg"].extra["faces_found"] == 3
    assert not any("identity not established" in line for line in said)
    assert result.exit_code == 1  # photos were left out, each with its reason
    # transforms.json carries each face's distance (report.csv's rows name the reason).
    saved = json.loads((result.out / "transforms.json").read_text())
    distances = {p["name"]: p["extra"].get("identity_distance") for p in saved["photos"]}
    assert all(distances[name] is not None for name in astronaut | strangers)


def test_a_reference_photo_of_a_stranger_picks_her_in_every_photo(
    mixed: tuple[Path, int, Path], tmp_path: Path
) -> None:
    photos, seam, cache = mixed
    reference = tmp_path / "me.jpg"
    shutil.copy(STRANGERS / "hopper_01.jpg", reference)
    result, _ = _run(photos, tmp_path, cache, identity=str(reference))
    kept = {p.name: p for p in result.aligned}
    assert set(kept) == {"hopper_01.jpg", "group_01.jpg", "pair_astronaut_hopper.jpg"}
    assert kept["pair_astronaut_hopper.jpg"].extra["face"]["box"][0] >= seam  # her half this time
    skipped = {p.name: p for p in result.skipped}
    for name in ("face_00.jpg", "obama_01.jpg", "biden_01.jpg"):
        assert NOT_THE_SAME.fullmatch(skipped[name].reason), skipped[name].reason


def test_no_clear_majority_keeps_the_largest_faces_and_says_so(tmp_path: Path) -> None:
    photos = tmp_path / "two"
    photos.mkdir()
    for name in ("biden_01.jpg", "hopper_01.jpg"):
        shutil.copy(STRANGERS / name, photos / name)
    result, said = _run(photos, tmp_path, tmp_path / "cache")
    assert {p.name for p in result.aligned} == {"biden_01.jpg", "hopper_01.jpg"}
    warnings = [line for line in said if "identity not established" in line]
    assert len(warnings) == 1 and "--identity PHOTO" in warnings[0] and "largest face" in warnings[0]
    for record in result.aligned:
        assert record.extra["identity_not_established"] == "no face appears in more than one photo"
        assert "identity_distance" not in record.extra


def test_descriptors_of_one_face_agree_across_photo_sizes() -> None:
    """The crop is framed from the landmarks, so the same face in a photo twice as large (as a
    camera with more megapixels would give) has nearly the same descriptor."""
    from alignimate.detect.faces import FaceDetector
    from alignimate.detect.identity import embed_faces

    detector, embedder = FaceDetector(), DlibResnetEmbedder()
    image = np.asarray(Image.open(STRANGERS / "obama_01.jpg").convert("RGB"))
    big = np.asarray(Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.LANCZOS))
    small_face = max(detector.detect([image])[0], key=lambda f: f.area)
    big_face = max(detector.detect([big])[0], key=lambda f: f.area)
    a = embed_faces(image, [small_face], embedder)[0]
    b = embed_faces(big, [big_face], embedder)[0]
    assert 1.0 - float(a @ b) < LIMIT / 3
