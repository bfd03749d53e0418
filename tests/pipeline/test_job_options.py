"""Options every job shares, end to end on sample_data/: ``--exclude`` (the review page's file),
``--match-colors`` (what the user would check: the frame-to-frame spread of the mean colour of the
area the frames share, before and after) and a video file as the input."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignimate.pipeline import align_folder, apply_transforms
from alignimate.pipeline.exclusions import EXCLUDED_REASON
from alignimate.pipeline.face_geometry import face_region, face_template
from alignimate.pipeline.face_timeline import make_face_timeline

ROOT = Path(__file__).resolve().parents[2]
SCENES = ROOT / "sample_data" / "scenes"
FACES = ROOT / "sample_data" / "faces"
sys.path.insert(0, str(ROOT / "tests"))

from videos import jittered_scene, write_video  # noqa: E402


def exclusions(path: Path, names: list[str]) -> Path:
    path.write_text(json.dumps({"format": "alignimate-exclusions", "version": 1, "exclude": names}))
    return path


def colour_spread(frames: list[Path], region: np.ndarray | None = None) -> float:
    """RMS frame-to-frame change of the mean colour (grey levels) over ``region`` (default: all)."""
    means = []
    for path in frames:
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        means.append(
            pixels[region].mean(axis=0) if region is not None else pixels.reshape(-1, 3).mean(axis=0)
        )
    steps = np.diff(np.array(means), axis=0)
    return float(np.sqrt((steps**2).sum(axis=1).mean()))


def test_excluded_photos_are_skipped_with_the_reviews_reason_and_their_old_frames_go(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = align_folder(SCENES, out, size=128)
    assert len(first.aligned) == 10
    listed = exclusions(tmp_path / "marks.json", ["scene_00.jpg", "scene_04.jpg"])
    (out / "mine.jpg").write_bytes(b"the user's own file")  # not alignimate's: never touched
    result = align_folder(SCENES, out, size=128, exclude=listed)
    skipped = {p.name: p.reason for p in result.skipped}
    assert skipped == {"scene_00.jpg": EXCLUDED_REASON, "scene_04.jpg": EXCLUDED_REASON}
    assert result.exit_code == 0  # the user's own choice is not a problem
    assert result.run.reference != "scene_00.jpg"  # an excluded photo is never the reference
    assert sorted(p.name for p in out.glob("*.jpg")) == sorted(
        ["mine.jpg", *(p.output for p in result.aligned)]
    )
    assert (out / "mine.jpg").read_bytes() == b"the user's own file"

    applied = apply_transforms(
        out / "transforms.json",
        tmp_path / "applied",
        exclude=exclusions(tmp_path / "m2.json", ["scene_05.jpg"]),
    )
    assert {p.name for p in applied.skipped} == {"scene_00.jpg", "scene_04.jpg", "scene_05.jpg"}
    assert len(list((tmp_path / "applied").glob("*.jpg"))) == 7


def test_faces_exclusions_are_a_selection(tmp_path: Path) -> None:
    listed = exclusions(tmp_path / "marks.json", ["face_03.jpg"])
    result = make_face_timeline(
        FACES, tmp_path / "t.gif", output_size=128, exclude=listed, identity="largest", max_width=64
    )
    reasons = {p.name: p.reason for p in result.run.photos if p.status == "skipped"}
    assert reasons["face_03.jpg"] == EXCLUDED_REASON
    assert not (result.out / "face_03.jpg").exists()


@pytest.mark.parametrize("method", ["gain", "histogram"])
def test_match_colors_at_least_halves_the_colour_flicker_of_scenes(tmp_path: Path, method: str) -> None:
    plain = align_folder(SCENES, tmp_path / "plain", size=128)
    matched = align_folder(SCENES, tmp_path / method, size=128, match_colors=method)
    assert matched.run.settings["match_colors"] == method and "match_colors" not in plain.run.settings
    before = colour_spread([plain.out / p.output for p in plain.aligned])
    after = colour_spread([matched.out / p.output for p in matched.aligned])
    assert after <= 0.5 * before, (before, after)
    # The matrices are the same: only the colours change.
    for a, b in zip(plain.aligned, matched.aligned, strict=True):
        np.testing.assert_allclose(a.matrix, b.matrix)
    # apply follows the recorded choice, and can be told otherwise.
    again = apply_transforms(matched.out / "transforms.json", tmp_path / "again")
    assert colour_spread([again.out / p.output for p in again.aligned]) <= 0.5 * before
    undone = apply_transforms(matched.out / "transforms.json", tmp_path / "undone", match_colors="none")
    assert colour_spread([undone.out / p.output for p in undone.aligned]) == pytest.approx(before, rel=0.05)


def test_match_colors_halves_the_flicker_over_the_face(tmp_path: Path) -> None:
    size = 128
    region = face_region(face_template("eyes", size), size) > 0
    spreads = {}
    for method in ("none", "gain"):
        result = make_face_timeline(
            FACES,
            tmp_path / method / "t.gif",
            output_size=size,
            match_colors=method,
            identity="largest",
            max_width=64,
        )
        spreads[method] = colour_spread([result.out / p.output for p in result.aligned], region)
    assert spreads["gain"] <= 0.5 * spreads["none"], spreads


def test_a_jittered_video_registers_to_steady_frames(tmp_path: Path) -> None:
    frames, _truth = jittered_scene(10, max_shift=4.0, seed=3)
    (tmp_path / "input").mkdir()
    video = write_video(tmp_path / "input" / "shaky.mp4", frames)
    out = tmp_path / "out"
    result = align_folder(video, out, model="similarity", crop="none", sample_fps=12.5)
    assert len(result.aligned) == 5  # 10 frames at 25 fps, sampled at 12.5 per second
    assert (out / "shaky-frames").is_dir() and not list((tmp_path / "input").glob("*.jpg"))
    # Aligned frames against the reference frame: the shake is gone (residual motion by phase
    # correlation, sub-pixel), where the input frames moved by pixels.
    from skimage.registration import phase_cross_correlation

    def motion(paths: list[Path]) -> float:
        grey = [np.asarray(Image.open(p).convert("L"), dtype=np.float64)[16:-16, 16:-16] for p in paths]
        return float(
            np.median(
                [np.hypot(*phase_cross_correlation(grey[0], g, upsample_factor=20)[0]) for g in grey[1:]]
            )
        )

    written = [out / p.output for p in result.run.photos if p.output]
    sources = sorted((out / "shaky-frames").glob("*.jpg"))
    assert motion(sources) > 1.0
    assert motion(written) < 1.0
    # A rerun resumes: same frames, nothing extracted again.
    before = {p.name: p.stat().st_mtime_ns for p in sources}
    again = align_folder(video, out, model="similarity", crop="none", sample_fps=12.5)
    assert len(again.aligned) == 5
    assert {p.name: p.stat().st_mtime_ns for p in sorted((out / "shaky-frames").glob("*.jpg"))} == before
    shutil.rmtree(out)
