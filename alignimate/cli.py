"""Command-line interface. It only parses arguments, merges them with ``--config`` presets and
delegates to :mod:`alignimate.pipeline`; no image work happens here.

Exit status (all commands, :mod:`alignimate.errors`): 0 success, 1 some photos were skipped (the rest
were written), 2 usage error or refused request (bad flag, missing folder, bad config, output folder
in the way), 3 failure (an I/O error such as a full disk, or an internal error), 130 interrupted.
Every error is one line on stderr; the traceback only with ``--debug`` or ``ALIGNIMATE_DEBUG=1``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import json
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer

from alignimate import __version__
from alignimate.config import load_config, resolve_settings
from alignimate.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_USAGE,
    RunError,
    UsageError,
)
from alignimate.settings import (
    FACES_ANIMATION,
    AnimateSettings,
    ApplySettings,
    DatasetFacesSettings,
    FacesSettings,
    RegisterSettings,
    SettingInfo,
    Settings,
    setting_infos,
)

app = typer.Typer(
    name="alignimate",
    help=(
        "Align photo series (faces, bodies, whole scenes) onto one reference and turn them into "
        "animations.\n\nExamples:\n\n"
        "  alignimate register ~/bump --out aligned/\n\n"
        "  alignimate animate aligned/ -o bump.gif --fps 6\n\n"
        "  alignimate faces ~/selfies -o timeline.mp4"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(
    help="List, locate and download the model weights alignimate uses.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
dataset_app = typer.Typer(
    help="Build datasets from folders of photos (aligned face crops and a Parquet manifest).",
    no_args_is_help=True,
)
app.add_typer(dataset_app, name="dataset")

__all__ = ["EXIT_OK", "app", "main"]

_DEBUG = {"on": False}
F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=Settings)

QUIET = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.")
JSON = typer.Option(False, "--json", help="Print a JSON summary on stdout (for scripts).")
CONFIG = typer.Option(None, "--config", help="TOML preset (see configs/ and docs/configuration.md).")
MAX_PIXELS = typer.Option(
    None,
    "--max-pixels",
    help="Decompression budget: photos with more pixels are skipped unread (default 89478485).",
)
OFFLINE = typer.Option(
    False,
    "--offline",
    help="Never download model weights (same as ALIGNIMATE_OFFLINE=1): a model that is not on this "
    "machine is then a clear error, or for identity a documented fallback. Without it, a missing model "
    "is downloaded once, on first use, into the torch hub cache.",
)
EXCLUDE = typer.Option(
    None,
    "--exclude",
    help="Exclusion file saved by the review page (alignimate review): the photos it names are left "
    "out (listed with the reason 'excluded by review' where the command writes a report).",
)
THREADS = typer.Option(
    None,
    "--threads",
    help="CPU threads to compute on: PyTorch's threads, and for register and apply also the photos "
    "processed at once (default: PyTorch's own choice or $OMP_NUM_THREADS, and one photo per core, at "
    "most 4). Use 1 when running several alignimate commands at once.",
)
NO_CACHE = typer.Option(False, "--no-cache", help="Neither read nor write the detection cache.")

# The options job commands share, by parameter name, in the order their help lists them: a command
# names the ones it takes (_job_options) and reads them from its _Job; --quiet and --json are in all.
_SHARED_OPTIONS: dict[str, tuple[type, Any]] = {
    "no_cache": (bool, NO_CACHE),
    "offline": (bool, OFFLINE),
    "exclude": (Path, EXCLUDE),
    "threads": (int, THREADS),
    "config": (Path, CONFIG),
    "quiet": (bool, QUIET),
    "as_json": (bool, JSON),
}
_ALWAYS_SHARED = ("quiet", "as_json")


def _debugging() -> bool:
    return _DEBUG["on"] or os.environ.get("ALIGNIMATE_DEBUG", "") not in ("", "0")


def _fail(code: int, message: str) -> None:
    if _debugging():
        traceback.print_exc()
    typer.echo(f"alignimate: {message}", err=True)
    raise typer.Exit(code)


def _guarded(command: F) -> F:
    """Turn whatever stops a command into one line on stderr and its exit status (module docstring)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except UsageError as err:
            _fail(EXIT_USAGE, f"error: {err}")
        except RunError as err:
            _fail(EXIT_FAILURE, f"error: {err}")
        except OSError as err:
            from alignimate.pipeline.outputs import failure_from_os_error

            _fail(EXIT_FAILURE, f"error: {failure_from_os_error(err, 'use')}")
        except KeyboardInterrupt:
            _fail(EXIT_INTERRUPTED, "interrupted; what was finished is kept: rerun the command to resume")
        except Exception as err:  # an internal error: still one line, and a distinct exit status
            _fail(
                EXIT_FAILURE,
                f"internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback, and "
                f"please report it)",
            )
        return None

    return run  # type: ignore[return-value]


_CLI_TYPES: dict[tuple[type, ...], type] = {
    (int, float): float,
    (int,): int,
    (str,): str,
    (bool,): bool,
    (tuple, list): str,  # a comma-separated list of names
}


def _flag_help(info: SettingInfo) -> str:
    valid = f" ({info.describe()})" if info.choices or info.bounds else ""
    default = list(info.default) if isinstance(info.default, tuple) else info.default
    return f"{info.help}{valid}; default {default!r}."


@dataclass(frozen=True)
class _Job:
    """What a job command's shared options and settings flags asked for (:func:`_job_options`)."""

    quiet: bool
    as_json: bool
    flags: dict[str, Any]  # settings field -> flag value; None where the flag was not given
    presets: dict[str, Any]  # the --config file's sections ({} without one)
    threads: int | None = None
    exclude: Path | None = None
    use_cache: bool = True

    def settings(self, cls: type[S], base: S | None = None) -> S:
        """The command's ``cls`` settings: each field from its flag, else the ``--config`` preset,
        else ``base`` (default: the field defaults)."""
        return resolve_settings(cls, self.flags, self.presets, base=base)

    def log(self, message: str) -> None:
        """A message on stderr, unless the output is quiet or JSON."""
        if not (self.quiet or self.as_json):
            typer.echo(message, err=True)

    def reporting(self) -> dict[str, Any]:
        """A job's ``progress`` and ``log`` arguments: a bar and messages on stderr, unless the
        output is quiet or JSON."""
        return {"progress": not (self.quiet or self.as_json), "log": self.log}

    def report(self, summary: dict[str, Any], text: str) -> None:
        """Print ``summary`` as JSON with ``--json``, else ``text`` unless quiet."""
        if self.as_json:
            typer.echo(json.dumps(summary, indent=2))
        elif not self.quiet:
            typer.echo(text)

    def finish(self, result: Any, text: Callable[[dict[str, Any]], str]) -> None:
        """Report a job's result (its summary as JSON, or ``text(summary)``) and exit with its status."""
        summary = result.summary()
        self.report(summary, text(summary))
        raise typer.Exit(result.exit_code)


def _job_options(*classes: type[Settings], shared: Sequence[str] = ()) -> Callable[[F], F]:
    """Give a job command, after its own parameters, the shared options it names (keys of
    :data:`_SHARED_OPTIONS`; ``--quiet`` and ``--json`` always) and one flag per field of ``classes``
    (:mod:`alignimate.settings`). The command receives them as ``job``, a :class:`_Job`, with
    ``--threads`` and ``--offline`` already applied and the ``--config`` file read. This is how every
    settings field becomes a flag, and every shared option means the same, without being written
    again per command."""
    options = {n: _SHARED_OPTIONS[n] for n in _SHARED_OPTIONS if n in (*shared, *_ALWAYS_SHARED)}

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != "job"]
        infos: dict[str, SettingInfo] = {}
        for cls in classes:
            for name, info in setting_infos(cls).items():
                if name not in signature.parameters and name not in options:
                    infos.setdefault(name, info)
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
            for name, (annotation, option) in options.items()
        ]
        for name, info in infos.items():
            option = typer.Option(None, *info.flag_decls, help=_flag_help(info), show_default=False)
            added.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=_CLI_TYPES[info.types]
                )
            )

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name, None) for name in options}
            flags = {name: kwargs.pop(name, None) for name in infos}
            for name, value in flags.items():
                if value is not None and infos[name].types == (tuple, list):
                    flags[name] = [v.strip() for v in value.split(",") if v.strip()]
            _use_threads(given.get("threads"))
            _use_offline(bool(given.get("offline")))
            config = given.get("config")
            job = _Job(
                quiet=bool(given["quiet"]),
                as_json=bool(given["as_json"]),
                flags=flags,
                # A bad file raises ConfigError, a UsageError: the command's guard reports it (exit 2).
                presets={} if config is None else load_config(config),
                threads=given.get("threads"),
                exclude=given.get("exclude"),
                use_cache=not given.get("no_cache"),
            )
            return command(*args, job=job, **kwargs)

        parameters = own + added
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run  # type: ignore[return-value]

    return decorate


def _command(
    group: typer.Typer, name: str | None = None, *, summary: str, examples: Sequence[str] = ()
) -> Callable[[F], F]:
    """Register a command on ``group`` (under ``name``, default the function's), guarded
    (:func:`_guarded`), with a help text of ``summary`` followed by its ``examples``."""
    text = summary
    if examples:
        heading = "Examples" if len(examples) > 1 else "Example"
        text += f"\n\n{heading}:\n\n" + "\n\n".join(f"  {example}" for example in examples)

    def decorate(command: F) -> F:
        return group.command(name, help=text)(_guarded(command))

    return decorate


def _out_option(help_text: str) -> Any:
    """A job's output folder, ``--out``/``-o`` (required)."""
    return typer.Option(..., "--out", "-o", help=help_text)


def _overwrite_option(what: str) -> Any:
    """A job's ``--overwrite``, whose help is ``what`` it does and that it touches nothing else."""
    return typer.Option(False, help=f"{what} (never any other file).")


def _use_threads(threads: int | None) -> None:
    if threads is None:
        return
    if not 1 <= threads <= 256:
        raise UsageError(f"--threads must be between 1 and 256, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _use_offline(offline: bool) -> None:
    if offline:
        from alignimate.detect.weights import OFFLINE_ENV

        # The weights module reads it wherever a model is loaded; this process only.
        os.environ[OFFLINE_ENV] = "1"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"alignimate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Print the traceback of an error (also ALIGNIMATE_DEBUG=1)."
    ),
) -> None:
    """alignimate: photo series in, steady animation out."""
    _DEBUG["on"] = debug
    # Over-limit photos are reported as skipped with a reason; Pillow's own warning would be noise.
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


@_command(
    app,
    summary="Register every photo in FOLDER onto one reference and write aligned frames, "
    "transforms.json and report.csv to OUT. Rerunning with the same OUT resumes (nothing done is "
    "redone).",
    examples=(
        "alignimate register photos/ --out aligned/",
        "alignimate register scans/ --out aligned/ --model homography --crop none",
        "alignimate register bump/ --out aligned/ --mode body --config configs/body.toml",
        "alignimate register shots/ --out aligned/ --mode keypoints:points.json",
        "alignimate register photos/ --out aligned/ --config configs/pixels.toml --json",
    ),
)
@_job_options(RegisterSettings, shared=("no_cache", "offline", "exclude", "threads", "config"))
def register(
    job: _Job,
    folder: Path = typer.Argument(..., help="Folder of photos."),
    out: Path = _out_option("Output folder for aligned frames and reports."),
    overwrite: bool = _overwrite_option("Start over: delete the files an earlier run wrote in OUT"),
) -> None:
    from alignimate.pipeline import align_folder

    result = align_folder(
        folder,
        out,
        job.settings(RegisterSettings),
        workers=job.threads,
        exclude=job.exclude,
        use_cache=job.use_cache,
        overwrite=overwrite,
        **job.reporting(),
    )
    job.finish(
        result,
        lambda summary: (
            f"aligned {summary['aligned']} photos, skipped {len(summary['skipped'])}; wrote {out}"
        ),
    )


@_command(
    app,
    summary="Re-apply saved transforms to the same photos or to other versions of them (e.g. "
    "full-size exports of the proxies that were registered).",
    examples=(
        "alignimate apply aligned/transforms.json --out full/ --images exports/",
        "alignimate apply aligned/transforms.json --out white/ --background white",
    ),
)
@_job_options(ApplySettings, shared=("exclude", "threads", "config"))
def apply(
    job: _Job,
    transforms: Path = typer.Argument(..., help="transforms.json written by register or faces."),
    out: Path = _out_option("Output folder."),
    images: Path = typer.Option(None, help="Folder with other versions of the same photos (same names)."),
    overwrite: bool = _overwrite_option("Replace the files an earlier apply wrote in OUT"),
) -> None:
    from alignimate.pipeline import apply_transforms

    result = apply_transforms(
        transforms,
        out,
        job.settings(ApplySettings),
        images=images,
        workers=job.threads,
        exclude=job.exclude,
        overwrite=overwrite,
        log=job.log,
    )
    job.finish(
        result,
        lambda summary: f"wrote {summary['aligned']} frames, skipped {len(summary['skipped'])}; wrote {out}",
    )


@_command(
    app,
    summary="Turn a folder of aligned frames into an MP4, WebM or GIF (order from its "
    "transforms.json when present, else by name).",
    examples=(
        "alignimate animate aligned/ -o timeline.mp4 --fps 12 --hold-last 2",
        "alignimate animate aligned/ -o timeline.gif --caption date --max-width 480",
        "alignimate animate aligned/ -o timeline.mp4 --exclude aligned-exclusions.json",
    ),
)
@_job_options(AnimateSettings, shared=("exclude", "config"))
def animate(
    job: _Job,
    frames: Path = typer.Argument(..., help="Folder of frames."),
    output: Path = typer.Option(..., "--output", "-o", help="out.mp4, out.webm or out.gif."),
    max_width: int = typer.Option(None, help="Downscale so frames are at most this wide."),
    max_bytes: int = typer.Option(None, help="GIF only: shrink until the file fits this many bytes."),
    overwrite: bool = typer.Option(False, help="Replace an existing file at OUTPUT."),
) -> None:
    from alignimate.pipeline import animate as make_animation

    info = make_animation(
        frames,
        output,
        job.settings(AnimateSettings),
        max_width=max_width,
        max_bytes=max_bytes,
        overwrite=overwrite,
        exclude=job.exclude,
        log=job.log,
    )
    summary = {
        "output": str(info.path),
        "frames": info.n_frames,
        "size": list(info.size_hw),
        "fps": info.fps,
        "duration_s": info.duration_s,
        "bytes": info.n_bytes,
    }
    job.report(
        summary,
        f"wrote {info.path}: {info.n_frames} frames, {info.size_hw[1]}x{info.size_hw[0]}, {info.fps:g} fps",
    )


@_command(
    app,
    summary="Write OUT/review.html: one self-contained page (no server, no network) to look through "
    "the frames of a register, apply or faces run (flip-book, onion skin and difference against the "
    "reference, status, loss and reason of every photo) and mark frames to exclude; the page saves "
    "the marks as a file for `animate --exclude`.",
    examples=("alignimate review aligned/", "alignimate review timeline_frames/ --max-side 640"),
)
@_job_options()
def review(
    job: _Job,
    out: Path = typer.Argument(..., help="Output folder of register or apply; faces: its frames folder."),
    max_side: int = typer.Option(None, help="Long side of the frame copies in the page (default 384 px)."),
    threads: int = typer.Option(
        None, "--threads", help="Frames decoded at once (default: one per core, at most 4)."
    ),
) -> None:
    from alignimate.pipeline.review import DEFAULT_MAX_SIDE, write_review

    page = write_review(
        out, max_side=DEFAULT_MAX_SIDE if max_side is None else max_side, workers=threads, log=job.log
    )
    job.report({"review": str(page), "bytes": page.stat().st_size}, f"wrote {page}")


@_command(
    app,
    summary="Make a face timeline: find the person who appears in most photos, drop profile shots, "
    "hold the face on fixed eye positions and animate. The aligned frames, transforms.json, "
    "report.csv and contact_sheet.jpg go to <output stem>_frames/ (or --out-dir); rerunning resumes "
    "and only processes new photos.",
    examples=(
        "alignimate faces selfies/ -o timeline.mp4",
        "alignimate faces selfies/ -o timeline.gif --every week --caption age:2020-03-01",
    ),
)
@_job_options(FacesSettings, AnimateSettings, shared=("no_cache", "offline", "exclude", "threads", "config"))
def faces(
    job: _Job,
    folder: Path = typer.Argument(..., help="Folder of photos."),
    output: Path = typer.Option(..., "--output", "-o", help="timeline.mp4, .webm or .gif."),
    out_dir: Path = typer.Option(
        None, "--out-dir", help="Folder for the aligned frames and reports (default: <output stem>_frames/)."
    ),
    max_width: int = typer.Option(None, help="Downscale the animation so it is at most this wide."),
    overwrite: bool = typer.Option(
        False,
        help="Start over: delete the files an earlier run wrote in the frames folder (never any other "
        "file), and replace an existing OUTPUT file.",
    ),
) -> None:
    from alignimate.pipeline.face_timeline import make_face_timeline

    result = make_face_timeline(
        folder,
        output,
        job.settings(FacesSettings),
        # Animation options: flag, then the [animate] preset, then the face timeline's own defaults.
        job.settings(AnimateSettings, base=FACES_ANIMATION),
        out_dir=out_dir,
        max_width=max_width,
        exclude=job.exclude,
        use_cache=job.use_cache,
        overwrite=overwrite,
        **job.reporting(),
    )
    job.finish(
        result,
        lambda summary: (
            f"kept {summary['aligned']} photos, left out {len(summary['skipped'])}; wrote "
            f"{summary['output'] or 'no animation'} (frames, report and contact sheet in {summary['out']})"
        ),
    )


@_command(
    dataset_app,
    "faces",
    summary="Align every face of every photo under SRC (recursively) to a square crop, written under "
    "DST/crops/ with a Parquet manifest in DST/manifest/ (one row per face, and one per photo without "
    "a face). Rerunning with the same DST adds only photos not yet in the manifest.",
    examples=(
        "alignimate dataset faces photos/ --out faces_512/",
        "alignimate dataset faces photos/ --out alice/ --main-face --identity alice.jpg",
        "alignimate dataset faces photos/ --out faces/ --engine ray --address auto",
        "alignimate dataset faces clip.mp4 --out clip_faces/ --sample-fps 2",
    ),
)
@_job_options(DatasetFacesSettings, shared=("threads", "config"))
def dataset_faces(
    job: _Job,
    src: Path = typer.Argument(..., help="Folder of photos (read recursively), or a video file."),
    out: Path = _out_option("Output folder (crops, manifest)."),
    identity: Path = typer.Option(None, help="Photo of the person to keep (its largest face)."),
    engine: str = typer.Option(
        None, help="local (this process, the default) | ray (Ray Data; pip install 'alignimate[ray]')."
    ),
    address: str = typer.Option(None, help="Ray cluster address for --engine ray (default: a local Ray)."),
    workers: int = typer.Option(
        None, help="Local engine: batches processed at once (default: one per core)."
    ),
    batch_size: int = typer.Option(None, help="Photos per batch (default 8 locally, 2 under Ray on CPUs)."),
    ray_actors: int = typer.Option(None, help="Ray: detection actors (default: one per CPU, or per GPU)."),
    ray_actor_cpus: float = typer.Option(None, help="Ray: CPUs each actor asks for (default 0.75)."),
    device: str = typer.Option(None, help="auto | cpu | cuda (default cpu)."),
) -> None:
    from alignimate import dataset

    result = dataset.faces(
        src,
        out,
        job.settings(DatasetFacesSettings),
        identity=identity,
        engine=engine,
        address=address,
        workers=workers,
        batch_size=batch_size,
        device=device,
        ray_actors=ray_actors,
        ray_actor_cpus=ray_actor_cpus,
        **job.reporting(),
    )
    job.finish(
        result,
        lambda summary: (
            f"{summary['aligned']} faces aligned from {summary['photos'] - summary['known']} new photos "
            f"({summary['known']} already in the manifest, {sum(summary['skipped_photos'].values())} "
            f"skipped); wrote {out}"
        ),
    )


def _weights():
    from alignimate.detect import weights

    return weights


def _model_or_usage(name: str):
    try:
        return _weights().model_info(name)
    except ValueError as err:
        raise UsageError(str(err)) from None


@_command(
    models_app,
    "list",
    summary="List the models alignimate can use, their size and whether their weights are on this machine.",
)
def models_list(as_json: bool = JSON) -> None:
    weights = _weights()
    rows = []
    for info in weights.list_models():
        found = weights.find_model(info.name)
        rows.append(
            {
                "name": info.name,
                "description": info.description,
                "size_mb": info.size_mb,
                "present": found is not None,
                "path": str(found) if found else None,
                "url": info.url,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        size = (
            f"{row['size_mb']:.0f} MB" if row["size_mb"] else "bundled" if row["url"] is None else "size n/a"
        )
        where = row["path"] if row["present"] else "missing: alignimate models download " + row["name"]
        typer.echo(f"{row['name']:<18} {size:>9}  {row['description']}\n{'':<18} {where}")
    typer.echo("searched: " + ", ".join(str(d) for d in weights.search_dirs()))


@_command(
    models_app, "path", summary="Print the weight file alignimate would load for a model (exit 1 if missing)."
)
def models_path(name: str = typer.Argument(..., help="Model name (see `alignimate models list`).")) -> None:
    weights = _weights()
    _model_or_usage(name)
    try:
        typer.echo(str(weights.model_path(name)))
    except weights.WeightsNotFound as err:
        typer.echo(f"alignimate: {err}", err=True)
        raise typer.Exit(EXIT_SKIPPED) from None


@_command(
    models_app,
    "download",
    summary="Download a model's weights into the torch hub cache (needs internet), check the "
    "published checksum, and print the file's path and sha256.",
    examples=("alignimate models download keypointrcnn",),
)
def models_download(
    name: str = typer.Argument(..., help="Model name (see `alignimate models list`)."),
    force: bool = typer.Option(False, help="Download again even if the file exists."),
    quiet: bool = QUIET,
) -> None:
    from tqdm import tqdm

    weights = _weights()
    _model_or_usage(name)
    with tqdm(unit="B", unit_scale=True, desc=name, disable=quiet) as bar:

        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            path = weights.download(name, force=force, progress=progress)
        except weights.WeightsError as err:
            typer.echo(f"alignimate: {err}", err=True)
            raise typer.Exit(EXIT_SKIPPED) from None
    typer.echo(f"{path}\nsha256 {weights.file_sha256(path)}")


# glibc's mallopt parameters, and the sizes set: a buffer up to _MMAP_THRESHOLD comes from the heap,
# and up to _TRIM_THRESHOLD of free heap is kept for reuse.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 256 << 20, 1 << 30


def _keep_large_buffers() -> None:
    """Let glibc's malloc reuse freed full-resolution buffers instead of unmapping every one.

    By default glibc serves every buffer over 32 MB (a 12 MP frame is 36 MB) by a fresh ``mmap`` and
    unmaps it when freed, so every decoded photo and warped frame pays for faulting in zeroed pages,
    and every free for an unmapping that all threads notice: a large share of the CPU time of writing
    frames (docs/benchmarks.md, end to end). Higher mmap and trim thresholds keep such buffers in the
    heap, reused frame after frame; the price is that the peak memory of the run stays reserved until
    it ends. A process-wide setting, so the CLI, which owns its process, makes it; the library never
    does. Nothing happens on other C libraries, nor where glibc refuses a threshold."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def _exit_status(stop: SystemExit) -> int:
    """The process's exit status for ``stop``, as Python itself would give it (a message is printed to
    stderr and gives 1)."""
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code
    print(stop.code, file=sys.stderr)
    return 1


def _exit_without_teardown(status: int) -> None:
    """End the process now, skipping the interpreter's teardown, where that only costs time.

    Once torch is imported, Python's exit spends a noticeable part of a short run freeing modules
    and objects (docs/benchmarks.md, end to end), for a process that is ending anyway. Everything an
    exit needs still happens: the exit handlers run (``atexit``: Ray's shutdown, logging's flush) and
    the standard streams are flushed; the jobs have closed every file they wrote before returning.
    Only when torch is loaded and no thread that Python would wait for is still running; otherwise
    (and where this CPython lacks the hook) the process exits normally."""
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    waited_for = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if "torch" not in sys.modules or waited_for or run_exit_handlers is None:
        raise SystemExit(status)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken pipe changes nothing now
            stream.flush()
    os._exit(status)


def main() -> None:
    """Console-script entry point."""
    _keep_large_buffers()
    try:
        app()
    except SystemExit as stop:
        _exit_without_teardown(_exit_status(stop))
