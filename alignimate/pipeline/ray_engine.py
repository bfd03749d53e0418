"""The Ray Data engine: the stages of a job (:mod:`alignimate.pipeline.stages`) as ``map_batches`` calls.

The adapter cuts a job's stage list into groups, each one ``map_batches`` call. A stage with its own
``setup()`` (a model to load) starts a group that runs on a pool of actors: Ray constructs a
callable class once per actor, and its constructor calls ``setup()``. The stages without setup
around it join its group: those after it, and for the first such stage those before it too. So a
decoded photo never crosses the object store between stages, and the work of a photo runs on as
many processes as the pool has actors, while Ray's read tasks only read files. (Run as separate
task groups, the decoding tasks of a 2-core machine ran several at a time beside the actors and the
job was several times slower than the local engine, measured: docs/scale.md.) A list without any
stage with a setup is one group of tasks.

Between groups, each row travels as one pickled value (column ``_row``). Ray infers an Arrow type
for every column it is handed and converts some on the way (a column of ``None`` becomes float
``NaN``, ragged arrays become tensors), so a stage would not see what the previous one returned;
pickled rows come back exactly. The last group hands its batch to ``finish``, which returns the
Arrow table that Ray's Parquet writer stores.

Resources: on a small machine an actor pool that asks for one CPU per actor leaves nothing for the
read tasks and the job stalls (measured on 2 cores, ``../shared/research/round2.md``), so actors
ask for a fraction of a CPU (:attr:`RayOptions.actor_cpus`) and the read, the stateless tasks and
the writer for less (:attr:`RayOptions.task_cpus`); the pool has a fixed size (one actor per CPU of
the cluster by default, or one per GPU with ``gpus_per_actor``).

Retries: a batch whose stage raises is run again (``DataContext.retried_map_errors``, at most
:attr:`RayOptions.retries` more times; Ray skips the output blocks the failed attempt had already
produced); an actor that dies is restarted and its batches resubmitted by Ray. Stages are pure
functions of their batch and write their files atomically under names fixed by the content, so
neither loses nor duplicates a row.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alignimate.errors import UsageError
from alignimate.pipeline.stages import Batch, Stage

__all__ = [
    "RAY_MISSING",
    "RayOptions",
    "group_stages",
    "needs_setup",
    "on_actors",
    "ray_available",
    "require_ray",
    "run_on_ray",
    "started_ray",
]

# What the last group hands its batch to (an Arrow table for the writer); None for the other groups.
Finish = Callable[[Batch], Any] | None

RAY_MISSING = "--engine ray needs Ray Data, an optional extra: pip install 'alignimate[ray]'"
_ROW = "_row"


def ray_available() -> bool:
    """Whether Ray Data and pyarrow can be imported."""
    try:
        import pyarrow  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def require_ray() -> None:
    """Raise :class:`~alignimate.errors.UsageError` (exit 2) saying how to install Ray when it is
    missing."""
    if not ray_available():
        raise UsageError(RAY_MISSING)


@dataclass(frozen=True)
class RayOptions:
    """How the stages run under Ray.

    address: the cluster to join (``ray.init(address=...)``); None starts a local Ray for the run
        (or uses the one this process already started).
    actors: actors per pool (None: one per CPU of the cluster, or one per GPU with ``gpus_per_actor``).
    actor_cpus, task_cpus: CPUs each actor, and each read, task and write, asks for.
    gpus_per_actor: GPUs each actor asks for (0: none); with more ``actors`` than GPUs, each asks for
        its share of them, so that several actors decode and warp for one GPU.
    batch_size: rows per ``map_batches`` batch. retries: extra attempts of a batch that raised.
    rows_per_file: the writer gathers at least this many rows per Parquet file (a file per batch
        would make millions of tiny files); rows not yet written when the job stops are lost, and
        their photos done again by the next run.
    progress: Ray's progress bars.
    """

    address: str | None = None
    actors: int | None = None
    actor_cpus: float = 0.75
    task_cpus: float = 0.25
    gpus_per_actor: float = 0.0
    batch_size: int = 8
    retries: int = 2
    rows_per_file: int = 1024
    progress: bool = False

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise UsageError(f"Ray actors must be at least 1, got {self.actors}")
        if not 0 < self.actor_cpus <= 64 or not 0 < self.task_cpus <= 64:
            raise UsageError(
                f"Ray CPUs per actor and per task must be in (0, 64], got {self.actor_cpus}, {self.task_cpus}"
            )
        if self.gpus_per_actor < 0 or self.batch_size < 1 or self.retries < 0 or self.rows_per_file < 1:
            raise UsageError(
                "Ray batch size and rows per file must be positive, GPUs per actor and retries not negative"
            )


def needs_setup(stage: Stage) -> bool:
    """Whether ``stage`` overrides :meth:`Stage.setup` (it loads something once per worker)."""
    return type(stage).setup is not Stage.setup


def group_stages(stages: Sequence[Stage]) -> list[list[Stage]]:
    """The ``map_batches`` groups of ``stages`` (module docstring): each stage with a setup starts a
    group, stages without one join the group before them, and those before the first stage with a
    setup join its group (a list without any such stage is one group)."""
    groups: list[list[Stage]] = []
    head: list[Stage] = []
    for stage in stages:
        if needs_setup(stage):
            groups.append([*head, stage])
            head = []
        elif groups:
            groups[-1].append(stage)
        else:
            head.append(stage)
    return groups or [head]


def on_actors(group: Sequence[Stage]) -> bool:
    """Whether a group runs on an actor pool: when any of its stages has a setup (the first of a job
    may come after stateless ones that joined its group)."""
    return any(needs_setup(stage) for stage in group)


def _unpack(batch: dict[str, Any], first: bool) -> Batch:
    if first:  # Ray's own columns (e.g. read_binary_files' bytes and path) as plain lists
        return {name: list(column) for name, column in batch.items()}
    rows = [pickle.loads(value) for value in batch[_ROW]]
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in rows] for name in names}


def _pack(batch: Batch) -> dict[str, list[bytes]]:
    names = list(batch)
    count = len(batch[names[0]]) if names else 0
    rows = ({name: batch[name][i] for name in names} for i in range(count))
    return {_ROW: [pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL) for row in rows]}


def _through(batch: dict[str, Any], stages: Sequence[Stage], first: bool, finish: Finish) -> Any:
    """A batch through a group's stages: directly as a Ray task for a group without a setup, or in
    an :class:`_ActorGroup`."""
    work = _unpack(batch, first)
    for stage in stages:
        work = stage(work)
    return finish(work) if finish is not None else _pack(work)


class _ActorGroup:
    """A group whose first stage has a setup, run on a pool of Ray actors (one instance per actor)."""

    def __init__(self, stages: Sequence[Stage], first: bool, finish: Finish) -> None:
        for stage in stages:
            stage.setup()
        self.stages, self.first, self.finish = list(stages), first, finish

    def __call__(self, batch: dict[str, Any]) -> Any:
        return _through(batch, self.stages, self.first, self.finish)


def started_ray(address: str | None) -> bool:
    """Connect to Ray: ``address`` or, without one, the Ray this process already runs, else a new
    local one. Returns whether this call started it (so the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise UsageError(f"cannot connect to Ray at {address}: {err}") from None
    return True


def _pool(options: RayOptions) -> tuple[int, float]:
    """Actors in the pool and GPUs each asks for: one actor per CPU, or per GPU; more actors than
    GPUs share them (each asks for its fraction)."""
    import ray

    resources = ray.cluster_resources()
    if options.gpus_per_actor <= 0:
        return options.actors or max(1, int(resources.get("CPU", 1))), 0.0
    gpus = resources.get("GPU", 0.0)
    if options.actors is None:
        return max(1, int(gpus / options.gpus_per_actor)), options.gpus_per_actor
    return options.actors, min(
        options.gpus_per_actor, gpus / options.actors
    ) if gpus else options.gpus_per_actor


def run_on_ray(
    paths: Sequence[str],
    stages: Sequence[Stage],
    *,
    finish: Callable[[Batch], Any],
    out_dir: str,
    name: str,
    options: RayOptions,
) -> None:
    """Run a job's stages on Ray Data and write its output as Parquet files.

    Ray must be connected (:func:`started_ray`). A batch that still raises after the retries, or a
    failed write, stops the job with Ray's exception; the part files already written stay.

    Args:
        paths: the input files, read with ``read_binary_files`` (rows ``bytes``, ``path``).
        stages: run on them in order (grouped by :func:`group_stages`).
        finish: turns the last batch into an Arrow table to write.
        out_dir: where the part files go.
        name: the part files' prefix: ``<name>_*.parquet``.
        options: resources, pool size and retries.
    """
    import ray
    import ray.data
    from ray.data.datasource import FilenameProvider

    if not paths:
        return
    context = ray.data.DataContext.get_current()
    saved = (context.retried_map_errors, context.max_map_retries, context.enable_progress_bars)
    context.retried_map_errors, context.max_map_retries = True, options.retries
    context.enable_progress_bars = options.progress
    try:
        dataset = ray.data.read_binary_files(list(paths), include_paths=True, num_cpus=options.task_cpus)
        groups = group_stages(stages)
        for index, group in enumerate(groups):
            first, last = index == 0, index == len(groups) - 1
            group_finish = finish if last else None
            if on_actors(group):
                size, gpus = _pool(options)
                dataset = dataset.map_batches(
                    _ActorGroup,
                    fn_constructor_kwargs={"stages": group, "first": first, "finish": group_finish},
                    batch_size=options.batch_size,
                    compute=ray.data.ActorPoolStrategy(size=size),
                    num_cpus=options.actor_cpus,
                    num_gpus=gpus or None,
                )
            else:
                dataset = dataset.map_batches(
                    _through,
                    fn_kwargs={"stages": group, "first": first, "finish": group_finish},
                    batch_size=options.batch_size,
                    num_cpus=options.task_cpus,
                )
        dataset.write_parquet(
            out_dir,
            filename_provider=FilenameProvider(dataset_uuid=name, file_format="parquet"),
            min_rows_per_file=options.rows_per_file,
            ray_remote_args={"num_cpus": options.task_cpus},
        )
    finally:
        context.retried_map_errors, context.max_map_retries, context.enable_progress_bars = saved
