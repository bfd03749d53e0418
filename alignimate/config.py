"""TOML presets (``--config FILE``) and how they merge with command-line flags.

A config file has one table per command (``[register]``, ``[faces]``, ``[animate]``). Every key it may
hold is declared in :data:`SCHEMA` with its type, default, meaning and valid values (a set of
choices or a range); docs/configuration.md is the human-readable copy of that table and a test keeps
the two in step. Precedence, highest first: command-line flag, config file, built-in default.

The same declaration checks every value, wherever it comes from: a config file (the message names
the file and the key), a flag (it names the flag, e.g. ``--fps``) and the Python API (it names the
argument), all before any work starts. A config file is untrusted input: it is read as UTF-8 TOML
of at most 1 MiB, and any problem is a :class:`ConfigError` (exit status 2), never a traceback.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignimate.errors import UsageError
from alignimate.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_RANGE

__all__ = ["SCHEMA", "ConfigError", "Option", "check_values", "flag_name", "load_config", "resolve"]

_MAX_CONFIG_BYTES = 1 << 20


class ConfigError(UsageError):
    """A config file or option value that cannot be used; the message names the file, flag or key
    and the reason."""


@dataclass(frozen=True)
class Option:
    """One configurable key: its Python type, built-in default, a one-line meaning, and its valid
    values: ``choices`` (for text) or an inclusive ``bounds`` range (for numbers)."""

    type: type | tuple[type, ...]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    bounds: tuple[float, float] | None = None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not valid for this option (type, choices, range), or None."""
        expected = self.type if isinstance(self.type, tuple) else (self.type,)
        # bool is an int subclass in Python; a TOML `true` must not pass as a number.
        wrong_bool = isinstance(value, bool) and bool not in expected
        if wrong_bool or not isinstance(value, expected):
            names = " or ".join(t.__name__ for t in expected)
            return f"must be {names}, got {value!r}"
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            return f"must be a list of names (text), got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        if self.bounds is not None and not isinstance(value, bool):
            low, high = self.bounds
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                return f"must be between {low:g} and {high:g}, got {value!r}"
        return None

    def describe(self) -> str:
        """The valid values, for docs: ``a | b | c`` or ``0.1 to 120``."""
        if self.choices is not None:
            return " | ".join(self.choices)
        if self.bounds is not None:
            return " to ".join(f"{b:,}" if isinstance(b, int) else f"{b:g}" for b in self.bounds)
        return ""


_ANIMATE = {
    "fps": Option(
        (int, float), 10, "frames per second of the animation (a GIF plays at most 50)", bounds=(0.1, 120)
    ),
    "hold_first": Option((int, float), 0.0, "seconds to hold the first frame", bounds=(0, 60)),
    "hold_last": Option((int, float), 0.0, "seconds to hold the last frame", bounds=(0, 60)),
    "crossfade": Option(int, 0, "blended frames inserted between consecutive photos", bounds=(0, 100)),
    "caption": Option(str, "none", "date | name | index | age:YYYY-MM-DD | none"),
    "caption_format": Option(str, "%Y-%m-%d", "strftime format for date captions"),
    "boomerang": Option(bool, False, "play forwards then backwards"),
    "quality": Option(
        (int, float),
        75,
        "encoder quality, 0 (worst) to 100 (best); 75 is x264's default crf 23",
        bounds=(0, 100),
    ),
    "scale": Option(
        (int, float),
        1.0,
        "resize factor applied to every frame (frames stay at most 8192 px)",
        bounds=(0.01, 4),
    ),
}

_REGISTER = {
    "mode": Option(str, "pixels", "pixels | body | faces | keypoints | masks: what is registered"),
    "model": Option(
        str,
        "similarity",
        "the motion model",
        choices=("translation", "rigid", "similarity", "affine", "homography"),
    ),
    "reference": Option(str, "first", "first | middle | auto | path of the reference photo"),
    "size": Option(
        int, 512, "long side of the working resolution used for registration, pixels", bounds=(32, 4096)
    ),
    "loss": Option(
        str,
        "auto",
        "what registration minimises (auto: zncc for photos, mse for heatmaps)",
        choices=("auto", "zncc", "mse", "l1", "charbonnier", "ssim"),
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
        bounds=(0, 4096),
    ),
    "crop": Option(
        str, "common", "common: crop to the area every frame covers; none", choices=("common", "none")
    ),
    "background": Option(
        str,
        "black",
        "fill outside the warped photo",
        choices=("black", "white", "blur", "transparent"),
    ),
    "sort": Option(str, "date", "date: EXIF DateTimeOriginal, then name; name", choices=("date", "name")),
    "recursive": Option(bool, False, "also read photos in sub-folders"),
    "device": Option(str, "auto", "auto | cpu | cuda | cuda:N"),
    "batch_size": Option(int, 16, "photos registered together in one batch", bounds=(1, 1024)),
    "max_pixels": Option(
        int,
        DEFAULT_MAX_PIXELS,
        "decompression budget: photos with more pixels are skipped unread",
        bounds=MAX_PIXELS_RANGE,
    ),
}

_FACES = {
    "identity": Option(str, "auto", "auto | largest | path of a reference photo of the person"),
    "max_yaw": Option(
        (int, float), 0.35, "largest accepted yaw asymmetry (0 frontal, 1 profile)", bounds=(0, 1)
    ),
    "max_roll": Option((int, float), 30.0, "largest accepted head roll, degrees", bounds=(0, 180)),
    "max_pitch": Option(
        (int, float),
        0.3,
        "largest accepted nod (looking up or down): nose height off its frontal value",
        bounds=(0, 1),
    ),
    "template": Option(
        str, "eyes", "where the landmarks go on the canvas", choices=("eyes", "arcface", "ffhq")
    ),
    "output_size": Option(int, 768, "side of the square output canvas, pixels", bounds=(64, 8192)),
    "refine": Option(
        str,
        "none",
        "gradient-descent refinement after the closed-form fit",
        choices=("none", "heatmaps"),
    ),
    "every": Option(
        str, "all", "keep at most one photo per period", choices=("all", "day", "week", "month")
    ),
    "dedupe": Option(bool, False, "drop near-duplicate consecutive photos"),
    "smooth": Option(
        (int, float), 0.0, "temporal smoothing sigma of the transforms, in frames", bounds=(0, 100)
    ),
    "detect_size": Option(
        int, 960, "long side of the working copy used for face detection, pixels", bounds=(64, 4096)
    ),
    "sort": Option(str, "date", "date: EXIF DateTimeOriginal, then name; name", choices=("date", "name")),
    "device": Option(str, "auto", "auto | cpu | cuda | cuda:N"),
    "max_pixels": Option(
        int,
        DEFAULT_MAX_PIXELS,
        "decompression budget: photos with more pixels are skipped unread",
        bounds=MAX_PIXELS_RANGE,
    ),
}

SCHEMA: dict[str, dict[str, Option]] = {"register": _REGISTER, "faces": _FACES, "animate": _ANIMATE}


def flag_name(key: str) -> str:
    """The command-line flag of a config key: ``hold_last`` -> ``--hold-last``."""
    return "--" + key.replace("_", "-")


def check_values(section: str, values: Mapping[str, Any], *, style: str = "argument") -> None:
    """Check every value of ``section`` present in ``values`` against the schema; raises
    :class:`ConfigError` naming the first bad one as a ``"flag"`` (``--fps``) or ``"argument"``
    (``fps``)."""
    for key, option in SCHEMA[section].items():
        if key in values and values[key] is not None:
            problem = option.problem(values[key])
            if problem is not None:
                name = flag_name(key) if style == "flag" else key
                raise ConfigError(f"{name} {problem}")


def load_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and validate a TOML preset; returns ``{section: {key: value}}`` with only the keys it sets.

    Raises :class:`ConfigError` naming the file and the problem (missing or unreadable file, not
    UTF-8, TOML syntax, unknown section or key, wrong type or value out of range)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_CONFIG_BYTES + 1)
        if len(raw) > _MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {_MAX_CONFIG_BYTES >> 20} MiB; not a config file")
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8)") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config file") from None
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        raise ConfigError(f"{path}: not a usable config file ({err})") from None
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
            problem = options[key].problem(value)
            if problem is not None:
                raise ConfigError(f"{path}: [{section}] {key} {problem}")
        config[section] = dict(values)
    return config


def resolve(
    section: str, flags: Mapping[str, Any], config: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """Merge one section: a flag that is not ``None`` wins, then the config file, then the default.

    Flags are checked against the schema here (a :class:`ConfigError` names the flag); config
    values were checked when the file was loaded."""
    options = SCHEMA[section]
    check_values(section, {k: v for k, v in flags.items() if k in options}, style="flag")
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
