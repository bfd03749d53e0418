"""``register --background person``: the subject cut out of each frame (alignimate/pipeline/cutout.py).

Ground truth: sample_data/scenes, whose ground_truth.json gives every photo's ``frame_H_source`` (the
pixel matrix from the rocket photo they were cut from). An ellipse on the rocket, drawn in source
pixels, is written as each photo's mask at half the photo's resolution (area-sampled, so its edge
is soft like a real matte). A frame's expected mask is then that ellipse taken by
``crop offset @ matrix @ frame_H_source``: whatever the registration found, the writer must put the
mask where the photo goes. What the user checks is measured on the written frames: inside the
ellipse the plain frame, outside the fill, and the mask edge (where it lies, how wide its ramp is).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from alignimate import align_folder
from alignimate.cli import app
from alignimate.detect.base import Instance
from alignimate.errors import UsageError
from alignimate.io import PhotoError, read_image
from alignimate.pipeline.apply import apply_transforms
from alignimate.pipeline.colors import ColorCorrection
from alignimate.pipeline.cutout import (
    FEATHER_SIGMA,
    Cutout,
    SubjectMask,
    cut_out,
    frame_mask,
    render_background,
)
from alignimate.pipeline.frame_writer import FrameJob, WarpFrame
from alignimate.pipeline.records import RunRecord, read_transforms
from alignimate.pipeline.render import resize_matrix, translation

ROOT = Path(__file__).resolve().parents[2]
SCENES = ROOT / "sample_data" / "scenes"
TRUTH = {f["file"]: f for f in json.loads((SCENES / "ground_truth.json").read_text())["frames"]}
PHOTO_HW = (360, 480)
MASK_HW = (180, 240)
# The ellipse in source pixels: centre, semi-axes along x and y (the rocket stands upright).
CENTRE, AXES = (320.0, 200.0), (32.0, 110.0)
# Far from the edge (source pixels, about 1.25 frame pixels each): beyond the feather's reach.
FAR = 10.0
# 10 %-90 % width of a Gaussian edge, in sigmas: 2 * 1.2816.
RAMP_PER_SIGMA = 2.5631
runner = CliRunner()


def ellipse_mask(frame_H_source: np.ndarray, size_hw: tuple[int, int], photo_hw=PHOTO_HW) -> np.ndarray:
    """The ellipse as a soft mask of ``size_hw`` over a photo of ``photo_hw`` (4 x 4 samples a pixel)."""
    source_H_mask = np.linalg.inv(frame_H_source) @ resize_matrix(size_hw, photo_hw)
    n = 4
    h, w = size_hw
    ys, xs = np.mgrid[0 : h * n, 0 : w * n]
    u, v = (xs + 0.5) / n - 0.5, (ys + 0.5) / n - 0.5
    q = source_H_mask @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    x, y = q[0] / q[2], q[1] / q[2]
    inside = ((x - CENTRE[0]) / AXES[0]) ** 2 + ((y - CENTRE[1]) / AXES[1]) ** 2 <= 1
    return inside.reshape(h, n, w, n).mean(axis=(1, 3)).astype(np.float32)


def write_masks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, truth in TRUTH.items():
        mask = ellipse_mask(np.asarray(truth["frame_H_source"]), MASK_HW)
        Image.fromarray((mask * 255).round().astype(np.uint8)).save(folder / f"{Path(name).stem}.png")
    return folder


def frame_H_source(run: RunRecord, name: str) -> np.ndarray:
    """Where the source (and so the ellipse) lands on ``name``'s frame."""
    crop = run.crop
    offset = translation(-crop["left"], -crop["top"]) if crop else np.eye(3)
    record = run.by_name()[name]
    return offset @ np.asarray(record.matrix) @ np.asarray(TRUTH[name]["frame_H_source"])


def regions(matrix: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(far inside, far outside)`` boolean maps of a frame: the ellipse shrunk and grown by FAR."""
    h, w = size_hw
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    q = np.linalg.inv(matrix) @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    x, y = q[0] / q[2], q[1] / q[2]

    def level(grow: float) -> np.ndarray:
        a, b = AXES[0] + grow, AXES[1] + grow
        return (((x - CENTRE[0]) / a) ** 2 + ((y - CENTRE[1]) / b) ** 2).reshape(h, w)

    return level(-FAR) <= 1, level(FAR) >= 1


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``image`` (h, w) sampled at pixel coordinates (inside the image)."""
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    x1, y1 = np.minimum(x0 + 1, image.shape[1] - 1), np.minimum(y0 + 1, image.shape[0] - 1)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def edge_profiles(alpha: np.ndarray, matrix: np.ndarray, count: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Across the ellipse's edge on a frame (``matrix``: a similarity from source to frame): per normal
    that stays inside the frame, the 10 %-90 % width of ``alpha`` (in [0, 1]) and the signed distance
    of its 50 % crossing from the true edge, both in frame pixels."""
    scale = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    steps = np.arange(-12.0, 12.0, 0.05)
    widths, offsets = [], []
    for t in np.linspace(0, 2 * math.pi, count, endpoint=False):
        point = np.array([CENTRE[0] + AXES[0] * math.cos(t), CENTRE[1] + AXES[1] * math.sin(t), 1.0])
        normal = np.array([math.cos(t) / AXES[0], math.sin(t) / AXES[1]])
        mapped = matrix @ point
        p = mapped[:2] / mapped[2]
        n = matrix[:2, :2] @ normal / scale
        n /= np.linalg.norm(n)
        xs, ys = p[0] + steps * n[0], p[1] + steps * n[1]
        if xs.min() < 0 or ys.min() < 0 or xs.max() > alpha.shape[1] - 1 or ys.max() > alpha.shape[0] - 1:
            continue
        values = bilinear(alpha, xs, ys)
        below = {level: steps[np.argmax(values < level)] for level in (0.9, 0.5, 0.1)}
        widths.append(below[0.1] - below[0.9])
        offsets.append(below[0.5])
    return np.array(widths), np.array(offsets)


def expected_ramp(frame_H_mask: np.ndarray) -> float:
    """The 10 %-90 % width the frame's mask edge should have: the feather's Gaussian on top of the
    mask's own edge (a box of one mask pixel, from area sampling, and the bilinear warp's tent of two),
    variances added, in frame pixels."""
    k = math.sqrt(abs(np.linalg.det(frame_H_mask[:2, :2])))  # frame pixels per mask pixel
    return RAMP_PER_SIGMA * math.sqrt(FEATHER_SIGMA**2 + k * k / 12 + k * k / 6)


def frame_of(out: Path, run: RunRecord, name: str) -> np.ndarray:
    with Image.open(out / run.by_name()[name].output) as img:
        return np.asarray(img)


def assert_filled(values: np.ndarray, level: int, what: str) -> None:
    """``values`` (pixels of a JPEG frame) are the fill ``level``: all within the few levels of
    ringing where an 8 x 8 block straddles the subject's edge, nearly all exactly."""
    assert np.abs(values.astype(int) - level).max() <= 5, what
    assert (values == level).mean() > 0.99, what


SIMILAR = [n for n, t in TRUTH.items() if t["model"] == "similarity"]


# -- the compositing itself ----------------------------------------------------------------------------
def test_cut_out_keeps_the_subject_fills_the_rest_and_feathers_the_edge() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.float32)
    mask[:, :48] = 1.0  # the left half is the subject; its edge is the line x = 47.5
    for fill, value in (("black", 0), ("white", 255)):
        out = cut_out(frame, mask, np.eye(3), fill)
        np.testing.assert_array_equal(out[:, :40], frame[:, :40])
        assert (out[:, 56:] == value).all()
    clear = cut_out(frame, mask, np.eye(3), "transparent")
    np.testing.assert_array_equal(clear[..., :3], frame)  # colours kept, alpha carries the cut
    alpha = clear[32, :, 3].astype(np.float64) / 255
    assert (alpha[:40] == 1).all() and (alpha[56:] == 0).all()
    # The edge is the stated Gaussian: its 10 %-90 % ramp is 2.56 sigma wide, centred on the edge.
    xs = np.arange(96.0)
    fine = np.arange(30.0, 66.0, 0.01)
    profile = np.interp(fine, xs, alpha)
    width = fine[np.argmax(profile < 0.1)] - fine[np.argmax(profile < 0.9)]
    assert abs(width - RAMP_PER_SIGMA * FEATHER_SIGMA) < 0.3, width
    assert abs(fine[np.argmax(profile < 0.5)] - 47.5) < 0.1
    hard = cut_out(frame, mask, np.eye(3), "transparent", feather=0)[32, :, 3]
    assert set(np.unique(hard)) == {0, 255}
    # Torch planes in, torch planes out, the same pixels.
    planes = torch.from_numpy(frame).permute(2, 0, 1)
    as_planes = cut_out(planes, mask, np.eye(3), "transparent")
    np.testing.assert_array_equal(as_planes.permute(1, 2, 0).numpy(), clear)


def test_blur_fill_averages_the_background_alone() -> None:
    frame = np.zeros((160, 160, 3), np.uint8)
    frame[:, :, 2] = 200  # a blue background
    frame[40:120, 40:120] = (255, 255, 0)  # a yellow subject
    mask = np.zeros((160, 160), np.float32)
    mask[40:120, 40:120] = 1.0
    out = cut_out(frame, mask, np.eye(3), "blur").astype(int)
    np.testing.assert_array_equal(out[50:110, 50:110], frame[50:110, 50:110])
    # Just past the feather (7 to 12 px from the edge) the fill is the background's blue, with no
    # yellow halo.
    ring = out[28:33, 40:120]
    assert np.abs(ring - (0, 0, 200)).max() <= 2, ring.reshape(-1, 3).max(axis=0)


def test_subject_mask_at_another_resolution_lands_on_the_photo() -> None:
    truth = np.asarray(TRUTH["scene_01.jpg"]["frame_H_source"])
    small = ellipse_mask(truth, MASK_HW)
    full = ellipse_mask(truth, PHOTO_HW)
    packed = SubjectMask.packed(small, PHOTO_HW)
    np.testing.assert_allclose(packed.load(), small, atol=0.5 / 255)
    on_photo = frame_mask(packed.load(), packed.photo_H_mask(MASK_HW), PHOTO_HW, feather=0)
    # Upsampled, the half-resolution mask agrees with the full-resolution one but on its edge.
    assert np.abs(on_photo - full).mean() < 0.01
    with pytest.raises(ValueError, match="fill must be one of"):
        Cutout(packed, "grey")


def test_the_frame_writer_cuts_out_after_the_colour_correction(tmp_path: Path) -> None:
    photo = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    mask = np.zeros((48, 64), np.float32)
    mask[8:40, 16:48] = 1.0
    # A correction that moves both black and white (as a gain with an offset does).
    levels = np.arange(256.0)
    correction = ColorCorrection(np.tile(np.round(20 + levels * 0.8), (3, 1)))
    for fill, value in (("black", 0), ("white", 255)):
        job = FrameJob(
            path,
            np.eye(3),
            tmp_path / "frame.png",
            correction=correction,
            cutout=Cutout(SubjectMask.packed(mask, (48, 64)), fill),
        )
        frame = WarpFrame((48, 64), render_background(fill)).process({"job": job})["frame"]
        frame = frame.permute(1, 2, 0).numpy()
        assert (frame[:, 56:] == value).all(), fill  # the fill itself, not its corrected value
        np.testing.assert_array_equal(frame[14:34, 22:42], correction.apply(photo)[14:34, 22:42])
    # A missing mask file is the photo's skip reason, not an error that stops the run.
    broken = SubjectMask((48, 64), lambda: (_ for _ in ()).throw(PhotoError(tmp_path / "m.png", "gone")))
    job = FrameJob(path, np.eye(3), tmp_path / "frame.png", cutout=Cutout(broken, "black"))
    row = WarpFrame((48, 64)).process({"job": job})
    assert row["status"] == "skipped" and row["reason"] == "gone"


# -- masks:DIR end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def masks_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cutout")
    masks = write_masks(root / "masks")
    common = dict(mode=f"masks:{masks}", workers=2, device="cpu")
    person = align_folder(SCENES, root / "person", background="person", person_fill="transparent", **common)
    plain = align_folder(SCENES, root / "plain", background="transparent", **common)
    return {"root": root, "masks": masks, "person": person, "plain": plain, "common": common}


def test_person_background_keeps_the_subject_and_clears_the_rest(masks_runs) -> None:
    person, plain = masks_runs["person"], masks_runs["plain"]
    assert person.exit_code == 0, [(p.name, p.reason) for p in person.run.photos]
    assert person.run.settings["background"] == "person"
    assert person.run.settings["person_fill"] == "transparent"
    for name in TRUTH:
        record = person.run.by_name()[name]
        # The same registration as a plain run: the cut-out changes only the frames.
        np.testing.assert_allclose(record.matrix, plain.run.by_name()[name].matrix, atol=1e-9)
        assert record.output.endswith(".png")
        cut = frame_of(person.out, person.run, name)
        whole = frame_of(plain.out, plain.run, name)
        assert cut.shape == whole.shape and cut.shape[2] == 4
        inside, outside = regions(frame_H_source(person.run, name), cut.shape[:2])
        assert inside.sum() > 5000 and outside.sum() > 20000
        # Inside: the plain frame itself, opaque. Outside (also where the photo does not reach): clear.
        np.testing.assert_array_equal(cut[inside], whole[inside])
        assert (cut[..., 3][inside] == 255).all()
        assert (cut[..., 3][outside] == 0).all()


def test_mask_edge_lies_on_the_subject_and_is_feathered(masks_runs) -> None:
    person = masks_runs["person"]
    measured = []
    for name in SIMILAR:
        alpha = frame_of(person.out, person.run, name)[..., 3].astype(np.float64) / 255
        matrix = frame_H_source(person.run, name)
        widths, offsets = edge_profiles(alpha, matrix)
        assert len(widths) >= 20, name
        source_H_mask = np.linalg.inv(np.asarray(TRUTH[name]["frame_H_source"])) @ resize_matrix(
            MASK_HW, PHOTO_HW
        )
        expected = expected_ramp(matrix @ source_H_mask)
        measured.append((name, float(np.median(widths)), expected, float(np.median(np.abs(offsets)))))
        # The ramp is the feather on top of the half-resolution mask's own edge, centred on the
        # true edge (the figures measured: docs/modes.md).
        assert abs(np.median(widths) - expected) < 0.6, measured[-1]
        assert np.median(np.abs(offsets)) < 0.5 and np.abs(offsets).max() < 1.0, measured[-1]
    assert len(measured) == len(SIMILAR) >= 5


def test_solid_fill_stays_exact_under_colour_matching(masks_runs) -> None:
    root, common = masks_runs["root"], masks_runs["common"]
    cut = align_folder(
        SCENES, root / "white", background="person", person_fill="white", match_colors="gain", **common
    )
    plain = align_folder(SCENES, root / "white-plain", match_colors="gain", **common)
    assert cut.exit_code == 0
    moved = 0
    for name in TRUTH:
        frame = frame_of(cut.out, cut.run, name).astype(int)
        whole = frame_of(plain.out, plain.run, name).astype(int)
        inside, outside = regions(frame_H_source(cut.run, name), frame.shape[:2])
        assert_filled(frame[outside], 255, name)
        assert np.abs(frame[inside] - whole[inside]).mean() < 1.0, name
        moved += int(cut.run.by_name()[name].extra["frame"].get("colors") is not None)
    assert moved >= 9, "the colour corrections were applied to the cut-out frames"


def test_blur_fill_is_smooth_outside_and_plain_inside(masks_runs) -> None:
    root, common = masks_runs["root"], masks_runs["common"]
    blur = align_folder(SCENES, root / "blur", background="person", person_fill="blur", **common)
    plain = align_folder(SCENES, root / "blur-plain", background="blur", **common)
    for name in ("scene_01.jpg", "scene_05.jpg"):
        frame = frame_of(blur.out, blur.run, name).astype(float)
        whole = frame_of(plain.out, plain.run, name).astype(float)
        inside, outside = regions(frame_H_source(blur.run, name), frame.shape[:2])
        assert np.abs(frame[inside] - whole[inside]).mean() < 1.0
        # Outside, the scaffolding's detail is gone: far smaller pixel-to-pixel changes than the photo.
        sharp = np.abs(np.diff(whole, axis=1))[outside[:, 1:]].mean()
        soft = np.abs(np.diff(frame, axis=1))[outside[:, 1:]].mean()
        assert soft < 0.35 * sharp, (name, soft, sharp)
        assert frame[outside].std() > 3, "a blurred photo, not a solid colour"


def test_resume_rewrites_changed_frames_and_skips_a_photo_without_mask(masks_runs, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    shutil.copytree(masks_runs["masks"], masks)
    out = tmp_path / "out"
    options = dict(mode=f"masks:{masks}", workers=2, device="cpu", background="person")
    first = align_folder(SCENES, out, person_fill="black", **options)
    assert first.exit_code == 0
    old_05 = out / first.run.by_name()["scene_05.jpg"].output
    assert old_05.is_file()
    (masks / "scene_05.png").unlink()
    log: list[str] = []
    second = align_folder(SCENES, out, person_fill="white", log=log.append, **options)
    got = second.run.by_name()
    # The registrations are reused (a fill does not change one); the frames are rewritten white.
    for name in TRUTH:
        if name != "scene_05.jpg":
            assert got[name].matrix == first.run.by_name()[name].matrix
            frame = frame_of(out, second.run, name)
            _, outside = regions(frame_H_source(second.run, name), frame.shape[:2])
            assert_filled(frame[outside], 255, name)
    # The photo whose mask went missing is skipped with the reason, and its old frame removed.
    assert got["scene_05.jpg"].status == "skipped"
    assert got["scene_05.jpg"].reason == f"no mask for this photo in {masks.resolve()}"
    assert not old_05.exists() and second.exit_code == 1
    # An alpha channel needs PNG frames: the JPEG ones give way to them.
    third = align_folder(SCENES, out, person_fill="transparent", **options)
    assert all(p.output.endswith(".png") for p in third.run.photos if p.output)
    assert not any(out.glob("*.jpg"))
    # The same settings again: nothing to rewrite.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    fourth = align_folder(SCENES, out, person_fill="transparent", **options)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.png")} == stamps
    assert fourth.run.by_name()["scene_05.jpg"].status == "skipped"


def test_an_unreadable_mask_skips_its_photo_alone(masks_runs, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    shutil.copytree(masks_runs["masks"], masks)
    out = tmp_path / "out"
    options = dict(mode=f"masks:{masks}", workers=2, device="cpu", background="person")
    align_folder(SCENES, out, **options)
    (masks / "scene_03.png").write_bytes(b"not a png")
    again = align_folder(SCENES, out, person_fill="white", **options)
    got = again.run.by_name()
    assert got["scene_03.jpg"].status == "skipped"
    assert "its mask cannot be read" in got["scene_03.jpg"].reason
    assert sum(p.status != "skipped" for p in again.run.photos) == len(TRUTH) - 1


def test_apply_does_not_guess_the_cut_out(masks_runs, tmp_path: Path) -> None:
    transforms = masks_runs["person"].out / "transforms.json"
    assert read_transforms(transforms).settings["background"] == "person"
    with pytest.raises(UsageError, match="person"):
        apply_transforms(transforms, tmp_path / "again", device="cpu", workers=1)
    # The plain frames of the same registration, with a background apply knows.
    result = apply_transforms(transforms, tmp_path / "plain", background="black", device="cpu", workers=1)
    assert result.exit_code == 0


# -- usage ---------------------------------------------------------------------------------------------
def test_person_background_needs_a_mode_with_masks(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["register", str(SCENES), "--out", str(tmp_path / "a"), "--background", "person"]
    )
    assert result.exit_code == 2
    assert "--background person needs the subject's mask: --mode body or --mode masks:DIR" in result.output
    points = tmp_path / "points.json"
    points.write_text(json.dumps({n: {"a": [1.0, 2.0], "b": [30.0, 40.0]} for n in TRUTH}))
    with pytest.raises(UsageError, match="not --mode keypoints"):
        align_folder(SCENES, tmp_path / "b", mode=f"keypoints:{points}", background="person")
    result = runner.invoke(
        app, ["register", str(SCENES), "--out", str(tmp_path / "c"), "--person-fill", "white"]
    )
    assert result.exit_code == 2 and "--person-fill is only used with --background person" in result.output
    result = runner.invoke(
        app,
        [
            "register",
            str(SCENES),
            "--out",
            str(tmp_path / "d"),
            "--background",
            "person",
            "--person-fill",
            "red",
        ],
    )
    assert result.exit_code == 2 and "black, white, blur, transparent" in result.output


# -- body ----------------------------------------------------------------------------------------------
# Three "body keypoints" on the rocket, source pixels.
BODY_POINTS = {"left_ear": (320.0, 120.0), "left_shoulder": (330.0, 200.0), "left_hip": (312.0, 280.0)}
DETECT_SIDE = 240


class RocketDetector:
    """A person detector that knows the scenes: it recognises each photo by its pixels (at the
    detector's working size) and returns the true keypoints and the ellipse as the person's mask, at
    that working size, as Mask R-CNN would. ``no_mask``: a photo whose person comes without a mask."""

    name = "rocket-person"

    def __init__(self, no_mask: str | None = None) -> None:
        self.known = {}
        for name in TRUTH:
            image = read_image(SCENES / name, max_side=DETECT_SIDE)
            self.known[image.tobytes()] = name
        self.no_mask = no_mask
        self.seen: list[str] = []

    def settings(self) -> dict[str, Any]:
        return {"version": 1}

    def detect(self, images: list[np.ndarray]) -> list[list[Instance]]:
        out = []
        for image in images:
            name = self.known[image.tobytes()]
            self.seen.append(name)
            work = image.shape[:2]
            work_H_source = resize_matrix(PHOTO_HW, work) @ np.asarray(TRUTH[name]["frame_H_source"])
            pts = np.array([work_H_source @ [x, y, 1.0] for x, y in BODY_POINTS.values()])
            person = Instance(
                box=np.array([0, 0, work[1], work[0]], np.float32),
                score=0.99,
                mask=None
                if name == self.no_mask
                else ellipse_mask(np.asarray(TRUTH[name]["frame_H_source"]), work),
                keypoints=(pts[:, :2] / pts[:, 2:]).astype(np.float32),
                keypoint_scores=np.full(3, 0.99, np.float32),
                keypoint_names=tuple(BODY_POINTS),
                image_size=work,
                label="person",
            )
            out.append([person])
        return out


def test_body_mode_cuts_out_the_person_it_registered_on(tmp_path: Path) -> None:
    detector = RocketDetector(no_mask="scene_07.jpg")
    options = dict(
        mode="body", detector=detector, detect_size=DETECT_SIDE, workers=2, device="cpu", background="person"
    )
    out = tmp_path / "out"
    result = align_folder(SCENES, out, cache_dir=tmp_path / "cache", **options)
    # One detection per photo: the frames use the masks the registration found.
    assert sorted(detector.seen) == sorted(TRUTH)
    got = result.run.by_name()
    assert got["scene_07.jpg"].status == "skipped"
    assert got["scene_07.jpg"].reason == "the detected person has no mask"
    assert not any(p.name.startswith("scene_07") for p in out.iterdir())
    plain = align_folder(SCENES, tmp_path / "plain", use_cache=False, **{**options, "background": "black"})
    for name in TRUTH:
        if name == "scene_07.jpg":
            continue
        frame = frame_of(out, result.run, name).astype(int)
        whole = frame_of(plain.out, plain.run, name).astype(int)
        inside, outside = regions(frame_H_source(result.run, name), frame.shape[:2])
        assert_filled(frame[outside], 0, name)
        assert np.abs(frame[inside] - whole[inside]).mean() < 1.0, name
    # A rerun with another fill reuses the registrations and reads the masks from the detection
    # cache: nothing is detected again, every frame is rewritten.
    detector.seen.clear()
    again = align_folder(SCENES, out, cache_dir=tmp_path / "cache", person_fill="white", **options)
    assert detector.seen == []
    # Once more without the cache and nothing changed: no frame needs a mask, so the only detections
    # are those of every run (the reference, to choose it) and of the photo whose frame could not be
    # made (its registration is tried again).
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.jpg")}
    align_folder(SCENES, out, use_cache=False, person_fill="white", **options)
    assert detector.seen == ["scene_00.jpg", "scene_07.jpg"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.jpg")} == stamps
    for name in TRUTH:
        if name == "scene_07.jpg":
            continue
        frame = frame_of(out, again.run, name)
        _, outside = regions(frame_H_source(again.run, name), frame.shape[:2])
        assert_filled(frame[outside], 255, name)
