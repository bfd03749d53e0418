"""Typed settings: one frozen dataclass per job, whose field defaults are the only defaults.

Each field is declared with :func:`setting`: its default, a one-line meaning, and its valid values
(``choices`` for text or a few allowed integers, an inclusive ``bounds`` range for numbers).
Everything else is derived from these declarations, so a new option is written once:

- the config-file schema and its checks (:data:`alignimate.config.SCHEMA`);
- the command-line flags of ``register``, ``faces`` and ``animate`` (:mod:`alignimate.cli`);
- the table in docs/configuration.md (a test keeps it in step);
- the keyword arguments of the Python API (``align_folder(..., model="homography")``), checked by
  :meth:`Settings.with_options`.

A settings object holds only what changes the result of a job; how it runs (threads, progress,
logging, the output folder's overwrite rule) stays a plain argument of the job function.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from alignimate.errors import UsageError
from alignimate.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_RANGE

__all__ = [
    "FACES_ANIMATION",
    "MATCH_COLORS",
    "AnimateSettings",
    "ApplySettings",
    "DatasetFacesSettings",
    "FacesSettings",
    "RegisterSettings",
    "SettingInfo",
    "Settings",
    "setting",
    "setting_infos",
]

S = TypeVar("S", bound="Settings")


@dataclass(frozen=True)
class SettingInfo:
    """What a field of a settings class declares besides its default: the meaning, the valid values,
    and the Python types a value may have (a TOML integer is accepted for a float field)."""

    name: str
    default: Any
    help: str
    types: tuple[type, ...]
    choices: tuple[str | int, ...] | None = None
    bounds: tuple[float, float] | None = None
    cli: tuple[str, ...] | None = None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not valid for this setting (type, choices, range), or None."""
        # bool is an int subclass in Python; a TOML `true` must not pass as a number.
        wrong_bool = isinstance(value, bool) and bool not in self.types
        if wrong_bool or not isinstance(value, self.types):
            names = " or ".join("list" if t is tuple else t.__name__ for t in self.types)
            return f"must be {names}, got {value!r}"
        if isinstance(value, (list, tuple)) and not all(isinstance(v, str) for v in value):
            return f"must be a list of names (text), got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        if self.bounds is not None and not isinstance(value, bool):
            low, high = self.bounds
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                return f"must be between {low:g} and {high:g}, got {value!r}"
        return None

    def describe(self) -> str:
        """The valid values, for docs: ``a | b | c`` or ``0.1 to 120``."""
        if self.choices is not None:
            return " | ".join(map(str, self.choices))
        if self.bounds is not None:
            return " to ".join(f"{b:,}" if isinstance(b, int) else f"{b:g}" for b in self.bounds)
        return ""

    @property
    def flag(self) -> str:
        """The command-line flag: ``hold_last`` -> ``--hold-last``."""
        return "--" + self.name.replace("_", "-")

    @property
    def flag_decls(self) -> tuple[str, ...]:
        """The Typer declarations of the flag: ``--x`` (``--x/--no-x`` for a switch), or the
        field's own (``cli=``, e.g. ``--main-face/--all-faces``)."""
        if self.cli is not None:
            return self.cli
        return (f"{self.flag}/--no-{self.flag[2:]}",) if self.types == (bool,) else (self.flag,)


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[str | int, ...] | None = None,
    bounds: tuple[float, float] | None = None,
    cli: tuple[str, ...] | None = None,
) -> Any:
    """Declare a settings field (module docstring): a dataclass field carrying its description.

    Args:
        default: the field's default, the only place it is written.
        help: one sentence for the flag's help and docs/configuration.md.
        choices: the values it may take, where it is a choice.
        bounds: ``(low, high)``, inclusive, where it is a number in a range.
        cli: its own flag declarations, where the derived ``--name`` does not read well.

    Returns:
        a :func:`dataclasses.field` with the above in its metadata (:func:`setting_infos` reads it).
    """
    return field(default=default, metadata={"help": help, "choices": choices, "bounds": bounds, "cli": cli})


_ACCEPTED: dict[Any, tuple[type, ...]] = {
    float: (int, float),
    int: (int,),
    str: (str,),
    bool: (bool,),
    tuple[str, ...]: (tuple, list),
}


def setting_infos(cls: type[Settings]) -> dict[str, SettingInfo]:
    """The declarations of a settings class, by field name, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        out[f.name] = SettingInfo(
            name=f.name,
            default=f.default,
            help=f.metadata["help"],
            types=_ACCEPTED[hints[f.name]],
            choices=f.metadata["choices"],
            bounds=f.metadata["bounds"],
            cli=f.metadata.get("cli"),
        )
    return out


class Settings:
    """Base of the settings classes: validation and building from keyword options."""

    section: ClassVar[str]

    def __post_init__(self) -> None:
        # TOML and the command line give lists; a frozen settings object holds tuples.
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    def problems(self) -> list[tuple[str, str]]:
        """``(field, problem)`` for every field whose value is not valid."""
        infos = setting_infos(type(self))
        found = []
        for name, info in infos.items():
            problem = info.problem(getattr(self, name))
            if problem is not None:
                found.append((name, problem))
        return found

    def check(self, *, style: str = "argument") -> None:
        """Raise :class:`~alignimate.errors.UsageError` naming the first invalid field, if any.

        Args:
            style: how the error names the field: ``"argument"`` (``fps``) or ``"flag"`` (``--fps``).
        """
        for name, problem in self.problems():
            shown = "--" + name.replace("_", "-") if style == "flag" else name
            raise UsageError(f"{shown} {problem}")

    @classmethod
    def with_options(cls: type[S], base: S | None, options: Mapping[str, Any]) -> S:
        """``base`` with ``options`` replacing fields, checked.

        Args:
            base: the settings to start from (None: the class's defaults).
            options: field name -> value. None leaves the field as it is (as a flag that was not
                given); a path is taken as its text (``source=Path(...)``).

        Returns:
            the new settings. An unknown name or a bad value is a
            :class:`~alignimate.errors.UsageError` naming it.
        """
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        start = base if base is not None else cls()
        given = {
            k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in options.items() if v is not None
        }
        result = dataclasses.replace(start, **given)  # type: ignore[type-var]
        result.check()
        return result


@dataclass(frozen=True)
class AnimateSettings(Settings):
    """How frames become an animation (``alignimate animate``, and the animation of ``faces``)."""

    section: ClassVar[str] = "animate"

    fps: float = setting(
        10.0, "frames per second of the animation (a GIF plays at most 50)", bounds=(0.1, 120)
    )
    hold_first: float = setting(0.0, "seconds to hold the first frame", bounds=(0, 60))
    hold_last: float = setting(0.0, "seconds to hold the last frame", bounds=(0, 60))
    crossfade: int = setting(0, "blended frames inserted between consecutive photos", bounds=(0, 100))
    caption: str = setting("none", "date | name | index | age:YYYY-MM-DD | none")
    caption_format: str = setting(
        "",
        "caption format: strftime for date captions, a template with {name}, {index} or {age} for the "
        "others; empty: the caption's own default (dates as %Y-%m-%d)",
    )
    boomerang: bool = setting(False, "play forwards then backwards")
    quality: float = setting(
        75.0, "encoder quality, 0 (worst) to 100 (best); 75 is x264's default crf 23", bounds=(0, 100)
    )
    scale: float = setting(
        1.0, "resize factor applied to every frame (frames stay at most 8192 px)", bounds=(0.01, 4)
    )


# A face timeline's own animation defaults: slower, with the ends held and dated.
FACES_ANIMATION = AnimateSettings(fps=8.0, hold_first=0.5, hold_last=1.5, caption="date")

MATCH_COLORS = ("none", "gain", "histogram")
_MATCH_COLORS = setting(
    "none",
    "make exposure and white balance consistent across frames, keeping slow changes: none | gain "
    "(per-channel gain and offset) | histogram (histogram matching), against the reference frame",
    choices=MATCH_COLORS,
)
_VIDEO_EVERY = setting(1, "video input: use every N-th frame", bounds=(1, 1_000_000))
_SAMPLE_FPS = setting(
    0.0, "video input: take this many frames per second instead (0: use video_every)", bounds=(0, 1000)
)
_MAX_YAW = setting(0.35, "largest accepted yaw asymmetry (0 frontal, 1 profile)", bounds=(0, 1))
_MAX_ROLL = setting(30.0, "largest accepted head roll, degrees", bounds=(0, 180))
_MAX_PITCH = setting(
    0.3, "largest accepted nod (looking up or down): nose height off its frontal value", bounds=(0, 1)
)
_LANDMARKS = setting(
    5,
    "landmarks the fit uses: 5 (MTCNN's) | 68 (dlib's 68-point model, reduced to the FFHQ "
    "recipe's points; with template ffhq the exact FFHQ crop; its training data forbids "
    "commercial use)",
    choices=(5, 68),
)
_FACE_DETECT_SIZE = setting(
    960, "long side of the working copy used for face detection, pixels", bounds=(64, 4096)
)
_SORT = setting("date", "date: EXIF DateTimeOriginal, then name; name", choices=("date", "name"))
_DEVICE = setting("auto", "auto | cpu | cuda | cuda:N")
_MAX_PIXELS = setting(
    DEFAULT_MAX_PIXELS,
    "decompression budget: photos with more pixels are skipped unread",
    bounds=MAX_PIXELS_RANGE,
)


@dataclass(frozen=True)
class RegisterSettings(Settings):
    """What ``alignimate register`` (:func:`alignimate.pipeline.align_folder`) does."""

    section: ClassVar[str] = "register"

    mode: str = setting(
        "pixels",
        "what is registered: pixels (whole image) | body (main person) | faces (main face) | "
        "keypoints:FILE (JSON/CSV points) | masks:DIR (one mask PNG per photo)",
    )
    model: str = setting(
        "similarity",
        "the motion model",
        choices=("translation", "rigid", "similarity", "affine", "homography"),
    )
    reference: str = setting("first", "first | middle | auto | path of the reference photo")
    size: int = setting(
        512, "long side of the working resolution used for registration, pixels", bounds=(32, 4096)
    )
    loss: str = setting(
        "auto",
        "what registration minimises (auto: zncc for photos, mse for heatmaps)",
        choices=("auto", "zncc", "mse", "l1", "charbonnier", "ssim"),
    )
    source: str = setting("", "keypoint file (JSON/CSV) for --mode keypoints, mask folder for --mode masks")
    keypoints: tuple[str, ...] = setting(
        (),
        "keypoint names to align on; empty: the mode's default (body: left_ear, left_shoulder, "
        "left_hip; faces: the 5 landmarks; keypoints: the names of the reference photo's entry)",
    )
    detect_size: int = setting(
        0,
        "long side of the detector's working copy, pixels; 0: the mode's default (body 800, faces 960)",
        bounds=(0, 4096),
    )
    crop: str = setting(
        "common", "common: crop to the area every frame covers; none", choices=("common", "none")
    )
    background: str = setting(
        "black",
        "fill outside the warped photo; person: also outside the subject's mask (--mode body or "
        "masks:DIR), filled as --person-fill says",
        choices=("black", "white", "blur", "transparent", "person"),
    )
    person_fill: str = setting(
        "black",
        "--background person: what replaces everything but the subject (edge feathered; "
        "transparent writes PNG frames)",
        choices=("black", "white", "blur", "transparent"),
    )
    sort: str = _SORT
    recursive: bool = setting(False, "also read photos in sub-folders")
    match_colors: str = _MATCH_COLORS
    video_every: int = _VIDEO_EVERY
    sample_fps: float = _SAMPLE_FPS
    device: str = _DEVICE
    batch_size: int = setting(16, "photos registered together in one batch", bounds=(1, 1024))
    max_pixels: int = _MAX_PIXELS


@dataclass(frozen=True)
class FacesSettings(Settings):
    """What ``alignimate faces`` (:func:`alignimate.pipeline.face_timeline.make_face_timeline`) does
    before the animation (whose settings are an :class:`AnimateSettings`, default
    :data:`FACES_ANIMATION`)."""

    section: ClassVar[str] = "faces"

    identity: str = setting("auto", "auto | largest | path of a reference photo of the person")
    max_yaw: float = _MAX_YAW
    max_roll: float = _MAX_ROLL
    max_pitch: float = _MAX_PITCH
    template: str = setting(
        "eyes", "where the landmarks go on the canvas", choices=("eyes", "arcface", "ffhq")
    )
    landmarks: int = _LANDMARKS
    output_size: int = setting(768, "side of the square output canvas, pixels", bounds=(64, 8192))
    refine: str = setting(
        "none", "gradient-descent refinement after the closed-form fit", choices=("none", "heatmaps")
    )
    every: str = setting("all", "keep at most one photo per period", choices=("all", "day", "week", "month"))
    dedupe: bool = setting(False, "drop near-duplicate consecutive photos")
    match_colors: str = _MATCH_COLORS
    video_every: int = _VIDEO_EVERY
    sample_fps: float = _SAMPLE_FPS
    smooth: float = setting(0.0, "temporal smoothing sigma of the transforms, in frames", bounds=(0, 100))
    detect_size: int = _FACE_DETECT_SIZE
    sort: str = _SORT
    device: str = _DEVICE
    max_pixels: int = _MAX_PIXELS


@dataclass(frozen=True)
class ApplySettings(Settings):
    """What ``alignimate apply`` (:func:`alignimate.pipeline.apply_transforms`) changes when it
    writes the frames of a transforms.json again; ``registered`` keeps the choice of the run that
    wrote it."""

    section: ClassVar[str] = "apply"

    background: str = setting(
        "registered",
        "fill outside the warped photo (registered: as the run that wrote the transforms)",
        choices=("registered", "black", "white", "blur", "transparent"),
    )
    match_colors: str = setting(
        "registered",
        "colour matching across frames (registered: as the run that wrote the transforms)",
        choices=("registered", *MATCH_COLORS),
    )
    device: str = _DEVICE
    max_pixels: int = _MAX_PIXELS


@dataclass(frozen=True)
class DatasetFacesSettings(Settings):
    """What ``alignimate dataset faces`` (:func:`alignimate.dataset.faces`) makes: which faces, and
    the crops. How it runs (engine, workers, device) stays a plain argument."""

    section: ClassVar[str] = "dataset"

    size: int = setting(512, "side of the square crops, pixels", bounds=(16, 4096))
    template: str = setting(
        "ffhq",
        "where the face goes in the crop (ffhq-quad: the FFHQ recipe's own square of each face)",
        choices=("ffhq", "arcface", "eyes", "ffhq-quad"),
    )
    landmarks: int = _LANDMARKS
    main_face: bool = setting(
        False,
        "keep only the largest face of each photo (else every face that passes)",
        cli=("--main-face/--all-faces",),
    )
    frontal: bool = setting(True, "skip faces that are not frontal (max_yaw, max_roll, max_pitch)")
    max_yaw: float = _MAX_YAW
    max_roll: float = _MAX_ROLL
    max_pitch: float = _MAX_PITCH
    min_face: int = setting(
        64, "smallest face kept: longer side of its box, photo pixels", bounds=(1, 100_000)
    )
    max_distance: float = setting(
        0.0,
        "largest cosine distance to the --identity face; 0: the descriptor's calibrated one",
        bounds=(0, 2),
    )
    embed: bool = setting(False, "store every face's embedding in the manifest")
    image_format: str = setting("jpg", "the crop files", choices=("jpg", "png"), cli=("--format",))
    quality: int = setting(95, "JPEG quality of the crops", bounds=(1, 100))
    background: str = setting("black", "outside the photo", choices=("black", "white", "blur"))
    shard_size: int = setting(1000, "photos per crop folder", bounds=(1, 10_000_000))
    detect_size: int = _FACE_DETECT_SIZE
    max_pixels: int = _MAX_PIXELS
    video_every: int = _VIDEO_EVERY
    sample_fps: float = _SAMPLE_FPS
