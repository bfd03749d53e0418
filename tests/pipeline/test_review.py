"""The review page (written, read back as data) and exclusion files, without a browser: what the page
holds for register-, apply- and faces-like folders, what it refuses, the exclusion file as untrusted
input, and ``animate --exclude``. tests/pipeline/test_review_browser.py drives the page in Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from alignimate.cli import app
from alignimate.errors import UsageError
from alignimate.pipeline.exclusions import (
    EXCLUDED_REASON,
    MAX_EXCLUSIONS_BYTES,
    ExclusionsFileError,
    read_exclusions,
    write_exclusions,
)
from alignimate.pipeline.frames_to_animation import animate
from alignimate.pipeline.outputs import LEDGER_NAME, LOCK_NAME, OutputFolder
from alignimate.pipeline.records import PhotoRecord, RunRecord, write_transforms
from alignimate.pipeline.review import REVIEW_NAME, write_review
from tests.helpers import finishes

ROOT = Path(__file__).resolve().parents[2]
SCENES = ROOT / "sample_data" / "scenes"
FACES = ROOT / "sample_data" / "faces"
runner = CliRunner()
H, W = 60, 80
HOSTILE = 'x</script><script>document.title="owned"</script>.jpg'


def page_data(page: Path) -> tuple[dict, list[str]]:
    """The metadata and the image data URIs a review page embeds."""
    text = page.read_text(encoding="utf-8")
    meta = re.search(r'<script type="application/json" id="review-meta">(.*?)</script>', text, re.S)
    images = re.search(r'<script type="application/json" id="review-images">(.*?)</script>', text, re.S)
    assert meta and images, "the page lacks its data elements"
    return json.loads(meta.group(1)), json.loads(images.group(1))


def decode(uri: str) -> np.ndarray:
    prefix = "data:image/jpeg;base64,"
    assert uri.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :]))).convert("RGB"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def owned(folder: Path) -> list[str]:
    return json.loads((folder / LEDGER_NAME).read_text())["files"]


def gradient(h: int, w: int, shift: int) -> np.ndarray:
    """A frame whose content tells frames apart: a diagonal gradient offset by ``shift``."""
    y, x = np.mgrid[0:h, 0:w]
    grey = np.clip(x / w * 150 + y / h * 60 + shift * 20, 0, 255).astype(np.uint8)
    return np.stack([grey, 255 - grey, np.full_like(grey, shift * 40 % 256)], axis=2)


@pytest.fixture
def register_like(tmp_path: Path) -> Path:
    """An output folder as ``register`` leaves it: a reference, two aligned frames (one with a
    hostile photo name), a photo skipped with its readable original, one skipped whose original is
    gone; frames of 600 x 800 so the page's copies are shrunk."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(gradient(300, 200, 5)).save(photos / "blurry.jpg")
    out = tmp_path / "aligned"
    fit = {"size": [600, 800], "matrix": np.eye(3).tolist()}
    with OutputFolder.open(out, command="register") as folder:
        names = ["b.jpg", "a.jpg", "x.jpg", "transforms.json", "report.csv"]
        folder.claim(names)
        for shift, name in enumerate(names[:3]):
            Image.fromarray(gradient(600, 800, shift)).save(folder.path_of(name))
        photos_records = [
            PhotoRecord("IMG_2.jpg", "/in/IMG_2.jpg", "aligned", output="b.jpg", loss=0.0125, **fit),
            PhotoRecord("IMG_1.jpg", "/in/IMG_1.jpg", "reference", output="a.jpg", loss=0.0, **fit),
            PhotoRecord("blurry.jpg", str(photos / "blurry.jpg"), "skipped", reason="loss 0.4 above 0.25"),
            PhotoRecord(HOSTILE, "/in/x.jpg", "aligned", reason="kept: <b>not</b> converged", output="x.jpg",
                        loss=0.2, converged=False, **fit),
            PhotoRecord("gone.jpg", str(photos / "gone.jpg"), "skipped", reason="unreadable: truncated"),
        ]
        run = RunRecord(
            "register", str(photos), {}, reference="IMG_1.jpg", canvas=[600, 800], output_size=[600, 800],
            photos=photos_records,
        )
        write_transforms(folder.path_of("transforms.json"), run)
    return out


# ------------------------------------------------------------------------------------------------
# the page's content
# ------------------------------------------------------------------------------------------------


def test_page_holds_every_frame_in_run_order_with_status_loss_and_reason(register_like: Path) -> None:
    page = write_review(register_like, max_side=200)
    assert page == register_like / REVIEW_NAME
    assert REVIEW_NAME in owned(register_like)  # claimed in the ledger like any output
    assert leftovers(register_like) == []
    meta, images = page_data(page)
    assert meta["command"] == "register" and meta["maxSide"] == 200
    assert [f["name"] for f in meta["frames"]] == ["IMG_2.jpg", "IMG_1.jpg", HOSTILE]
    assert [f["status"] for f in meta["frames"]] == ["aligned", "reference", "aligned"]
    assert [f["loss"] for f in meta["frames"]] == [0.0125, 0.0, 0.2]
    assert meta["frames"][2]["reason"] == "kept: <b>not</b> converged"
    assert meta["frames"][2]["converged"] is False
    assert meta["reference"] == 1 and "IMG_1.jpg" in meta["referenceNote"]
    # Each copy is its own frame (the closest of the three), shrunk to the bound: 800 x 600 -> 200 x 150.
    smalls = [
        np.asarray(Image.open(register_like / name).convert("RGB").resize((200, 150), Image.LANCZOS), int)
        for name in ("b.jpg", "a.jpg", "x.jpg")
    ]
    for own, entry in enumerate(meta["frames"]):
        copy = decode(images[entry["image"]]).astype(int)
        assert copy.shape == (150, 200, 3)
        errors = [np.abs(copy - small).mean() for small in smalls]
        assert errors[own] < 3 and min(e for i, e in enumerate(errors) if i != own) > 10, errors
    others = {o["name"]: o for o in meta["others"]}
    assert set(others) == {"blurry.jpg", "gone.jpg"}
    assert others["blurry.jpg"]["reason"] == "loss 0.4 above 0.25"
    assert max(decode(images[others["blurry.jpg"]["image"]]).shape[:2]) == 100  # half the bound
    assert others["gone.jpg"]["image"] is None and others["gone.jpg"]["reason"] == "unreadable: truncated"


def test_names_from_the_run_cannot_close_the_script_or_inject_markup(register_like: Path) -> None:
    text = write_review(register_like).read_text(encoding="utf-8")
    assert text.count("</script>") == 3  # the images, the metadata, the page's own script
    assert "<script>document.title" not in text and "<b>not</b>" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text  # no network at all
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)


def test_frames_that_are_not_alignimates_are_not_shown(register_like: Path) -> None:
    run = json.loads((register_like / "transforms.json").read_text())
    (register_like / "b.jpg").unlink()  # missing frame
    (register_like / "x.jpg").write_bytes(b"not a jpeg")  # ours, but unreadable
    (register_like / "mine.jpg").write_bytes((register_like / "a.jpg").read_bytes())  # a foreign file
    run["photos"][1]["output"] = "mine.jpg"  # a hand-edited record pointing at it
    (register_like / "transforms.json").write_text(json.dumps(run))
    meta, _ = page_data(write_review(register_like))
    assert meta["frames"] == []
    reasons = {o["name"]: o["reason"] for o in meta["others"]}
    assert reasons["IMG_2.jpg"] == "its frame b.jpg is missing"
    assert reasons["IMG_1.jpg"] == "its frame mine.jpg is not one of alignimate's files"
    assert reasons[HOSTILE].startswith("kept: <b>not</b> converged; its frame x.jpg cannot be read")
    assert meta["reference"] is None


def test_rerun_replaces_the_page_and_an_overwrite_of_the_run_removes_it(register_like: Path) -> None:
    first = write_review(register_like, max_side=100).read_bytes()
    second = write_review(register_like, max_side=300).read_bytes()
    assert first != second and len(second) > len(first)
    with OutputFolder.open(register_like, command="register", overwrite=True):
        pass
    assert not (register_like / REVIEW_NAME).exists()


def test_refusals_name_the_folder_and_write_nothing(register_like: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        write_review(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=r"has no transforms\.json"):
        write_review(empty)
    with pytest.raises(UsageError, match="--max-side must be between 64 and 2048"):
        write_review(register_like, max_side=10)
    (register_like / REVIEW_NAME).write_text("my notes")
    with pytest.raises(UsageError, match=r"review\.html: exists and alignimate did not write it"):
        write_review(register_like)
    assert (register_like / REVIEW_NAME).read_text() == "my notes"
    (register_like / REVIEW_NAME).unlink()
    (register_like / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    with pytest.raises(UsageError, match="another alignimate run is writing into this folder"):
        write_review(register_like)
    assert not (register_like / REVIEW_NAME).exists()


def test_a_folder_without_a_ledger_is_refused(register_like: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copied"
    shutil.copytree(register_like, copy)
    (copy / LEDGER_NAME).unlink()
    with pytest.raises(UsageError, match="holds files alignimate did not write"):
        write_review(copy)
    assert not (copy / REVIEW_NAME).exists()


@pytest.fixture(scope="module")
def scenes_and_apply(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real ``register`` of three sample scenes and a file that is no photo, then ``apply``."""
    root = tmp_path_factory.mktemp("review_apply")
    photos = root / "photos"
    photos.mkdir()
    for path in sorted(SCENES.glob("scene_0[0-2].jpg")):
        shutil.copy(path, photos / path.name)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    out = root / "aligned"
    result = runner.invoke(app, ["register", str(photos), "--out", str(out), "--size", "256", "-q"])
    assert result.exit_code == 1, result.output  # broken.jpg is skipped
    again = root / "again"
    result = runner.invoke(app, ["apply", str(out / "transforms.json"), "--out", str(again), "-q"])
    assert result.exit_code == 1, result.output
    return out, again


def test_register_and_apply_folders_get_a_page_with_the_skipped_photo(scenes_and_apply) -> None:
    for folder, command in zip(scenes_and_apply, ("register", "apply"), strict=True):
        result = runner.invoke(app, ["review", str(folder), "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["review"] == str(folder / REVIEW_NAME) and summary["bytes"] > 0
        meta, images = page_data(folder / REVIEW_NAME)
        assert meta["command"] == command
        assert [f["name"] for f in meta["frames"]] == ["scene_00.jpg", "scene_01.jpg", "scene_02.jpg"]
        assert meta["reference"] == 0 and meta["frames"][0]["status"] == "reference"
        assert [o["name"] for o in meta["others"]] == ["broken.jpg"]
        assert meta["others"][0]["status"] == "skipped" and meta["others"][0]["reason"]
        assert len(images) == 3  # the broken photo has no preview
        assert REVIEW_NAME in owned(folder)


def test_faces_frames_folder_gets_a_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ``faces`` run: no reference photo (the canvas is the template), so the first frame is
    the comparison; the photo without a face is listed with its reason; the contact sheet is no frame."""
    monkeypatch.setenv("ALIGNIMATE_CACHE", str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("face_00.jpg", "face_01.jpg", "face_02.jpg", "no_face_01.jpg"):
        shutil.copy(FACES / name, photos / name)
    args = ["faces", str(photos), "-o", str(tmp_path / "t.gif"), "--output-size", "128", "--max-width", "64",
            "--detect-size", "480", "--sort", "name", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # the photo without a face is dropped
    frames = tmp_path / "t_frames"
    meta, images = page_data(write_review(frames))
    assert meta["command"] == "faces"
    assert [f["name"] for f in meta["frames"]] == ["face_00.jpg", "face_01.jpg", "face_02.jpg"]
    assert meta["reference"] == 0 and "no reference photo" in meta["referenceNote"]
    assert [(o["name"], o["reason"]) for o in meta["others"]] == [("no_face_01.jpg", "no face")]
    assert decode(images[meta["frames"][0]["image"]]).shape == (128, 128, 3)


# ------------------------------------------------------------------------------------------------
# exclusion files
# ------------------------------------------------------------------------------------------------


def test_exclusions_round_trip(tmp_path: Path) -> None:
    path = write_exclusions(tmp_path / "x.json", ["b.jpg", "2021/a.jpg", "b.jpg"], input="/in", output="/out")
    data = json.loads(path.read_text())
    assert data == {
        "format": "alignimate-exclusions",
        "version": 1,
        "exclude": ["2021/a.jpg", "b.jpg"],
        "input": "/in",
        "output": "/out",
    }
    assert read_exclusions(path) == frozenset({"2021/a.jpg", "b.jpg"})
    assert read_exclusions(write_exclusions(tmp_path / "none.json", [])) == frozenset()
    with pytest.raises(ValueError, match="contains control characters"):
        write_exclusions(tmp_path / "bad.json", ["a\nb.jpg"])


GOOD = {"format": "alignimate-exclusions", "version": 1, "exclude": ["a.jpg"]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON file"),
        ('{"format": "alignimate-exclusions", "version": 1, "exclude": [NaN]}', "NaN is not JSON"),
        (json.dumps({**GOOD, "format": "alignimate-transforms"}), "not an alignimate exclusion file"),
        (json.dumps(["a.jpg"]), "not an alignimate exclusion file"),
        (json.dumps({**GOOD, "version": 2}), "version 2 is not supported"),
        (json.dumps({**GOOD, "version": True}), "version True is not supported"),
        (json.dumps({"format": GOOD["format"], "version": 1, "exlude": ["a.jpg"]}), "unknown key 'exlude'"),
        (json.dumps({**GOOD, "exclude": "a.jpg"}), "exclude must be a list of photo names"),
        (json.dumps({**GOOD, "exclude": ["a.jpg", 3]}), "exclude entry 1 is not a text name (int)"),
        (json.dumps({**GOOD, "exclude": [""]}), "exclude entry 0 is empty"),
        (json.dumps({**GOOD, "exclude": ["a\u0000.jpg"]}), "exclude entry 0 contains control characters"),
        (json.dumps({**GOOD, "exclude": ["a" * 5000]}), "exclude entry 0 is longer than 4096 characters"),
        ('{"format": "alignimate-exclusions", "version": 1, "exclude": ["\\ud800"]}', "not valid Unicode"),
        (json.dumps({**GOOD, "input": 7}), "input must be text"),
        ("[" * 100_000 + "]" * 100_000, "not a readable JSON file"),
    ],
)
def test_read_exclusions_refuses_bad_content_in_one_line_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "marks.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ExclusionsFileError) as caught:
        read_exclusions(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text
    assert isinstance(caught.value, UsageError)  # exit status 2 from every command


def test_read_exclusions_refuses_what_is_not_a_small_regular_utf8_file(tmp_path: Path) -> None:
    with pytest.raises(ExclusionsFileError, match="exclusion file not found"):
        read_exclusions(tmp_path / "missing.json")
    with pytest.raises(ExclusionsFileError, match="is a folder"):
        read_exclusions(tmp_path)
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(MAX_EXCLUSIONS_BYTES + 1)
    with pytest.raises(ExclusionsFileError, match="larger than 16 MiB"):
        read_exclusions(big)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"format": "alignimate-exclusions", "version": 1, "exclude": ["caf\xe9.jpg"]}')
    with pytest.raises(ExclusionsFileError, match="not UTF-8 text"):
        read_exclusions(latin)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.json"
        os.mkfifo(fifo)
        with pytest.raises(ExclusionsFileError, match="not a regular file"):
            finishes(lambda: read_exclusions(fifo), [fifo])


def test_excluded_reason_is_the_documented_one() -> None:
    assert EXCLUDED_REASON == "excluded by review"
    assert EXCLUDED_REASON in (ROOT / "docs" / "review.md").read_text()


# ------------------------------------------------------------------------------------------------
# animate --exclude
# ------------------------------------------------------------------------------------------------


def gif_means(path: Path) -> list[tuple[int, int, int]]:
    means = []
    with Image.open(path) as gif:
        for index in range(gif.n_frames):
            gif.seek(index)
            means.append(tuple(round(v) for v in np.asarray(gif.convert("RGB"), float).mean(axis=(0, 1))))
    return means


def solid_frames(folder: Path, colours: dict[str, tuple[int, int, int]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in colours.items():
        Image.fromarray(np.tile(np.array(colour, np.uint8), (H, W, 1))).save(folder / name)
    return folder


RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (30, 40, 210)


def close(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 8


def test_animate_leaves_out_excluded_photos_by_photo_name(tmp_path: Path) -> None:
    folder = solid_frames(tmp_path / "frames", {"f1.png": RED, "f2.png": GREEN, "f3.png": BLUE})
    fit = {"size": [H, W], "matrix": np.eye(3).tolist()}
    records = [
        PhotoRecord("2020/a.jpg", "/in/2020/a.jpg", "reference", output="f1.png", **fit),
        PhotoRecord("2020/b.jpg", "/in/2020/b.jpg", "aligned", output="f2.png", **fit),
        PhotoRecord("2021/c.jpg", "/in/2021/c.jpg", "aligned", output="f3.png", **fit),
    ]
    run = RunRecord("register", "/in", {}, reference="2020/a.jpg", canvas=[H, W], output_size=[H, W],
                    photos=records)
    write_transforms(folder / "transforms.json", run)
    marks = write_exclusions(tmp_path / "marks.json", ["2020/b.jpg", "f3.png", "elsewhere.jpg"])
    logged: list[str] = []
    info = animate(folder, tmp_path / "out.gif", fps=2, exclude=marks, log=logged.append)
    assert info.n_frames == 2
    means = gif_means(tmp_path / "out.gif")
    assert close(means[0], RED) and close(means[1], BLUE)  # f3.png is a frame file name, not a photo name
    assert f"left out 1 frames named in {marks}" in logged
    assert any("2 names in" in line and "match no frame" in line for line in logged)


def test_animate_without_transforms_matches_frame_file_names(tmp_path: Path) -> None:
    folder = solid_frames(tmp_path / "frames", {"f1.png": RED, "f2.png": GREEN, "f3.png": BLUE})
    marks = write_exclusions(tmp_path / "marks.json", ["f1.png"])
    animate(folder, tmp_path / "out.gif", fps=2, exclude=marks)
    means = gif_means(tmp_path / "out.gif")
    assert len(means) == 2 and close(means[0], GREEN) and close(means[1], BLUE)


def test_animate_exclude_refusals_come_before_any_output(tmp_path: Path) -> None:
    folder = solid_frames(tmp_path / "frames", {"f1.png": RED, "f2.png": GREEN})
    everything = write_exclusions(tmp_path / "all.json", ["f1.png", "f2.png"])
    with pytest.raises(UsageError, match="every frame is excluded by"):
        animate(folder, tmp_path / "out.gif", exclude=everything)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "alignimate-exclusions", "version": 1, "exclude": [1]}')
    gif = str(tmp_path / "out.gif")
    result = runner.invoke(app, ["animate", str(folder), "-o", gif, "--exclude", str(bad)])
    assert result.exit_code == 2
    assert f"alignimate: error: {bad}: exclude entry 0 is not a text name (int)" in result.output
    assert not (tmp_path / "out.gif").exists()
    result = runner.invoke(
        app, ["animate", str(folder), "-o", gif, "--exclude", str(tmp_path / "none.json")]
    )
    assert result.exit_code == 2 and "exclusion file not found" in result.output
    assert not (tmp_path / "out.gif").exists()
