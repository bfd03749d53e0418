"""``alignimate dataset faces --engine ray``: the same stages under Ray Data, on a local Ray of 2 CPUs.

Marked ``ray`` so that it can be deselected (``-m "not ray"``); CI installs Ray (the ``dev`` extra)
and runs it. Without Ray installed it is skipped with the reason, except under CI (``CI`` set),
where a missing Ray is a failure rather than a silent skip.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignimate import dataset
from alignimate.pipeline.dataset_faces import DatasetSettings, _Plan, pipeline_stages, read_manifest
from alignimate.pipeline.dataset_stages import manifest_table, shard_bounds
from alignimate.pipeline.stages import Batch, Stage

pytestmark = pytest.mark.ray

FACES = Path(__file__).resolve().parents[2] / "sample_data" / "faces"


@pytest.fixture(scope="module")
def ray_session():
    try:
        import ray
        import ray.data
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray Data is not installed, but CI must run these tests: pip install -e '.[dev]'")
        pytest.skip("Ray Data is not installed (pip install 'alignimate[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _rows(out: Path) -> list[dict]:
    return sorted(read_manifest(out).to_pylist(), key=lambda r: (r["source"], r["face"]))


def test_both_engines_give_the_same_rows_matrices_and_crops(ray_session, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(FACES, src, ignore=shutil.ignore_patterns("*.json"))
    local = dataset.faces(src, tmp_path / "local", size=256)
    on_ray = dataset.faces(src, tmp_path / "ray", size=256, engine="ray")
    assert (
        (on_ray.engine, on_ray.rows, on_ray.aligned) == ("ray", local.rows, local.aligned) == ("ray", 15, 14)
    )
    a, b = _rows(local.out), _rows(on_ray.out)
    same = ("source", "sha256", "face", "status", "reason", "output", "run", "photo_width", "photo_height")
    assert [[r[k] for k in same] for r in a] == [[r[k] for k in same] for r in b]
    for ra, rb in zip(a, b, strict=True):
        if ra["matrix"] is not None:
            assert np.abs(np.subtract(ra["matrix"], rb["matrix"])).max() <= 1e-4
            assert np.abs(np.subtract(ra["landmarks"], rb["landmarks"])).max() <= 1e-4
        if ra["output"] is not None:
            crop_a = np.asarray(Image.open(local.out / ra["output"]))
            crop_b = np.asarray(Image.open(on_ray.out / rb["output"]))
            assert np.array_equal(crop_a, crop_b), ra["output"]
    # A rerun under Ray finds every photo in the manifest Ray wrote.
    again = dataset.faces(src, tmp_path / "ray", size=256, engine="ray")
    assert (again.run, again.known, again.rows) == ("r002", 15, 0)


class RaiseOnce(Stage):
    """Raises the first time any copy of it runs, in any process (a marker file says it did)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, batch: Batch) -> Batch:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return batch
        raise RuntimeError("a worker failed once")


def test_ray_retries_a_batch_that_raises_once_without_losing_or_duplicating_rows(
    ray_session, tmp_path: Path
) -> None:
    from ray import cloudpickle

    from alignimate.pipeline.ray_engine import RayOptions, run_on_ray

    # Ray's workers cannot import a test module by name: ship this one's classes by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    src = tmp_path / "src"
    shutil.copytree(FACES, src, ignore=shutil.ignore_patterns("*.json"))
    out = tmp_path / "out"
    (out / "manifest").mkdir(parents=True)
    photos = sorted(str(p) for p in src.glob("*.jpg"))
    plan = _Plan(
        root=str(src),
        out=str(out),
        run="r001",
        bounds=shard_bounds([Path(p).name for p in photos], 1000),
        known=frozenset(),
        reference=None,
        embedder_name=None,
        device="cpu",
    )
    stages = pipeline_stages(DatasetSettings(size=64), plan)
    marker = tmp_path / "raised"
    stages.insert(-1, RaiseOnce(str(marker)))  # inside the actor group, just before the rows
    run_on_ray(
        photos,
        stages,
        finish=manifest_table,
        out_dir=str(out / "manifest"),
        name="part-r001",
        options=RayOptions(batch_size=2, retries=2),
    )
    assert marker.exists()  # it did raise
    rows = _rows(out)
    counts = Counter((r["source"], r["face"]) for r in rows)
    assert max(counts.values()) == 1
    assert {r["source"] for r in rows} == {Path(p).name for p in photos}
    assert sum(r["status"] == "aligned" for r in rows) == 14
