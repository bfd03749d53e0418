"""The stage format and the local executor (:mod:`alignimate.pipeline.stages`): batches as columns,
row stages with skips, order, the bound on batches in flight, setup once, errors and early stops."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from alignimate.io import PhotoError
from alignimate.pipeline.stages import (
    Row,
    RowStage,
    Skip,
    Stage,
    Step,
    batch_length,
    batch_rows,
    batches_of,
    rows_batch,
    run_stages,
    run_steps,
)


class Double(RowStage):
    def __init__(self) -> None:
        self.setups = 0

    def setup(self) -> None:
        self.setups += 1

    def process(self, row: Row) -> Row:
        if row["x"] == 3:
            raise Skip("three is not welcome")
        if row["x"] == 5:
            raise PhotoError("five.jpg", "truncated file")
        return {"y": row["x"] * 2}


class Sleepy(Stage):
    """Sleeps longer on early batches, so later batches finish first; tracks batches in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.02 * (3 - min(batch["x"][0], 3)))
        with self.lock:
            self.running -= 1
        return batch


def test_rows_and_batches_round_trip_and_fill_missing_columns() -> None:
    batch = rows_batch([{"a": 1, "b": "x"}, {"a": 2}])
    assert batch == {"a": [1, 2], "b": ["x", None]}
    assert batch_rows(batch) == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]
    assert batch_length({"a": np.arange(4), "b": [0] * 4}) == 4
    with pytest.raises(ValueError, match="different lengths"):
        batch_length({"a": [1], "b": [1, 2]})
    assert [batch_length(b) for b in batches_of(({"i": i} for i in range(7)), 3)] == [3, 3, 1]


def test_a_row_stage_skips_only_its_row_and_passes_skipped_rows_through() -> None:
    out = Double()(
        {"x": [1, 3, 5, 2], "status": [None, None, None, "skipped"], "reason": [None] * 3 + ["before"]}
    )
    assert out["y"] == [2, None, None, None]
    assert out["status"] == [None, "skipped", "skipped", "skipped"]
    assert out["reason"] == [None, "three is not welcome", "truncated file", "before"]


def test_numpy_columns_as_ray_hands_them_over_are_accepted() -> None:
    out = Double()({"x": np.array([1, 2])})
    assert out["y"] == [2, 4]


def test_the_executor_keeps_input_order_and_sets_each_stage_up_once() -> None:
    double, sleepy = Double(), Sleepy()
    batches = list(run_stages(({"x": i} for i in range(10)), [sleepy, double], batch_size=1, workers=3))
    assert [b["x"][0] for b in batches] == list(range(10))
    assert double.setups == 1
    assert sleepy.most > 1  # batches really ran side by side


def test_the_executor_bounds_batches_in_flight() -> None:
    sleepy = Sleepy()
    consumed = 0
    for _ in run_stages(({"x": i} for i in range(12)), [sleepy], batch_size=2, workers=2, window=2):
        consumed += 1
        time.sleep(0.01)
    assert consumed == 6 and sleepy.most <= 2


def test_an_error_stops_the_run_and_closing_early_cancels_the_rest() -> None:
    class Boom(RowStage):
        calls = 0

        def process(self, row: Row) -> Row:
            Boom.calls += 1
            if row["x"] == 1:
                raise RuntimeError("internal")
            return {}

    with pytest.raises(RuntimeError, match="internal"):
        list(run_stages(({"x": i} for i in range(100)), [Boom()], batch_size=1, workers=1))
    assert Boom.calls < 10
    Boom.calls = 0
    stream = run_stages(({"x": i + 2} for i in range(100)), [Boom()], batch_size=1, workers=1)
    next(stream)
    stream.close()
    assert Boom.calls <= 3


def test_bad_executor_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="workers"):
        list(run_stages([{"x": 1}], [Double()], batch_size=1, workers=0))
    with pytest.raises(ValueError, match="window"):
        list(run_stages([{"x": 1}], [Double()], batch_size=1, workers=1, window=0))
    with pytest.raises(ValueError, match="batch size"):
        list(run_stages([{"x": 1}], [Double()], batch_size=0, workers=1))


def test_steps_chain_at_their_own_batch_sizes_and_keep_the_order() -> None:
    seen_sizes: list[int] = []

    class Count(Stage):
        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            seen_sizes.append(len(batch["x"]))
            return batch

    double, sleepy = Double(), Sleepy()
    out = list(
        run_steps(
            ({"x": i} for i in range(10)),
            [Step([sleepy], workers=3), Step([Count(), double], batch_size=4)],
        )
    )
    assert [x for b in out for x in b["x"]] == list(range(10))
    assert seen_sizes == [4, 4, 2]
    assert [y for b in out for y in b["y"]] == [0, 2, 4, None, 8, None, 12, 14, 16, 18]
    assert sleepy.most > 1
    with pytest.raises(ValueError, match="at least one step"):
        run_steps([{"x": 1}], [])
