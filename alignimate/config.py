"""TOML presets (``--config FILE``) and how they merge with command-line flags.

A config file has one table per command (``[register]``, ``[faces]``, ``[animate]``). Every key it may
hold is declared in :data:`SCHEMA` with its type, default and meaning; docs/configuration.md is the
human-readable copy of that table and a test keeps the two in step. Precedence, highest first:
command-line flag, config file, built-in default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA", "ConfigError", "Option", "load_config", "resolve"]


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class Option:
    """One configurable key: its Python type, built-in default and a one-line meaning."""

    type: type | tuple[type, ...]
    default: Any
    help: str


_ANIMATE = {
    "fps": Option((int, float), 10, "frames per second of the animation"),
    "hold_first": Option((int, float), 0.0, "seconds to hold the first frame"),
    "hold_last": Option((int, float), 0.0, "seconds to hold the last frame"),
    "crossfade": Option(int, 0, "blended frames inserted between consecutive photos"),
    "caption": Option(str, "none", "date | name | index | age:YYYY-MM-DD | none"),
    "caption_format": Option(str, "%Y-%m-%d", "strftime format for date captions"),
    "boomerang": Option(bool, False, "play forwards then backwards"),
    "quality": Option(
        (int, float), 75, "encoder quality, 0 (worst) to 100 (best); 75 is x264's default crf 23"
    ),
    "scale": Option((int, float), 1.0, "resize factor applied to every frame"),
}

_REGISTER = {
    "mode": Option(str, "pixels", "pixels | body | faces | keypoints | masks: what is registered"),
    "model": Option(str, "similarity", "translation | rigid | similarity | affine | homography"),
    "reference": Option(str, "first", "first | middle | auto | path of the reference photo"),
    "size": Option(int, 512, "long side of the working resolution used for registration, pixels"),
    "loss": Option(
        str, "auto", "auto | zncc | mse | l1 | charbonnier | ssim (auto: zncc for photos, mse for heatmaps)"
    ),
    "source": Option(str, "", "keypoint file (JSON/CSV) for --mode keypoints, mask folder for --mode masks"),
    "keypoints": Option(
        list,
        [],
        "keypoint names to align on; empty: the mode's default (body: left_ear, left_shoulder, "
        "left_hip; faces: the 5 landmarks; keypoints: the names of the reference photo's entry)",
    ),
    "detect_size": Option(
        int,
        0,
        "long side of the detector's working copy, pixels; 0: the mode's default (body 800, faces 960)",
    ),
    "crop": Option(str, "common", "common (crop to the area every frame covers) | none"),
    "background": Option(str, "black", "black | white | blur | transparent: fill outside the warped photo"),
    "sort": Option(str, "date", "date (EXIF DateTimeOriginal, then name) | name"),
    "recursive": Option(bool, False, "also read photos in sub-folders"),
    "device": Option(str, "auto", "auto | cpu | cuda"),
    "batch_size": Option(int, 16, "photos registered together in one batch"),
}

_FACES = {
    "identity": Option(str, "auto", "auto | largest | path of a reference photo of the person"),
    "max_yaw": Option((int, float), 0.35, "largest accepted yaw asymmetry (0 frontal, 1 profile)"),
    "max_roll": Option((int, float), 30.0, "largest accepted head roll, degrees"),
    "template": Option(str, "eyes", "ffhq | arcface | eyes: where the landmarks go on the canvas"),
    "output_size": Option(int, 768, "side of the square output canvas, pixels"),
    "refine": Option(str, "none", "heatmaps | none: gradient-descent refinement after the closed-form fit"),
    "every": Option(str, "all", "all | day | week | month: keep at most one photo per period"),
    "dedupe": Option(bool, False, "drop near-duplicate consecutive photos"),
    "smooth": Option((int, float), 0.0, "temporal smoothing sigma of the transforms, in frames"),
    "detect_size": Option(int, 960, "long side of the working copy used for face detection, pixels"),
    "sort": Option(str, "date", "date | name"),
    "device": Option(str, "auto", "auto | cpu | cuda"),
}

SCHEMA: dict[str, dict[str, Option]] = {"register": _REGISTER, "faces": _FACES, "animate": _ANIMATE}


def _check_type(path: Path, section: str, key: str, value: Any, option: Option) -> None:
    expected = option.type if isinstance(option.type, tuple) else (option.type,)
    # bool is an int subclass in Python; a TOML `true` must not pass as a number.
    wrong_bool = isinstance(value, bool) and bool not in expected
    if wrong_bool or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in expected)
        raise ConfigError(f"{path}: [{section}] {key} must be {names}, got {value!r}")


def load_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and validate a TOML preset; returns ``{section: {key: value}}`` with only the keys it sets.

    Raises :class:`ConfigError` naming the file and the problem (missing file, TOML syntax, unknown
    section or key, wrong type)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None

    config: dict[str, dict[str, Any]] = {}
    for section, values in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(sorted(SCHEMA))}")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        options = SCHEMA[section]
        for key, value in values.items():
            if key not in options:
                known = ", ".join(sorted(options))
                raise ConfigError(f"{path}: unknown key '{key}' in [{section}]; known: {known}")
            _check_type(path, section, key, value, options[key])
        config[section] = dict(values)
    return config


def resolve(
    section: str, flags: Mapping[str, Any], config: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """Merge one section: a flag that is not ``None`` wins, then the config file, then the default."""
    options = SCHEMA[section]
    from_file = (config or {}).get(section, {})
    merged: dict[str, Any] = {}
    for key, option in options.items():
        flag = flags.get(key)
        if flag is not None:
            merged[key] = flag
        elif key in from_file:
            merged[key] = from_file[key]
        else:
            merged[key] = option.default
    return merged
