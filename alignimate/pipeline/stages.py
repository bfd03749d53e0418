"""Stages: the steps of a job, written once and run by a local executor or by Ray Data.

A **batch** is a dict of columns of equal length: ``{"key": [...], "path": [...], "image": [...],
...}``. Columns are lists (or numpy arrays: Ray Data hands batches over as dicts of arrays, with
variable-size images as object arrays); every stage accepts either and returns lists. Two columns have
a fixed meaning: ``status`` (``"skipped"`` marks a row no later stage touches) and ``reason`` (why).

A **stage** is an object with ``setup()``, called once per worker before its first batch (load a
model there, not in ``__init__``, so a stage is cheap to build and to ship to another process), and
``__call__(batch) -> batch``, which returns the same rows in the same order, with columns added or
rows marked skipped. A stage keeps no state between batches beyond what ``setup()`` loaded, so any
number of copies can run side by side. :class:`RowStage` is the common case: one row at a time, and
a :class:`Skip` (or a :class:`~alignimate.io.PhotoError`) marks only that row skipped.

A **job** is a short list of stages plus what it does between them (a reduce over all rows, such as
choosing the reference or the person). :func:`run_stages` is the local executor: batches go through
the whole list on a few worker threads (decoding, the engine and encoding run mostly outside the
GIL), at most ``window`` batches are in memory at once, and batches come out in input order, so the
caller can record and checkpoint each one as it arrives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

from alignimate.io import PhotoError

__all__ = [
    "Batch",
    "Row",
    "RowStage",
    "Skip",
    "Stage",
    "Step",
    "batch_length",
    "batch_rows",
    "batches_of",
    "rows_batch",
    "run_stages",
    "run_steps",
]

Batch = dict[str, Any]
Row = dict[str, Any]


class Skip(Exception):  # noqa: N818  (a signal, not an error: the row is skipped with this reason)
    """Raised by a :class:`RowStage` to mark its row ``skipped`` with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stage:
    """One step of a job (module docstring). ``num_cpus`` and ``num_gpus`` are what one copy needs,
    for engines that schedule resources (Ray); the local executor ignores them."""

    num_cpus: ClassVar[float] = 1.0
    num_gpus: ClassVar[float] = 0.0

    def setup(self) -> None:
        """Load what the stage needs (models, lookup tables), once per worker."""

    def __call__(self, batch: Batch) -> Batch:
        raise NotImplementedError


class RowStage(Stage):
    """A stage that handles one row at a time: :meth:`process` returns the columns to add or replace.
    Rows already skipped pass through untouched; a :class:`Skip` or
    :class:`~alignimate.io.PhotoError` from :meth:`process` marks that row skipped with its reason."""

    def process(self, row: Row) -> Row:
        """Handle one row that is not skipped.

        Args:
            row: the row's columns (read only: return what changes).

        Returns:
            the columns to add or replace. Raise :class:`Skip` (or let a
            :class:`~alignimate.io.PhotoError` through) to skip the row with a reason.
        """
        raise NotImplementedError

    def __call__(self, batch: Batch) -> Batch:
        out = []
        for row in batch_rows(batch):
            if row.get("status") != "skipped":
                try:
                    row = {**row, **self.process(row)}
                except Skip as skip:
                    row = {**row, "status": "skipped", "reason": skip.reason}
                except PhotoError as err:
                    row = {**row, "status": "skipped", "reason": err.reason}
            out.append(row)
        return rows_batch(out)


def batch_length(batch: Mapping[str, Any]) -> int:
    """Rows in ``batch`` (0 for a batch without columns); columns of unequal length are a ValueError."""
    lengths = {len(column) for column in batch.values()}
    if len(lengths) > 1:
        raise ValueError(f"batch columns have different lengths: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def batch_rows(batch: Mapping[str, Any]) -> list[Row]:
    """The rows of a batch, as dicts (numpy scalars and arrays of an object column stay as they are)."""
    n = batch_length(batch)
    return [{name: column[i] for name, column in batch.items()} for i in range(n)]


def rows_batch(rows: Sequence[Mapping[str, Any]]) -> Batch:
    """The batch of ``rows``; a column some rows lack is ``None`` there (e.g. a skipped row's image)."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in rows] for name in names}


def batches_of(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[Batch]:
    """Group ``rows`` into batches of ``size`` rows (the last one may be smaller)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    chunk: list[Mapping[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield rows_batch(chunk)
            chunk = []
    if chunk:
        yield rows_batch(chunk)


def _through(stages: Sequence[Callable[[Batch], Batch]], batch: Batch) -> Batch:
    for stage in stages:
        batch = stage(batch)
    return batch


def run_stages(
    rows: Iterable[Mapping[str, Any]],
    stages: Sequence[Stage],
    *,
    batch_size: int,
    workers: int,
    window: int | None = None,
    setup: bool = True,
) -> Iterator[Batch]:
    """The local executor: every batch of ``rows`` through every stage in turn, in threads.

    An exception other than a row's skip stops the run and propagates; stopping early (an
    exception, or closing the generator) cancels the batches not started.

    Args:
        rows: the input rows (consumed as batches are submitted).
        stages: applied in order to each batch.
        batch_size: rows per batch.
        workers: threads that run batches at once.
        window: at most this many batches are submitted and not yet consumed (default
            ``workers + 1``: one waiting to be consumed while every worker is busy), so memory stays
            bounded however many rows there are.
        setup: call each stage's ``setup()`` first (pass False for stages the caller already set
            up, e.g. reused across calls).

    Returns:
        an iterator over the finished batches, in input order.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    limit = workers + 1 if window is None else window
    if limit < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if setup:
        for stage in stages:
            stage.setup()
    batches = batches_of(rows, batch_size)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alignimate-stage") as pool:
        pending: deque[Future[Batch]] = deque()

        def submit_next() -> None:
            batch = next(batches, None)
            if batch is not None:
                pending.append(pool.submit(_through, stages, batch))

        try:
            for _ in range(limit):
                submit_next()
            while pending:
                done = pending.popleft().result()
                submit_next()
                yield done
        finally:
            for future in pending:
                future.cancel()


@dataclass(frozen=True)
class Step:
    """Stages that run together at one batch size and parallelism (:func:`run_steps`): e.g. photo
    reads one at a time on two threads, then a model on batches of 16 on one thread."""

    stages: Sequence[Stage]
    batch_size: int = 1
    workers: int = 1
    window: int | None = None


def run_steps(rows: Iterable[Mapping[str, Any]], steps: Sequence[Step]) -> Iterator[Batch]:
    """:func:`run_stages` for each step in turn, so that all steps work at once.

    Args:
        rows: the input rows.
        steps: each a stage list with its own batch size, workers and window; the rows of one
            step's batches stream into the next as they come out (in order), so memory stays
            bounded by each step's window.

    Returns:
        an iterator over the last step's batches, in input order.
    """
    if not steps:
        raise ValueError("run_steps needs at least one step")
    stream: Iterable[Mapping[str, Any]] = rows
    batches: Iterator[Batch] = iter(())
    for step in steps:
        batches = run_stages(
            stream, step.stages, batch_size=step.batch_size, workers=step.workers, window=step.window
        )
        stream = (row for batch in batches for row in batch_rows(batch))
    return batches
