"""apply_transforms on hand-made transforms.json files (no registration run): the frames it writes are
the warps the records describe, pixel for pixel, also for larger versions of the photos; skipped and
missing photos are reported; the output names, the run record and the result agree."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from alignimate.errors import UsageError
from alignimate.pipeline.apply import apply_transforms
from alignimate.pipeline.outputs import LEDGER_NAME
from alignimate.pipeline.records import PhotoRecord, RunRecord, read_transforms, write_transforms
from alignimate.pipeline.run import AlignResult

H, W = 40, 60  # the registered photos' size, which is also the canvas


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random RGB photo (bilinear sampling of it is well defined to a grey level)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 4 + 2, w // 4 + 2, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def resized(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Pixel matrix from an image to the same image resized (pixel centres at integers):
    ``x' = (x + 0.5) * w' / w - 0.5``."""
    sx, sy = dst_hw[1] / src_hw[1], dst_hw[0] / src_hw[0]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def reference_warp(photo: np.ndarray, matrix: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """OpenCV's bilinear warp with black outside: the same convention as alignimate's."""
    return cv2.warpPerspective(
        photo,
        np.asarray(matrix, dtype=np.float64),
        (size_hw[1], size_hw[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def max_difference(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def record(
    name: str,
    source: Path | str,
    matrix: np.ndarray | None,
    *,
    status: str = "aligned",
    output: str | None = None,
    size: tuple[int, int] = (H, W),
    reason: str = "",
) -> PhotoRecord:
    return PhotoRecord(
        name=name,
        source=str(source),
        status=status,
        reason=reason,
        size=list(size),
        datetime="2021-05-04T03:02:01",
        matrix=None if matrix is None else np.asarray(matrix, dtype=float).tolist(),
        output=output,
    )


def transforms_file(
    folder: Path,
    photos: list[PhotoRecord],
    *,
    reference: str | None = "ref.png",
    crop: dict[str, int] | None = None,
    settings: dict | None = None,
) -> Path:
    """Write a register-like transforms.json for ``photos`` into ``folder`` (the run's own folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    output_size = [crop["height"], crop["width"]] if crop else [H, W]
    run = RunRecord(
        command="register",
        input=str(folder.parent / "photos"),
        settings={"background": "black", "model": "homography", **(settings or {})},
        reference=reference,
        canvas=[H, W],
        crop=crop,
        output_size=output_size,
        photos=photos,
    )
    path = folder / "transforms.json"
    write_transforms(path, run)
    return path


def apply(transforms: Path, out: Path, **kwargs) -> AlignResult:
    return apply_transforms(transforms, out, device="cpu", workers=2, **kwargs)


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, np.ndarray]:
    """Four registered-size PNG photos in tmp_path/photos: ref, b, c and d."""
    pixels = {name: texture(H, W, seed) for seed, name in enumerate(("ref", "b", "c", "d"))}
    for name, image in pixels.items():
        save(tmp_path / "photos" / f"{name}.png", image)
    return pixels


# ------------------------------------------------------------------------------------------------
# pixels
# ------------------------------------------------------------------------------------------------


def test_known_matrices_give_the_reference_warp(tmp_path: Path, photos: dict[str, np.ndarray]) -> None:
    src = tmp_path / "photos"
    # 90 degrees about the photo's centre (29.5, 19.5): x' = 49 - y, y' = x - 10, whole pixels.
    rotation = np.array([[0.0, -1.0, 49.0], [1.0, 0.0, -10.0], [0.0, 0.0, 1.0]])
    matrices = {"ref": np.eye(3), "b": shift(2.5, -1.25), "c": shift(3, 2), "d": rotation}
    transforms = transforms_file(
        tmp_path / "run",
        [record(f"{n}.png", src / f"{n}.png", m, output=f"{n}-frame.png") for n, m in matrices.items()],
    )
    result = apply(transforms, tmp_path / "out")
    assert result.exit_code == 0 and result.skipped == []
    for name, matrix in matrices.items():
        frame = load(tmp_path / "out" / f"{name}-frame.png")
        assert frame.shape == (H, W, 3)
        assert max_difference(frame, reference_warp(photos[name], matrix, (H, W))) <= 1, name
    # Exact expectations, without OpenCV: the reference is a copy, a whole-pixel shift a moved copy
    # with black where the photo does not reach, the rotation a transposed and flipped copy.
    assert np.array_equal(load(tmp_path / "out" / "ref-frame.png"), photos["ref"])
    shifted = load(tmp_path / "out" / "c-frame.png")
    assert np.array_equal(shifted[2:, 3:], photos["c"][:-2, :-3])
    assert not shifted[:2].any() and not shifted[:, :3].any()
    rotated = load(tmp_path / "out" / "d-frame.png").astype(np.int16)
    columns = np.arange(10, 50)  # x' in [10, 49] come from rows y = 49 - x' of the photo
    # [y', x'] = photo[49 - x', y' + 10]
    expected = photos["d"][49 - columns][:, 10 : 10 + H].transpose(1, 0, 2)
    assert np.abs(rotated[:, 10:50] - expected).max() <= 1
    assert not rotated[:, :10].any() and not rotated[:, 50:].any()
    # The half-pixel shift blends neighbours: not a copy of either.
    half = load(tmp_path / "out" / "b-frame.png")
    assert not np.array_equal(half[5:-5, 5:-5], photos["b"][6:-4, 3:-7])


def test_the_crop_offsets_every_frame(tmp_path: Path, photos: dict[str, np.ndarray]) -> None:
    src = tmp_path / "photos"
    crop = {"top": 3, "left": 5, "height": 30, "width": 48}
    transforms = transforms_file(
        tmp_path / "run",
        [
            record("ref.png", src / "ref.png", np.eye(3), status="reference", output="ref.png"),
            record("b.png", src / "b.png", shift(-1.5, 0.5), output="b.png"),
        ],
        crop=crop,
    )
    result = apply(transforms, tmp_path / "out")
    assert result.run.output_size == [30, 48] and result.run.crop == crop and result.run.canvas == [H, W]
    assert np.array_equal(load(tmp_path / "out" / "ref.png"), photos["ref"][3:33, 5:53])
    expected = reference_warp(photos["b"], shift(-5, -3) @ shift(-1.5, 0.5), (30, 48))
    assert max_difference(load(tmp_path / "out" / "b.png"), expected) <= 1


@pytest.mark.parametrize(("factor", "suffix"), [(2, ".png"), (1.5, ".tif")])
def test_larger_versions_scale_matrices_canvas_and_crop(
    tmp_path: Path, photos: dict[str, np.ndarray], factor: float, suffix: str
) -> None:
    """Versions found by relative name (another suffix, a sub-folder too); the originals are gone."""
    big_hw = (round(H * factor), round(W * factor))
    crop = {"top": 2, "left": 4, "height": 30, "width": 50}
    matrices = {"ref.jpg": np.eye(3), "b.jpg": shift(1.5, 1.0), "sub/c.jpg": shift(-2.0, 0.5)}
    transforms = transforms_file(
        tmp_path / "run",
        [
            record(name, tmp_path / "gone" / name, m, output=name.replace("/", "__").replace(".jpg", ".png"))
            for name, m in matrices.items()
        ],
        reference="ref.jpg",
        crop=crop,
    )
    big = tmp_path / "big"
    versions = {}
    for seed, name in enumerate(matrices):
        versions[name] = save(big / Path(name).with_suffix(suffix), texture(*big_hw, seed + 10))
    result = apply(transforms, tmp_path / "out", images=big)
    assert result.exit_code == 0, result.summary()

    top, left = round(2 * factor), round(4 * factor)
    out_hw = (round(30 * factor) // 2 * 2, round(50 * factor) // 2 * 2)  # even sides, for video
    assert result.run.canvas == list(big_hw)
    assert result.run.crop == {"top": top, "left": left, "height": out_hw[0], "width": out_hw[1]}
    assert result.run.output_size == list(out_hw)
    canvas_scale = resized((H, W), big_hw)
    for name, matrix in matrices.items():
        new = result.run.by_name()[name]
        expected_matrix = canvas_scale @ matrix @ np.linalg.inv(canvas_scale)
        assert np.allclose(new.matrix, expected_matrix, atol=1e-9), name
        assert new.size == list(big_hw) and new.source == str(versions[name].resolve())
        frame = load(tmp_path / "out" / new.output)
        assert frame.shape == (*out_hw, 3)
        warp = reference_warp(load(versions[name]), shift(-left, -top) @ expected_matrix, out_hw)
        assert max_difference(frame, warp) <= 1, name
    if factor == 2:  # a pure translation is twice as long on the twice larger version
        assert np.allclose(result.run.by_name()["b.jpg"].matrix, shift(3.0, 2.0), atol=1e-12)


def test_background_comes_from_the_run_unless_given(tmp_path: Path, photos: dict[str, np.ndarray]) -> None:
    src = tmp_path / "photos"
    transforms = transforms_file(
        tmp_path / "run",
        [
            record("ref.png", src / "ref.png", np.eye(3), status="reference", output="ref.png"),
            record("b.png", src / "b.png", shift(7, 0), output="b.png"),  # columns 0-6 uncovered
        ],
        settings={"background": "white"},
    )
    white = apply(transforms, tmp_path / "white")
    frame = load(tmp_path / "white" / "b.png")
    assert (frame[:, :7] == 255).all() and np.array_equal(frame[:, 7:], photos["b"][:, :-7])
    assert white.run.settings["background"] == "white"

    black = apply(transforms, tmp_path / "black", background="black")
    frame = load(tmp_path / "black" / "b.png")
    assert not frame[:, :7].any() and np.array_equal(frame[:, 7:], photos["b"][:, :-7])
    assert black.run.settings["background"] == "black"
    assert read_transforms(tmp_path / "black" / "transforms.json").settings["background"] == "black"

    apply(transforms, tmp_path / "clear", background="transparent")  # PNG names: alpha is kept
    frame = load(tmp_path / "clear" / "b.png")
    assert frame.shape == (H, W, 4)
    assert (frame[:, :7, 3] == 0).all() and (frame[:, 7:, 3] == 255).all()
    assert np.array_equal(frame[:, 7:, :3], photos["b"][:, :-7])

    with pytest.raises(UsageError, match="background must be one of"):
        apply(transforms, tmp_path / "pink", background="pink")
    assert not (tmp_path / "pink").exists()


def test_transparent_background_on_a_jpeg_run_writes_png_frames(
    tmp_path: Path, photos: dict[str, np.ndarray]
) -> None:
    src = tmp_path / "photos"
    transforms = transforms_file(
        tmp_path / "run",
        [
            record("ref.png", src / "ref.png", np.eye(3), status="reference", output="ref.jpg"),
            record("b.png", src / "b.png", shift(7, 0), output=None),
        ],
    )
    result = apply(transforms, tmp_path / "out", background="transparent")
    assert result.exit_code == 0
    for rec in result.aligned:
        frame = load(tmp_path / "out" / rec.output)
        assert frame.shape == (H, W, 4)


# ------------------------------------------------------------------------------------------------
# skipped photos
# ------------------------------------------------------------------------------------------------


def test_missing_and_mismatched_versions_are_skipped_with_reasons(
    tmp_path: Path, photos: dict[str, np.ndarray]
) -> None:
    src = tmp_path / "photos"
    names = ("ref", "b", "c", "d", "e")
    transforms = transforms_file(
        tmp_path / "run",
        [
            record("ref.png", src / "ref.png", np.eye(3), status="reference", output="ref.png"),
            record("b.png", src / "b.png", shift(1, 1), output="b.png"),
            record("c.png", src / "c.png", shift(2, 2), output="c.png"),
            record("d.png", src / "d.png", shift(3, 3), output="d.png"),
            record("e.png", src / "e.png", None, status="skipped", reason="too blurry"),
        ],
    )
    big = tmp_path / "big"
    save(big / "ref.jpg", texture(80, 120, 1))
    save(big / "b.jpg", texture(81, 120, 2))  # one pixel of rounding: the same aspect ratio
    save(big / "c.jpg", texture(80, 100, 3))  # another aspect ratio
    save(big / "e.jpg", texture(80, 120, 4))  # skipped when registered: stays skipped
    # d has no version at all.
    result = apply(transforms, tmp_path / "out", images=big)

    by_name = result.run.by_name()
    assert [p.name for p in result.aligned] == ["ref.png", "b.png"]
    assert [p.name for p in result.skipped] == ["c.png", "d.png", "e.png"]
    assert "aspect ratio differs" in by_name["c.png"].reason and "(80, 100)" in by_name["c.png"].reason
    assert by_name["d.png"].reason == f"no version of d.png in {big}"
    assert by_name["e.png"].reason == "too blurry"
    for name in ("c.png", "d.png", "e.png"):
        assert by_name[name].matrix is None and by_name[name].output is None
    assert result.exit_code == 1
    summary = result.summary()
    assert summary["aligned"] == 2 and summary["output_size"] == [80, 120]
    assert summary["skipped"] == [{"name": p.name, "reason": p.reason} for p in result.skipped]
    assert summary["out"] == str(result.out) and summary["reference"] == "ref.png"
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert written == ["b.png", "ref.png", "report.csv", "transforms.json"]
    assert load(tmp_path / "out" / "b.png").shape == (80, 120, 3)
    with (tmp_path / "out" / "report.csv").open(newline="") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert [rows[f"{n}.png"]["status"] for n in names] == [
        "reference",
        "aligned",
        "skipped",
        "skipped",
        "skipped",
    ]
    assert rows["d.png"]["reason"] == by_name["d.png"].reason and rows["b.png"]["output"] == "b.png"


def test_unreadable_sources_are_skipped_and_the_rest_written(
    tmp_path: Path, photos: dict[str, np.ndarray]
) -> None:
    src = tmp_path / "photos"
    (src / "c.png").unlink()
    (src / "d.png").write_bytes(b"not a png")
    transforms = transforms_file(
        tmp_path / "run",
        [
            record("ref.png", src / "ref.png", np.eye(3), status="reference", output="ref.png"),
            record("b.png", src / "b.png", shift(1, 1), output="b.png"),
            record("c.png", src / "c.png", shift(2, 2), output="c.png"),
            record("d.png", src / "d.png", shift(3, 3), output="d.png"),
        ],
    )
    logged: list[str] = []
    result = apply(transforms, tmp_path / "out", log=logged.append)
    assert [p.name for p in result.aligned] == ["ref.png", "b.png"]
    assert [p.name for p in result.skipped] == ["c.png", "d.png"]
    assert all(p.reason for p in result.skipped)
    assert sorted(logged) == sorted(f"skipped {p.name}: {p.reason}" for p in result.skipped)
    assert not (tmp_path / "out" / "c.png").exists() and not (tmp_path / "out" / "d.png").exists()
    assert np.array_equal(load(tmp_path / "out" / "b.png")[1:, 1:], photos["b"][:-1, :-1])


def test_a_reference_without_a_version_is_a_usage_error(
    tmp_path: Path, photos: dict[str, np.ndarray]
) -> None:
    src = tmp_path / "photos"
    transforms = transforms_file(
        tmp_path / "run",
        [
            record("ref.png", src / "ref.png", np.eye(3), status="reference"),
            record("b.png", src / "b.png", shift(1, 1)),
        ],
    )
    big = tmp_path / "big"
    save(big / "b.png", texture(80, 120, 2))
    with pytest.raises(UsageError, match=r"reference photo ref\.png has no version"):
        apply(transforms, tmp_path / "out", images=big)
    assert not (tmp_path / "out").exists()  # refused before the output folder was made


# ------------------------------------------------------------------------------------------------
# names and the run record
# ------------------------------------------------------------------------------------------------


def test_output_names_come_from_the_records(tmp_path: Path, photos: dict[str, np.ndarray]) -> None:
    src = tmp_path / "photos"
    transforms = transforms_file(
        tmp_path / "run",
        [
            record("ref.png", src / "ref.png", np.eye(3), status="reference", output="0001-start.png"),
            record("b.png", src / "b.png", shift(1, 0), output=None),  # a fresh name from the photo's
            record("c.png", src / "c.png", shift(2, 0), output="report.csv"),  # never over the report
            record("d.png", src / "d.png", shift(3, 0), output="transforms.json"),
        ],
    )
    result = apply(transforms, tmp_path / "out")
    outputs = {p.name: p.output for p in result.run.photos}
    assert outputs["ref.png"] == "0001-start.png" and outputs["b.png"] == "b.jpg"
    assert outputs["c.png"] == "c.jpg" and outputs["d.png"] == "d.jpg"
    assert np.array_equal(load(tmp_path / "out" / "0001-start.png"), photos["ref"])
    for name in ("b", "c", "d"):
        assert load(tmp_path / "out" / f"{name}.jpg").shape == (H, W, 3)
    # The reports are the reports, and every written name is in the folder's ledger.
    assert read_transforms(tmp_path / "out" / "transforms.json").command == "apply"
    assert (tmp_path / "out" / "report.csv").read_text().startswith("index,name,status")
    ledger = (tmp_path / "out" / LEDGER_NAME).read_text()
    for name in ("0001-start.png", "b.jpg", "c.jpg", "d.jpg", "report.csv", "transforms.json"):
        assert f'"{name}"' in ledger


def test_the_written_transforms_read_back_as_an_apply_run(
    tmp_path: Path, photos: dict[str, np.ndarray]
) -> None:
    src = tmp_path / "photos"
    transforms = transforms_file(
        tmp_path / "run",
        [
            record("ref.png", src / "ref.png", np.eye(3), status="reference", output="ref.png"),
            record("b.png", src / "b.png", shift(0.5, 0.5), output="b.png"),
            record("c.png", src / "c.png", None, status="skipped", reason="no overlap"),
        ],
        crop={"top": 1, "left": 1, "height": 36, "width": 56},
        settings={"model": "similarity"},
    )
    result = apply(transforms, tmp_path / "out")
    back = read_transforms(tmp_path / "out" / "transforms.json")
    assert back.command == "apply"
    assert back.input == str(tmp_path / "photos")  # without --images: the registered input
    assert back.reference == "ref.png" and back.canvas == [H, W]
    assert back.crop == {"top": 1, "left": 1, "height": 36, "width": 56} and back.output_size == [36, 56]
    assert back.settings["model"] == "similarity" and back.settings["background"] == "black"
    assert [(p.name, p.status, p.output) for p in back.photos] == [
        ("ref.png", "reference", "ref.png"),
        ("b.png", "aligned", "b.png"),
        ("c.png", "skipped", None),
    ]
    assert back.photos[2].reason == "no overlap"
    assert np.allclose(back.photos[1].matrix, shift(0.5, 0.5))
    assert back.photos[1].datetime == "2021-05-04T03:02:01"
    assert back.photos[1].source == str((src / "b.png").resolve())
    assert back == result.run
    # An apply run's transforms.json can be applied again, giving the same frames.
    again = apply(tmp_path / "out" / "transforms.json", tmp_path / "again")
    assert [p.output for p in again.aligned] == ["ref.png", "b.png"]
    for name in ("ref.png", "b.png"):
        assert np.array_equal(load(tmp_path / "again" / name), load(tmp_path / "out" / name))


def test_a_pending_entry_of_an_interrupted_run_is_skipped_with_its_reason(
    tmp_path: Path, photos: dict[str, np.ndarray]
) -> None:
    src = tmp_path / "photos"
    transforms = transforms_file(
        tmp_path / "run",
        [
            record("ref.png", src / "ref.png", np.eye(3), status="reference", output="ref.jpg"),
            record("b.png", src / "b.png", None, status="pending"),
        ],
    )
    result = apply(transforms, tmp_path / "out")
    assert result.exit_code == 1
    assert [r.name for r in result.aligned] == ["ref.png"]
    assert [(r.name, r.reason) for r in result.skipped] == [
        ("b.png", "never registered (the run that wrote this file was interrupted)")
    ]
