"""The tiled full-resolution renderer against whole-image float warps, and the frame writer."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alignimate.pipeline.frame_writer as frame_writer
import alignimate.pipeline.register_folder as register_folder
import alignimate.pipeline.render as render
from alignimate.core import gaussian_blur2d, resize, scale_matrix_for_resize, warp_perspective
from alignimate.io import PhotoError, read_image
from alignimate.pipeline.frame_writer import FrameJob, write_frames
from alignimate.pipeline.render import render_frame

ROOT = Path(__file__).resolve().parents[2]
SCENES = ROOT / "sample_data" / "scenes"
OUT_SIZE = (90, 140)  # larger than the photo on one side, smaller on the other: borders everywhere


def noise_photo(h: int = 80, w: int = 120, seed: int = 0) -> np.ndarray:
    """Independent random pixels: the hardest case for interpolation (no smoothness to hide errors)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, s, tx], [-s, c, ty], [0.0, 0.0, 1.0]])


CASES = {
    "identity": np.eye(3),
    "integer shift": np.array([[1.0, 0.0, 13.0], [0.0, 1.0, -7.0], [0.0, 0.0, 1.0]]),
    "rotation and scale": similarity(0.35, 1.15, 10.5, -4.25),
    "homography": np.array([[1.05, 0.08, 6.0], [-0.04, 0.93, 9.0], [0.0012, -0.0009, 1.0]]),
    # The horizon (denominator 0) crosses the frame: part of the output maps from behind the camera.
    "horizon": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -0.02, 1.0]]),
}


def float_warp(
    photo: np.ndarray, frame_H_photo: np.ndarray, size: tuple[int, int]
) -> tuple[torch.Tensor, ...]:
    """The whole photo warped in float32 in [0, 1], and the inside mask: the reference renderer."""
    images = torch.from_numpy(photo.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    matrix = torch.from_numpy(frame_H_photo).float().unsqueeze(0)
    return warp_perspective(images, matrix, size, return_mask=True)


def to_uint8(values: torch.Tensor) -> np.ndarray:
    return (values[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def reference_frame(photo: np.ndarray, frame_H_photo: np.ndarray, size: tuple[int, int], background: str):
    warped, inside = float_warp(photo, frame_H_photo, size)
    if background == "white":
        return to_uint8(warped + (1 - inside))
    if background == "transparent":
        return to_uint8(torch.cat([warped, inside], dim=1))
    return to_uint8(warped)


def shifted_reference(photo: np.ndarray, tx: int, ty: int, size: tuple[int, int]) -> np.ndarray:
    """``out[y, x] = photo[y - ty, x - tx]`` by explicit loops over the overlap."""
    out = np.zeros((*size, 3), np.uint8)
    for y in range(size[0]):
        for x in range(size[1]):
            if 0 <= y - ty < photo.shape[0] and 0 <= x - tx < photo.shape[1]:
                out[y, x] = photo[y - ty, x - tx]
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """(max abs difference, fraction of values within one grey level)."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(diff.max()), float((diff <= 1).mean())


@pytest.fixture(params=[(16, 32), render._TILE_HW], ids=["small tiles", "default tiles"])
def tile(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Small tiles put many tile seams and band edges inside a small test frame."""
    monkeypatch.setattr(render, "_TILE_HW", request.param)
    return request.param


# ------------------------------------------------------------------------------------------------
# render_frame
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("background", ["black", "white", "transparent"])
def test_render_frame_agrees_with_whole_image_float_warp(case: str, background: str, tile) -> None:
    photo = noise_photo()
    frame = render_frame(photo, CASES[case], OUT_SIZE, background=background)
    expected = reference_frame(photo, CASES[case], OUT_SIZE, background)
    assert frame.shape == expected.shape and frame.dtype == np.uint8
    worst, within_one = agreement(frame, expected)
    # Float rounding only: measured max 1 grey level, on under 0.1 % of the values.
    assert worst <= 1, (case, background, worst)
    assert within_one == 1.0
    # Near a horizon the coordinates grow without bound, and so do their float32 rounding errors.
    assert np.mean(frame != expected) < (0.01 if case == "horizon" else 0.001), (case, background)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("background", ["black", "blur", "transparent"])
def test_planes_in_planes_out_with_the_same_pixels(case: str, background: str, tile) -> None:
    photo = noise_photo()
    expected = render_frame(photo, CASES[case], OUT_SIZE, background=background)
    interleaved = torch.from_numpy(photo).permute(2, 0, 1)  # the JPEG decoder's memory layout
    for planes in (interleaved, interleaved.contiguous()):
        frame = render_frame(planes, CASES[case], OUT_SIZE, background=background)
        assert isinstance(frame, torch.Tensor) and frame.dtype == torch.uint8
        assert tuple(frame.shape) == (expected.shape[2], *OUT_SIZE)
        assert np.array_equal(frame.permute(1, 2, 0).numpy(), expected), (case, background)


@pytest.mark.parametrize(("tx", "ty"), [(0, 0), (13, -7), (-200, 5)])
def test_integer_shifts_are_exact_copies(tx: int, ty: int) -> None:
    photo = noise_photo()
    matrix = np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])
    assert np.array_equal(render_frame(photo, matrix, OUT_SIZE), shifted_reference(photo, tx, ty, OUT_SIZE))
    # The same translation written as a homography scaled by 2 is recognised too.
    assert np.array_equal(
        render_frame(photo, 2 * matrix, OUT_SIZE), shifted_reference(photo, tx, ty, OUT_SIZE)
    )


@pytest.mark.parametrize("case", ["rotation and scale", "homography"])
def test_the_scale_of_the_matrix_does_not_matter(case: str) -> None:
    photo = noise_photo()
    frame = render_frame(photo, CASES[case], OUT_SIZE)
    assert np.array_equal(render_frame(photo, -2.5 * CASES[case], OUT_SIZE), frame)


def test_transparent_alpha_is_the_coverage_mask() -> None:
    photo = noise_photo()
    matrix = CASES["rotation and scale"]
    frame = render_frame(photo, matrix, OUT_SIZE, background="transparent")
    _, inside = float_warp(photo, matrix, OUT_SIZE)
    expected_alpha = (inside[0, 0].numpy() * 255).astype(np.uint8)
    assert set(np.unique(frame[..., 3])) <= {0, 255}
    assert np.mean(frame[..., 3] != expected_alpha) < 0.001
    assert 0.2 < np.mean(frame[..., 3] == 0) < 0.8  # the case really has both parts


def blurred_reference(photo: np.ndarray, frame_H_photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The blurred background composed the documented way, with whole-image float ops only."""
    images = torch.from_numpy(photo.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    matrix = torch.from_numpy(frame_H_photo).unsqueeze(0)
    factor = render.BLUR_FACTOR
    small_out = (size[0] // factor, size[1] // factor)
    small_in = (photo.shape[0] // factor, photo.shape[1] // factor)
    small_matrix = (
        scale_matrix_for_resize(size, small_out, dtype=torch.float64)
        @ matrix
        @ scale_matrix_for_resize(small_in, photo.shape[:2], dtype=torch.float64)
    )
    extended = warp_perspective(
        resize(images, small_in), small_matrix.float(), small_out, padding_mode="border"
    )
    blurred = gaussian_blur2d(extended, None, max(small_out) / 40.0, border_type="replicate")
    warped, inside = float_warp(photo, frame_H_photo, size)
    return to_uint8(warped + (1 - inside) * resize(blurred, size))


def test_blurred_background_agrees_with_whole_image_float_ops(tile) -> None:
    with Image.open(SCENES / "scene_00.jpg") as image:
        photo = np.asarray(image.convert("RGB"))[::2, ::2].copy()  # 180 x 240, smooth content
    matrix = similarity(0.2, 0.9, 20.0, 30.0)
    size = (200, 260)
    frame = render_frame(photo, matrix, size, background="blur")
    worst, within_one = agreement(frame, blurred_reference(photo, matrix, size))
    # The photo is reduced by Pillow (uint8) instead of torch (float): under one grey level after the blur.
    assert worst <= 2 and within_one > 0.999, (worst, within_one)
    _, inside = float_warp(photo, matrix, size)
    outside = inside[0, 0].numpy() == 0
    assert outside.mean() > 0.2 and frame[outside].std() > 5  # the background is there and not flat


def test_render_frame_rejects_bad_arguments() -> None:
    photo = noise_photo(8, 8)
    with pytest.raises(ValueError, match="background"):
        render_frame(photo, np.eye(3), (8, 8), background="pink")
    with pytest.raises(TypeError, match="image"):
        render_frame(photo.astype(np.float32), np.eye(3), (8, 8))
    with pytest.raises(ValueError, match="image"):
        render_frame(photo[..., 0], np.eye(3), (8, 8))
    with pytest.raises(ValueError, match="frame_H_photo"):
        render_frame(photo, np.full((3, 3), np.nan), (8, 8))
    with pytest.raises(ValueError, match="invertible"):
        render_frame(photo, np.diag([1.0, 0.0, 1.0]), (8, 8))
    with pytest.raises(ValueError, match="out_size"):
        render_frame(photo, np.eye(3), (0, 8))
    with pytest.raises(ValueError, match="planes"):
        render_frame(torch.from_numpy(photo), np.eye(3), (8, 8))  # (H, W, 3) given as a tensor
    with pytest.raises(TypeError, match="uint8"):
        render_frame(torch.zeros(3, 8, 8), np.eye(3), (8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_render_matches_cpu() -> None:
    photo = noise_photo()
    for background in ("black", "blur", "transparent"):
        matrix = CASES["homography"]
        on_cpu = render_frame(photo, matrix, OUT_SIZE, background=background)
        on_cuda = render_frame(photo, matrix, OUT_SIZE, background=background, device="cuda")
        assert agreement(on_cpu, on_cuda)[0] <= 1


# ------------------------------------------------------------------------------------------------
# write_frames
# ------------------------------------------------------------------------------------------------


def make_jobs(tmp_path: Path, count: int) -> list[FrameJob]:
    shift = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 3.0], [0.0, 0.0, 1.0]])
    return [FrameJob(tmp_path / f"in_{i}.jpg", shift, tmp_path / f"out_{i}.jpg", key=i) for i in range(count)]


class FakeIO:
    """In-memory read/save that record what happened; reads take random time so that workers finish
    out of order."""

    def __init__(self, broken: set[int] = frozenset(), interrupt_at_save: int | None = None) -> None:
        self.broken, self.interrupt_at_save = broken, interrupt_at_save
        self.started: list[int] = []
        self.saved: list[int] = []
        self.max_ahead = 0
        self.lock = threading.Lock()
        self.rng = np.random.default_rng(1)

    @staticmethod
    def index(path: Path) -> int:
        return int(path.stem.split("_")[1])

    def read(self, path: Path) -> np.ndarray:
        k = self.index(path)
        with self.lock:
            self.started.append(k)
            self.max_ahead = max(self.max_ahead, len(self.started) - len(self.saved))
            delay = float(self.rng.uniform(0, 0.02))
        time.sleep(delay)
        if k in self.broken:
            raise PhotoError(path, "truncated file")
        return np.full((6, 8, 3), k, np.uint8)

    def save(self, path: Path, frame: np.ndarray) -> None:
        if len(self.saved) + 1 == self.interrupt_at_save:
            raise KeyboardInterrupt
        assert frame.shape == (5, 7, 3)
        self.saved.append(self.index(path))


def test_write_frames_yields_in_order_and_skips_unreadable_photos(tmp_path: Path) -> None:
    fake = FakeIO(broken={2, 5})
    jobs = make_jobs(tmp_path, 9)
    outcomes = list(write_frames(jobs, (5, 7), workers=3, read=fake.read, save=fake.save))
    assert [o.job.key for o in outcomes] == list(range(9))
    assert [o.job.key for o in outcomes if not o.written] == [2, 5]
    assert all(o.error.reason == "truncated file" for o in outcomes if not o.written)
    assert fake.saved == [0, 1, 3, 4, 6, 7, 8]  # saved by the caller's thread, in order


def test_write_frames_keeps_a_bounded_window(tmp_path: Path) -> None:
    fake = FakeIO()
    workers = 2
    for outcome in write_frames(
        make_jobs(tmp_path, 12), (5, 7), workers=workers, read=fake.read, save=fake.save
    ):
        time.sleep(0.01)  # a slow consumer: workers must not run ahead of it
        assert outcome.written
    # In flight: the frame being saved plus workers + 1 jobs submitted ahead of it.
    assert fake.max_ahead <= workers + 2


def test_an_interruption_while_saving_saves_nothing_more(tmp_path: Path) -> None:
    fake = FakeIO(interrupt_at_save=3)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for outcome in write_frames(
            make_jobs(tmp_path, 10), (5, 7), workers=2, read=fake.read, save=fake.save
        ):
            seen.append(outcome.job.key)
    assert seen == [0, 1] and fake.saved == [0, 1]
    assert len(fake.started) <= 2 + 3 + 1  # the window, not the whole list


def test_write_frames_writes_real_frames_atomically(tmp_path: Path) -> None:
    for i, path in enumerate(sorted(SCENES.glob("scene_0[0-2].jpg"))):
        shutil.copy(path, tmp_path / f"in_{i}.jpg")
    jobs = make_jobs(tmp_path, 3)
    outcomes = list(write_frames(jobs, (300, 400)))
    assert all(o.written for o in outcomes)
    for job in jobs:
        frame = read_image(job.target)
        assert frame.shape == (300, 400, 3)
        expected = shifted_reference(read_image(job.source), 2, 3, (300, 400))
        assert np.abs(frame.astype(float) - expected).mean() < 2.0  # JPEG quality 95
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_write_frames_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        list(write_frames(make_jobs(tmp_path, 1), (5, 7), workers=0))
    with pytest.raises(ValueError, match="background"):
        list(write_frames(make_jobs(tmp_path, 1), (5, 7), background="pink"))


# ------------------------------------------------------------------------------------------------
# register: render_all
# ------------------------------------------------------------------------------------------------


def test_render_all_resumes_and_skips_photos_unreadable_at_full_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(SCENES.glob("scene_0[0-4].jpg")):
        shutil.copy(path, folder / path.name)
    out = tmp_path / "out"
    real_read, real_save = register_folder.read_image_pixels, register_folder.save_image_pixels
    real_render = frame_writer.render_frame
    rendered: list[tuple[int, ...]] = []

    def counting_render(image, *args, **kwargs):
        rendered.append(image.shape)
        return real_render(image, *args, **kwargs)

    def read_failing_at_full_size(path, **kwargs):
        # The working copy reads fine; the full-resolution read for the frame does not.
        if Path(path).name == "scene_03.jpg" and kwargs.get("max_side") is None:
            raise PhotoError(path, "truncated file")
        return real_read(path, **kwargs)

    saves = {"n": 0}

    def interrupted_save(path, frame, **kwargs):
        saves["n"] += 1
        if saves["n"] == 3:
            raise KeyboardInterrupt
        return real_save(path, frame, **kwargs)

    monkeypatch.setattr(frame_writer, "render_frame", counting_render)
    monkeypatch.setattr(register_folder, "read_image_pixels", read_failing_at_full_size)
    monkeypatch.setattr(register_folder, "save_image_pixels", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        register_folder.align_folder(folder, out, model="homography")
    assert sorted(p.name for p in out.glob("*.jpg")) == ["scene_00.jpg", "scene_01.jpg"]
    assert not list(out.glob(".*tmp*"))
    assert (out / ".alignimate-checkpoint.json").exists()

    monkeypatch.setattr(register_folder, "save_image_pixels", real_save)
    rendered.clear()
    result = register_folder.align_folder(folder, out, model="homography")
    assert len(rendered) == 2  # frames 2 and 4 (3 is unreadable); the first two were kept
    assert [p.name for p in result.skipped] == ["scene_03.jpg"]
    assert result.skipped[0].reason == "truncated file"
    assert sorted(p.name for p in out.glob("*.jpg")) == [f"scene_0{i}.jpg" for i in (0, 1, 2, 4)]
    assert result.exit_code == 1
