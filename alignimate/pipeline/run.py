"""What every job shares (the run kernel): the result type, the job's photos, the output folder of
a resumable run, device and worker choices, the key that tells whether a photo changed since the
last run, how a photo is skipped with its reason, the progress bar, and :class:`JobRun`, the state
every job's run starts from.

Jobs (``register``, ``apply``, ``faces``) import from here and from the services below them
(:mod:`.outputs`, :mod:`.records`, :mod:`.photos`, :mod:`.video_input`, the frame writer); a job
never imports another job.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from alignimate.errors import UsageError
from alignimate.pipeline.exclusions import EXCLUDED_REASON
from alignimate.pipeline.frame_writer import default_workers
from alignimate.pipeline.outputs import OutputFolder, check_not_input
from alignimate.pipeline.photos import Photo, Skipped, discover_photos
from alignimate.pipeline.records import (
    CHECKPOINT_NAME,
    REPORT_NAME,
    TRANSFORMS_NAME,
    Checkpoint,
    PhotoRecord,
    RunRecord,
    load_previous,
    write_report,
    write_transforms,
)
from alignimate.pipeline.video_input import JobInput

if TYPE_CHECKING:
    import torch
    from tqdm import tqdm

__all__ = [
    "RUN_FILES",
    "AlignResult",
    "JobRun",
    "RunBook",
    "device_name",
    "find_photos",
    "fresh_record",
    "open_output",
    "photo_bar",
    "pick_device",
    "resolve_workers",
    "skip_record",
    "skipped_record",
    "stat_key",
    "write_run",
]

# The files a resumable run keeps in its output folder besides its frames.
RUN_FILES = (TRANSFORMS_NAME, REPORT_NAME, CHECKPOINT_NAME)
# Linux device files through which torch reaches a GPU it calls "cuda": NVIDIA's driver, NVIDIA's
# Tegra (Jetson) driver, WSL's GPU paravirtualisation, AMD's ROCm driver. Without any of them no
# such GPU is usable, and "auto" is the CPU without asking torch.
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvmap", "/dev/dxg", "/dev/kfd")


@dataclass
class AlignResult:
    """What a job (``register``, ``apply``) did: the output folder and the run record (also in
    transforms.json)."""

    out: Path
    run: RunRecord

    @property
    def aligned(self) -> list[PhotoRecord]:
        return [p for p in self.run.photos if p.usable and p.output]

    @property
    def skipped(self) -> list[PhotoRecord]:
        return [p for p in self.run.photos if p.status == "skipped"]

    @property
    def exit_code(self) -> int:
        """0 when every photo was aligned (or left out by the user's review), 1 when some were
        skipped."""
        return 1 if any(p.reason != EXCLUDED_REASON for p in self.skipped) else 0

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "aligned": len(self.aligned),
            "skipped": [{"name": p.name, "reason": p.reason} for p in self.skipped],
            "reference": self.run.reference,
            "output_size": self.run.output_size,
        }


def pick_device(device: str) -> torch.device:
    """``"auto"`` means CUDA when available, else the CPU (:func:`device_name`, as a torch device)."""
    import torch

    return torch.device(device_name(device))


def device_name(device: str) -> str:
    """The device a job computes on, by name: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``"auto"`` means
    CUDA when available, else the CPU. A UsageError for anything else, or for ``"cuda"`` without a
    CUDA device.

    torch is imported only to ask it about CUDA, and not at all for ``"cpu"``, nor for ``"auto"`` on
    a machine without a GPU (:func:`_may_have_cuda`): a job whose CPU work needs no torch (``apply``)
    then never imports it."""
    if device == "cpu":
        return device
    if device not in ("auto", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "auto" and not _may_have_cuda():
        return "cpu"
    if device in ("auto", "cuda"):
        import torch

        if not torch.cuda.is_available():
            if device == "cuda":
                raise UsageError("--device cuda was asked for, but no CUDA device is available")
            return "cpu"
    return "cuda" if device == "auto" else device


def _may_have_cuda() -> bool:
    """False only where ``torch.cuda.is_available()`` is certainly False: on macOS (no CUDA builds of
    torch) and on Linux without any of :data:`_GPU_DEVICE_FILES`; True elsewhere (then torch is
    asked), and whenever torch is imported already (asking it is then free)."""
    if "torch" in sys.modules:
        return True
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(path) for path in _GPU_DEVICE_FILES)
    return True


def resolve_workers(workers: int | None) -> int:
    """``workers``, or the default (one per CPU core, at most 4); a UsageError when not a positive int."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive int, got {workers!r}")
    return workers


def open_output(
    out: Path,
    overwrite: bool,
    *,
    command: str,
    inputs: Sequence[Path],
    extra_names: Sequence[str] = (),
    label: str = "output folder",
    hint: str = "choose an empty or new folder",
    resumable: bool = True,
) -> tuple[OutputFolder, RunRecord | None]:
    """Open the output folder of a run (rules: :mod:`.outputs`; ``resumable=False`` for a job that
    cannot resume, such as ``apply``) and claim its report files and ``extra_names``; returns it with
    the earlier run of the same ``command`` found there (checkpoint first) to resume from, or None.
    The caller closes the folder."""
    folder = OutputFolder.open(
        out,
        command=command,
        overwrite=overwrite,
        inputs=inputs,
        label=label,
        hint=hint,
        resumable=resumable,
    )
    try:
        names = [TRANSFORMS_NAME, REPORT_NAME, *extra_names]
        taken = [n for n in names if not folder.is_free(n)]
        if taken:
            raise UsageError(
                f"{out}: holds {', '.join(taken)} that alignimate did not write; move it away or {hint}"
            )
        folder.claim(names)
        return folder, load_previous(folder, command)
    except BaseException:
        folder.close()
        raise


def find_photos(
    source: JobInput,
    out: Path,
    *,
    recursive: bool = False,
    sort: str = "date",
    max_pixels: int | None = None,
    leave_out: Path | None = None,
    label: str = "output folder",
) -> tuple[list[Photo], list[Skipped]]:
    """The photos of a job (:func:`~alignimate.pipeline.photos.discover_photos`, its arguments).

    The output folder ``out`` is refused first when it is (or contains) an input folder: discovery
    leaves an output folder inside the input folder out, so such a request would otherwise end in "no
    photos found". ``leave_out`` is a file the job writes (its animation) that may lie among the
    photos. A UsageError when the folder holds no photo, readable or not.
    """
    check_not_input(out, source.inputs, what=label)
    photos, skipped = discover_photos(
        source.folder,
        recursive=recursive,
        sort=sort,
        exclude=out if source.inputs == [source.folder] else None,
        max_pixels=max_pixels,
    )
    if leave_out is not None and leave_out.exists():
        photos = [p for p in photos if not os.path.samefile(p.path, leave_out)]
    if not photos and not skipped:
        raise UsageError(f"{source.folder}: no photos found (looked for JPEG, PNG, TIFF, WebP, HEIC, ...)")
    return photos, skipped


def stat_key(path: Path) -> list[int]:
    """``[size, mtime_ns]`` of a photo: an unchanged key means an unchanged file, for a resume."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def fresh_record(photo: Photo, stat: list[int]) -> PhotoRecord:
    """The record of a photo no earlier run decided: ``pending``, with its source, size, capture time
    and ``stat`` (:func:`stat_key`) for the next resume to compare."""
    return PhotoRecord(
        name=photo.name,
        source=str(photo.path.resolve()),
        status="pending",
        size=list(photo.size_hw),
        datetime=photo.datetime.isoformat() if photo.datetime else None,
        extra={"stat": stat},
    )


def skip_record(record: PhotoRecord, reason: str, log: Callable[[str], None]) -> None:
    """Mark ``record`` skipped for ``reason`` (it keeps no matrix and no frame) and say so."""
    record.status, record.reason, record.matrix, record.output = "skipped", reason, None, None
    log(f"skipped {record.name}: {reason}")


def skipped_record(item: Skipped, log: Callable[[str], None], **extra: Any) -> PhotoRecord:
    """The record of a photo discovery could not use (unreadable, too large, ...), said in ``log``;
    ``extra`` goes into the record's ``extra``."""
    log(f"skipped {item.name}: {item.reason}")
    return PhotoRecord(
        name=item.name, source=str(item.path), status="skipped", reason=item.reason, extra=extra
    )


def photo_bar(iterable: Iterable[Any] | None = None, *, total: int, desc: str, enabled: bool) -> tqdm:
    """A transient progress bar counted in photos (nothing is drawn unless ``enabled``)."""
    from tqdm import tqdm  # here: apply, which draws none, starts without importing it

    return tqdm(iterable, total=total, desc=desc, unit="photo", disable=not enabled, leave=False)


def write_run(folder: OutputFolder, run: RunRecord) -> None:
    """Write the run's transforms.json and report.csv into its output folder (atomically)."""
    write_transforms(folder.path / TRANSFORMS_NAME, run)
    write_report(folder.path / REPORT_NAME, run)


class RunBook:
    """The record of a resumable run in its output folder: a checkpoint while it runs (written every
    few seconds, and when it stops: :class:`~alignimate.pipeline.records.Checkpoint`), then
    transforms.json and report.csv in place of the checkpoint when it ends."""

    def __init__(self, folder: OutputFolder) -> None:
        self.folder = folder
        self.checkpoints = Checkpoint(folder.path / CHECKPOINT_NAME)

    def update(self, make: Callable[[], RunRecord]) -> None:
        """Note the run's progress (``make`` builds the record when a checkpoint is due)."""
        self.checkpoints.update(make)

    def flush(self, *, quietly: bool = False) -> None:
        """Write the checkpoint now (``quietly``: while the run is stopping, ignoring a failure)."""
        self.checkpoints.flush(quietly=quietly)

    def close(self, run: RunRecord) -> RunRecord:
        """The run ended: write its files and remove the checkpoint; returns ``run``."""
        write_run(self.folder, run)
        self.checkpoints.remove()
        return run


SettingsT = TypeVar("SettingsT")


class JobRun(Generic[SettingsT]):
    """What every job's run holds and does alike: its input folder, output folder and run book, its
    settings, device, worker count, progress bars and log, the photos' order, skipping with a reason,
    frame names and the run's end. A job's own run class adds its records and steps."""

    def __init__(
        self,
        folder: Path,
        outputs: OutputFolder,
        settings: SettingsT,
        device: torch.device | str,
        progress: bool,
        log: Callable[[str], None],
        *,
        workers: int | None = None,
        own_files: Iterable[str] = (),
    ) -> None:
        """``workers`` as :func:`resolve_workers`; ``own_files``: the job's files in the output
        folder besides its frames and :data:`RUN_FILES` (a contact sheet)."""
        self.folder, self.outputs, self.out = folder, outputs, outputs.path
        self.settings, self.device, self.progress, self.log = settings, device, progress, log
        self.workers = resolve_workers(workers)
        self.own_files = frozenset((*RUN_FILES, *own_files))
        self.order: list[str] = []
        self.book = RunBook(outputs)

    def bar(self, iterable: Iterable[Any] | None, total: int, desc: str) -> tqdm:
        """A progress bar counted in photos, drawn when the run shows progress (:func:`photo_bar`)."""
        return photo_bar(iterable, total=total, desc=desc, enabled=self.progress)

    def skip_record(self, record: PhotoRecord, reason: str) -> None:
        """Mark ``record`` skipped for ``reason`` and say so (:func:`skip_record`)."""
        skip_record(record, reason, self.log)

    def new_record(self, photo: Photo) -> PhotoRecord:
        """A pending record of ``photo`` with its current :func:`stat_key` (:func:`fresh_record`)."""
        return fresh_record(photo, stat_key(photo.path))

    def unusable(self, item: Skipped, **extra: Any) -> PhotoRecord:
        """The record of a photo discovery could not use, said in the log (:func:`skipped_record`)."""
        return skipped_record(item, self.log, **extra)

    def frame_name(self, photo_name: str, suffix: str, taken: set[str]) -> str:
        """A fresh name for the frame of ``photo_name``, never one of the run's own files
        (:meth:`~alignimate.pipeline.outputs.OutputFolder.fresh_name`; ``taken`` gains it)."""
        taken |= self.own_files
        return self.outputs.fresh_name(photo_name, suffix, taken)

    def close(self, run: RunRecord, stale: Callable[[str], bool]) -> RunRecord:
        """The run ended: write its transforms.json and report.csv, remove the checkpoint, and remove
        the files of an earlier run that ``run`` no longer names (photos left out or skipped since)
        and ``stale`` says are frames; only files recorded as alignimate's. Returns ``run``."""
        self.book.close(run)
        current = {p.output for p in run.photos if p.output} | self.own_files
        self.outputs.remove(n for n in self.outputs.owned() - current if stale(n))
        return run
