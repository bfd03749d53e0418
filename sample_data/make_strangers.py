"""Rebuild sample_data/strangers/: photos of real people other than the face timeline's astronaut,
for the identity tests and benchmarks/identity.py. Sources and licences: sample_data/README.md.

The sources ship inside two packages on PyPI; fetch them with pip, unpack, and point this script at
them (it does not import alignimate):

    pip download --no-deps --no-binary :all: face_recognition==1.3.0   # sdist: tests/test_images/
    pip download --no-deps --only-binary :all: matplotlib              # wheel: mpl-data/sample_data/
    python sample_data/make_strangers.py --face-recognition DIR --matplotlib DIR [--out DIR]

``--face-recognition`` is the unpacked sdist's folder (it holds ``tests/test_images``),
``--matplotlib`` the unpacked wheel's (it holds ``matplotlib/mpl-data/sample_data``). Every output is
a crop of one source photo, resized with Lanczos and saved as a JPEG of quality 85 without
metadata but with a comment naming its source, except ``group_01.jpg``: a collage of three other
crops of these photos side by side on one grey canvas (a stand-in for a group photo of strangers:
no public-domain group photo ships in a package).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

SOURCES = {
    "obama": ("fr", "tests/test_images/obama.jpg", "Official White House Photo by Pete Souza"),
    "obama3": ("fr", "tests/test_images/obama3.jpg", "Official White House Photo by Pete Souza"),
    "obama2": ("fr", "tests/test_images/obama2.jpg", "Official White House Photo by Pete Souza"),
    "biden": ("fr", "tests/test_images/biden.jpg", "Official White House Photo by Pete Souza"),
    "hopper": (
        "mpl",
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "Grace Hopper, US Navy portrait (Wikimedia Commons File:Grace_Hopper.jpg)",
    ),
}

# name: (source, crop box (x0, y0, x1, y1) in source pixels, long side of the output)
SINGLES = {
    "obama_01.jpg": ("obama", (0, 0, 910, 1137), 640),
    "obama_02.jpg": ("obama3", (300, 0, 1250, 1180), 640),
    "biden_01.jpg": ("biden", (120, 0, 970, 1060), 640),
    "hopper_01.jpg": ("hopper", (0, 0, 512, 600), 600),
}
# Head and shoulders of three people for the collage, each scaled to GROUP_HEIGHT pixels high.
GROUP = [
    ("biden", (330, 60, 820, 760)),
    ("hopper", (100, 40, 430, 520)),
    ("obama2", (120, 120, 560, 750)),
]
GROUP_HEIGHT = 420
QUALITY = 85


def _source(name: str, roots: dict[str, Path]) -> tuple[Image.Image, str]:
    root_key, relative, credit = SOURCES[name]
    image = Image.open(roots[root_key] / relative).convert("RGB")
    return image, f"{credit}; crop of {relative}"


def _save(image: Image.Image, path: Path, comment: str) -> None:
    image.save(path, quality=QUALITY, optimize=True, comment=comment.encode("ascii"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--face-recognition", type=Path, required=True, help="unpacked face_recognition sdist"
    )
    parser.add_argument("--matplotlib", type=Path, required=True, help="unpacked matplotlib wheel")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "strangers")
    args = parser.parse_args()
    roots = {"fr": args.face_recognition, "mpl": args.matplotlib}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (source, box, long_side) in SINGLES.items():
        image, comment = _source(source, roots)
        crop = image.crop(box)
        scale = long_side / max(crop.size)
        size = (round(crop.width * scale), round(crop.height * scale))
        _save(crop.resize(size, Image.Resampling.LANCZOS), args.out / name, comment)
    parts, credits = [], []
    for source, box in GROUP:
        image, comment = _source(source, roots)
        crop = image.crop(box)
        width = round(crop.width * GROUP_HEIGHT / crop.height)
        parts.append(crop.resize((width, GROUP_HEIGHT), Image.Resampling.LANCZOS))
        credits.append(comment)
    gap = 24
    canvas = Image.new("RGB", (sum(p.width for p in parts) + gap * (len(parts) + 1), GROUP_HEIGHT + 2 * gap))
    canvas.paste((96, 96, 96), (0, 0, canvas.width, canvas.height))
    x = gap
    for part in parts:
        canvas.paste(part, (x, gap))
        x += part.width + gap
    _save(canvas, args.out / "group_01.jpg", "collage: " + " | ".join(credits))
    print(f"wrote {len(SINGLES) + 1} photos to {args.out}")


if __name__ == "__main__":
    main()
