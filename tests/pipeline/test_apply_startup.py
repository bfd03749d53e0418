"""``alignimate apply`` without torch where it does no torch computation (issue #17): affine frames on
the CPU with a black, white or transparent background are read, warped by OpenCV and written as numpy
arrays, and the process never imports torch; the frames are byte for byte those of the torch planes
path. The same for ``register`` runs with nothing to register (one photo, a resumed run). Also the
torch-free pieces this rests on: the device choice, the resize matrix and the numpy codec functions
that the planes functions wrap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignimate.core import scale_matrix_for_resize
from alignimate.errors import UsageError
from alignimate.io import (
    read_image,
    read_image_pixels,
    read_image_planes,
    save_image,
    save_image_pixels,
    save_image_planes,
)
from alignimate.pipeline.records import PhotoRecord, RunRecord, write_transforms
from alignimate.pipeline.render import render_frame, resize_matrix
from alignimate.pipeline.run import device_name, pick_device

H, W = 60, 80

# Runs the CLI in a fresh interpreter, then reports its exit status and whether torch was imported.
# (main() reports at its exit, which for a process with torch loaded ends it at once.)
_PROBE = """
import json, sys
import alignimate.cli as cli
def report(status):
    print(json.dumps({"code": status, "torch": "torch" in sys.modules}), flush=True)
    raise SystemExit(status)
cli._exit_without_teardown = report
sys.argv = ["alignimate", *sys.argv[1:]]
try:
    cli.main()
except SystemExit:
    pass
"""


def _photo(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    smooth = np.stack([x * 255 / W, y * 255 / H, (x + y) * 127 / (H + W)], axis=2)
    return np.clip(smooth + rng.normal(0, 25, (H, W, 3)), 0, 255).astype(np.uint8)


def _similarity(angle_deg: float, scale: float, dx: float, dy: float) -> np.ndarray:
    c, s = scale * np.cos(np.radians(angle_deg)), scale * np.sin(np.radians(angle_deg))
    return np.array([[c, -s, dx], [s, c, dy], [0.0, 0.0, 1.0]])


# The reference (identity), two similarities with sub-pixel shifts (OpenCV's warp, the photo's edge in
# view) and, for one test, a homography (the tiled torch warp).
MATRICES = {
    "ref": np.eye(3),
    "b": _similarity(1.5, 1.02, 2.3, -1.7),
    "c": _similarity(-2.0, 0.97, -3.4, 2.6),
}
HOMOGRAPHY = np.array([[1.0, 0.02, 1.5], [0.01, 0.98, -2.0], [2e-4, -1e-4, 1.0]])


def _transforms(tmp_path: Path, matrices: dict[str, np.ndarray], background: str = "black") -> Path:
    """JPEG photos in tmp_path/photos and a register-like transforms.json for them in tmp_path/run."""
    photos = tmp_path / "photos"
    photos.mkdir()
    records = []
    for seed, (name, matrix) in enumerate(matrices.items()):
        path = photos / f"{name}.jpg"
        Image.fromarray(_photo(seed)).save(path, quality=90)
        records.append(
            PhotoRecord(
                name=path.name,
                source=str(path),
                status="reference" if name == "ref" else "aligned",
                size=[H, W],
                matrix=matrix.tolist(),
            )
        )
    run = RunRecord(
        command="register",
        input=str(photos),
        settings={"background": background, "model": "similarity"},
        reference="ref.jpg",
        canvas=[H, W],
        crop=None,
        output_size=[H, W],
        photos=records,
    )
    (tmp_path / "run").mkdir()
    write_transforms(tmp_path / "run" / "transforms.json", run)
    return tmp_path / "run" / "transforms.json"


def _cli_in_fresh_process(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args, "-q"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _apply_in_fresh_process(transforms: Path, out: Path, *args: str) -> dict:
    return _cli_in_fresh_process("apply", str(transforms), "--out", str(out), *args)


@pytest.mark.parametrize("background", ["black", "white", "transparent"])
def test_apply_of_affine_frames_on_the_cpu_never_imports_torch(tmp_path: Path, background: str) -> None:
    transforms = _transforms(tmp_path, MATRICES)
    out = tmp_path / "out"
    report = _apply_in_fresh_process(transforms, out, "--device", "cpu", "--background", background)
    assert report == {"code": 0, "torch": False}
    # The frames are those of the torch planes path (read_image_planes, render_frame, save_image_planes),
    # byte for byte.
    suffix = ".png" if background == "transparent" else ".jpg"
    for name, matrix in MATRICES.items():
        planes = read_image_planes(tmp_path / "photos" / f"{name}.jpg")
        frame = render_frame(planes, matrix, (H, W), background=background, device="cpu")
        assert isinstance(frame, torch.Tensor)
        expected = save_image_planes(tmp_path / f"expected-{name}{suffix}", frame).read_bytes()
        assert (out / f"{name}{suffix}").read_bytes() == expected, name


def test_auto_device_without_a_gpu_does_not_import_torch(tmp_path: Path) -> None:
    transforms = _transforms(tmp_path, MATRICES)
    code = (
        "import sys\n"
        "import alignimate.pipeline.run as run\n"
        "run._GPU_DEVICE_FILES = ('/nonexistent/gpu',)\n"  # as on a machine without a GPU
        "print(run.device_name('auto'), 'torch' in sys.modules)\n"
    )
    if sys.platform.startswith("linux") or sys.platform == "darwin":
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert result.stdout.split() == ["cpu", "False"]
    # The whole job with the default device on this machine: torch only if a GPU may be present.
    report = _apply_in_fresh_process(transforms, tmp_path / "out")
    assert report["code"] == 0
    assert len(list((tmp_path / "out").glob("*.jpg"))) == len(MATRICES)


@pytest.mark.parametrize(
    ("matrices", "args"),
    [
        ({**MATRICES, "h": HOMOGRAPHY}, ["--device", "cpu"]),
        (MATRICES, ["--device", "cpu", "--background", "blur"]),
        (MATRICES, ["--device", "cpu", "--match-colors", "gain"]),
    ],
    ids=["homography", "blurred background", "colour matching"],
)
def test_frames_that_need_torch_import_it_and_are_written(
    tmp_path: Path, matrices: dict[str, np.ndarray], args: list[str]
) -> None:
    # Also shows that the probe above does see an import of torch.
    transforms = _transforms(tmp_path, matrices)
    report = _apply_in_fresh_process(transforms, tmp_path / "out", *args)
    assert report == {"code": 0, "torch": True}
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.jpg")) == sorted(matrices)


# ------------------------------------------------------------------------------------------------
# the torch-free pieces
# ------------------------------------------------------------------------------------------------


def test_device_names() -> None:
    assert device_name("cpu") == "cpu"
    assert device_name("cuda:1") == "cuda:1"
    assert device_name("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "CPU", ""):
        with pytest.raises(UsageError, match="device must be"):
            device_name(bad)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            device_name("cuda")


def test_resize_matrix_equals_the_cores_to_the_last_bit() -> None:
    rng = np.random.default_rng(0)
    sizes = [((3000, 4000), (512, 683)), ((1, 1), (7, 3)), ((4000, 3000), (4000, 3000))]
    sizes += [(tuple(rng.integers(1, 9000, 2)), tuple(rng.integers(1, 9000, 2))) for _ in range(200)]
    for src, dst in sizes:
        src, dst = (int(src[0]), int(src[1])), (int(dst[0]), int(dst[1]))
        core = scale_matrix_for_resize(src, dst, dtype=torch.float64)[0].numpy()
        mine = resize_matrix(src, dst)
        assert mine.dtype == np.float64
        assert np.array_equal(mine, core), (src, dst)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_planes_are_a_view_of_the_pixels(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_photo(1)).save(path, quality=90, exif=exif.tobytes())
    pixels = read_image_pixels(path)
    assert isinstance(pixels, np.ndarray) and pixels.flags.c_contiguous
    np.testing.assert_array_equal(pixels, read_image(path))
    np.testing.assert_array_equal(read_image_planes(path).permute(1, 2, 0).numpy(), pixels)


def test_saved_pixels_are_pillows_bytes(tmp_path: Path) -> None:
    rgb = _photo(2)
    cases = {"rgb": rgb, "view": rgb[:, ::-1], "grey": rgb[..., 1], "grey1": rgb[..., 1:2]}
    for name, pixels in cases.items():
        save_image(tmp_path / f"{name}-pillow.jpg", np.ascontiguousarray(pixels))
        save_image_pixels(tmp_path / f"{name}.jpg", pixels)
        assert (tmp_path / f"{name}.jpg").read_bytes() == (tmp_path / f"{name}-pillow.jpg").read_bytes(), name
    rgba = np.concatenate([rgb, np.full((H, W, 1), 90, np.uint8)], axis=2)
    save_image_pixels(tmp_path / "alpha.png", rgba)  # not a JPEG: Pillow's
    with Image.open(tmp_path / "alpha.png") as image:
        np.testing.assert_array_equal(np.asarray(image), rgba)
    with pytest.raises(TypeError, match="uint8"):
        save_image_pixels(tmp_path / "bad.jpg", rgb.astype(np.float32))
    with pytest.raises(ValueError, match="alpha channel"):
        save_image_pixels(tmp_path / "bad.jpg", rgba)
    assert not list(tmp_path.glob("bad*"))


def _register_in_fresh_process(photos: Path, out: Path) -> dict:
    return _cli_in_fresh_process("register", str(photos), "--out", str(out), "--device", "cpu")


def test_register_of_one_photo_never_imports_torch(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_photo(0)).save(photos / "only.jpg", quality=90)
    out = tmp_path / "out"
    # The default crop (common) of a lone reference is its whole canvas.
    assert _register_in_fresh_process(photos, out) == {"code": 0, "torch": False}
    run = json.loads((out / "transforms.json").read_text())
    assert run["crop"] == {"top": 0, "left": 0, "height": H, "width": W}
    assert run["photos"][0]["status"] == "reference"
    # The frame is the photo warped by the identity, as the torch planes path writes it.
    planes = read_image_planes(photos / "only.jpg")
    frame = render_frame(planes, np.eye(3), (H, W), device="cpu")
    expected = save_image_planes(tmp_path / "expected.jpg", frame).read_bytes()
    assert (out / run["photos"][0]["output"]).read_bytes() == expected


def test_register_imports_torch_only_while_something_is_left_to_register(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shifted = np.roll(_photo(0), (2, -3), axis=(0, 1))
    for name, pixels in {"a.jpg": _photo(0), "b.jpg": shifted}.items():
        Image.fromarray(pixels).save(photos / name, quality=90)
    out = tmp_path / "out"
    assert _register_in_fresh_process(photos, out) == {"code": 0, "torch": True}
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    # Resumed: both photos are decided and their frames written, so nothing needs torch; nothing changes.
    assert _register_in_fresh_process(photos, out) == {"code": 0, "torch": False}
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written
