"""Command-line interface. It only parses arguments, merges them with ``--config`` presets and
delegates to :mod:`alignimate.pipeline`; no image work happens here.

Exit status (all commands): 0 success, 1 some photos were skipped (the rest were written),
2 usage error (bad flag, missing folder, bad config).
"""

from __future__ import annotations

from pathlib import Path

import typer

from alignimate import __version__
from alignimate.config import ConfigError, load_config, resolve

app = typer.Typer(
    name="alignimate",
    help=(
        "Align photo series (faces, bodies, whole scenes) onto one reference and turn them into "
        "animations.\n\nExamples:\n\n"
        "  alignimate faces ~/selfies -o timeline.mp4\n\n"
        "  alignimate register ~/bump --mode body --out aligned/\n\n"
        "  alignimate animate aligned/ -o bump.gif --fps 6"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(
    help="List, locate and download the model weights alignimate uses.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE = 0, 1, 2


def _fail_usage(message: str) -> None:
    typer.echo(f"alignimate: error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _load(config: Path | None) -> dict:
    if config is None:
        return {}
    try:
        return load_config(config)
    except ConfigError as err:
        _fail_usage(str(err))
    return {}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"alignimate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """alignimate: photo series in, steady animation out."""


def _not_yet(command: str) -> None:
    _fail_usage(f"'{command}' is not available in this build yet (see README: status).")


@app.command(
    help=(
        "Register every photo in DIR onto one reference and write aligned frames, transforms.json "
        "and report.csv to OUT.\n\nExamples:\n\n"
        "  alignimate register photos/ --out aligned/\n\n"
        "  alignimate register bump/ --out aligned/ --mode body --reference middle\n\n"
        "  alignimate register scans/ --out aligned/ --model homography --crop none"
    )
)
def register(
    folder: Path = typer.Argument(..., help="Folder of photos."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for aligned frames and reports."),
    mode: str = typer.Option(None, help="pixels | body | faces | keypoints | masks."),
    model: str = typer.Option(None, help="translation | rigid | similarity | affine | homography."),
    reference: str = typer.Option(None, help="first | middle | auto | PATH of the reference photo."),
    size: int = typer.Option(None, help="Long side of the working resolution, pixels."),
    crop: str = typer.Option(None, help="common (area every frame covers) | none."),
    background: str = typer.Option(None, help="black | white | blur | transparent."),
    sort: str = typer.Option(None, help="date | name."),
    device: str = typer.Option(None, help="auto | cpu | cuda."),
    batch_size: int = typer.Option(None, help="Photos registered together."),
    config: Path = typer.Option(None, "--config", help="TOML preset (see configs/)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output instead of resuming."),
) -> None:
    resolve("register", locals(), _load(config))
    _not_yet("register")


@app.command(
    help=(
        "Re-apply saved transforms to the same photos or to other versions of them (e.g. full-size "
        "exports of the proxies that were registered).\n\nExample:\n\n"
        "  alignimate apply aligned/transforms.json --out full/ --images exports/"
    )
)
def apply(
    transforms: Path = typer.Argument(..., help="transforms.json written by register or faces."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    images: Path = typer.Option(None, help="Folder with other versions of the same photos."),
) -> None:
    _not_yet("apply")


@app.command(
    help=(
        "Turn a folder of aligned frames into an MP4, WebM or GIF.\n\nExamples:\n\n"
        "  alignimate animate aligned/ -o timeline.mp4 --fps 12 --hold-last 2\n\n"
        "  alignimate animate aligned/ -o timeline.gif --caption date"
    )
)
def animate(
    frames: Path = typer.Argument(..., help="Folder of frames (order from transforms.json when present)."),
    output: Path = typer.Option(..., "--output", "-o", help="out.mp4, out.webm or out.gif."),
    fps: float = typer.Option(None, help="Frames per second."),
    hold_first: float = typer.Option(None, help="Seconds to hold the first frame."),
    hold_last: float = typer.Option(None, help="Seconds to hold the last frame."),
    crossfade: int = typer.Option(None, help="Blended frames between photos."),
    caption: str = typer.Option(None, help="date | name | index | age:YYYY-MM-DD | none."),
    config: Path = typer.Option(None, "--config", help="TOML preset (see configs/)."),
) -> None:
    resolve("animate", locals(), _load(config))
    _not_yet("animate")


@app.command(
    help=(
        "Make a face timeline: find the person who appears in most photos, drop profile shots, hold "
        "the face on fixed eye positions and animate.\n\nExamples:\n\n"
        "  alignimate faces selfies/ -o timeline.mp4\n\n"
        "  alignimate faces selfies/ -o timeline.gif --every week --caption age:2020-03-01"
    )
)
def faces(
    folder: Path = typer.Argument(..., help="Folder of photos."),
    output: Path = typer.Option(..., "--output", "-o", help="timeline.mp4, .webm or .gif."),
    identity: str = typer.Option(None, help="auto | largest | PATH of a reference photo."),
    config: Path = typer.Option(None, "--config", help="TOML preset (see configs/)."),
) -> None:
    resolve("faces", locals(), _load(config))
    _not_yet("faces")


@models_app.command("list", help="List the models alignimate can use, with size and where they are.")
def models_list() -> None:
    _not_yet("models list")


@models_app.command("path", help="Print where a model's weights are looked for.")
def models_path(name: str = typer.Argument(..., help="Model name (see `alignimate models list`).")) -> None:
    _not_yet("models path")


@models_app.command("download", help="Download a model's weights (needs internet).")
def models_download(
    name: str = typer.Argument(..., help="Model name (see `alignimate models list`)."),
) -> None:
    _not_yet("models download")


def main() -> None:
    """Console-script entry point."""
    app()
