from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alignimate.detect.base import Instance
from alignimate.detect.cache import DetectionCache, default_cache_dir, detect_cached


class CountingDetector:
    """Finds one 'object' per photo whose box encodes the photo's mean value; counts photos seen."""

    name = "counting"

    def __init__(self, threshold: float = 0.0) -> None:
        self.threshold = threshold
        self.seen = 0

    def settings(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    def detect(self, images: list[np.ndarray]) -> list[list[Instance]]:
        self.seen += len(images)
        out = []
        for img in images:
            v = float(img.mean())
            if v < 1.0:  # an all-black photo: nothing found
                out.append([])
                continue
            out.append(
                [
                    Instance(
                        box=np.array([0, 0, v, v], np.float32),
                        score=0.9,
                        mask=np.full((4, 6), 0.25, np.float32),
                        keypoints=np.array([[1.5, 2.5], [3.0, 4.0]], np.float32),
                        keypoint_scores=np.array([0.2, 0.8], np.float32),
                        keypoint_names=("a", "b"),
                        embedding=np.array([0.6, 0.8], np.float32),
                        image_size=img.shape[:2],
                        label="thing",
                    )
                ]
            )
        return out


def _photos(folder: Path, values: list[int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, v in enumerate(values):
        p = folder / f"p{i}.raw"
        p.write_bytes(bytes([v]) * 48)
        paths.append(p)
    return paths


def _load(path: Path) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), np.uint8).reshape(4, 4, 3).copy()


def test_second_run_only_processes_new_or_changed_photos(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", [10, 20, 0, 40])
    cache = DetectionCache(tmp_path / "cache")
    det = CountingDetector()
    first = detect_cached(det, paths, _load, cache, batch_size=3)
    assert det.seen == 4 and cache.stats() == {"hits": 0, "misses": 4, "corrupt": 0}
    assert first[2] == []  # nothing found is a result, and it is cached too

    second = detect_cached(det, paths, _load, cache)
    assert det.seen == 4 and cache.hits == 4
    for a, b in zip(first, second, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x.box, y.box)
            np.testing.assert_allclose(x.mask, y.mask)
            np.testing.assert_allclose(x.keypoints, y.keypoints)
            np.testing.assert_allclose(x.keypoint_scores, y.keypoint_scores)
            np.testing.assert_allclose(x.embedding, y.embedding)
            assert (x.score, x.label, x.keypoint_names, x.image_size) == (
                pytest.approx(y.score),
                y.label,
                y.keypoint_names,
                y.image_size,
            )

    paths[1].write_bytes(bytes([99]) * 48)  # edited photo -> new content hash
    third = detect_cached(det, paths, _load, cache)
    assert det.seen == 5
    assert third[1][0].box[2] == pytest.approx(99.0)


def test_settings_and_model_are_part_of_the_key(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", [10, 20])
    cache = DetectionCache(tmp_path / "cache")
    detect_cached(CountingDetector(0.0), paths, _load, cache)
    other = CountingDetector(0.5)
    detect_cached(other, paths, _load, cache)
    assert other.seen == 2
    h = cache.photo_hash(paths[0])
    assert cache.key(h, "a", {"x": 1}) != cache.key(h, "b", {"x": 1}) != cache.key(h, "a", {"x": 2})
    assert cache.key(h, "a", {"x": 1, "y": 2}) == cache.key(h, "a", {"y": 2, "x": 1})


def test_renamed_photo_keeps_its_entry(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", [10])
    cache = DetectionCache(tmp_path / "cache")
    det = CountingDetector()
    detect_cached(det, paths, _load, cache)
    moved = paths[0].rename(tmp_path / "renamed.raw")
    detect_cached(det, [moved], _load, cache)
    assert det.seen == 1 and cache.hits == 1


def test_corrupt_entry_is_recomputed(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", [10])
    cache = DetectionCache(tmp_path / "cache")
    det = CountingDetector()
    detect_cached(det, paths, _load, cache)
    (entry,) = list((tmp_path / "cache").rglob("*.npz"))
    entry.write_bytes(b"PK\x03\x04 truncated")
    again = detect_cached(det, paths, _load, cache)
    assert det.seen == 2 and cache.corrupt == 1 and cache.hits == 0
    assert again[0][0].box[2] == pytest.approx(10.0)
    detect_cached(det, paths, _load, cache)  # rewritten entry is good again
    assert det.seen == 2 and cache.hits == 1


def test_arrays_round_trip_and_foreign_npz_counts_as_corrupt(tmp_path: Path) -> None:
    cache = DetectionCache(tmp_path)
    emb = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    assert cache.load_array("emb", "k1") is None
    cache.save_array("emb", "k1", emb)
    np.testing.assert_array_equal(cache.load_array("emb", "k1"), emb)
    path = next(tmp_path.rglob("k1.npz"))
    np.savez(path.open("wb"), other=np.zeros(2))
    assert cache.load_array("emb", "k1") is None
    assert cache.stats() == {"hits": 1, "misses": 2, "corrupt": 1}


def test_disabled_cache_never_hits_or_writes(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", [10])
    cache = DetectionCache(tmp_path / "cache", enabled=False)
    det = CountingDetector()
    detect_cached(det, paths, _load, cache)
    detect_cached(det, paths, _load, cache)
    assert det.seen == 2 and not (tmp_path / "cache").exists()


def test_default_cache_dir_honours_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNIMATE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ALIGNIMATE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "alignimate"
    assert DetectionCache().root == tmp_path / "xdg" / "alignimate"


def test_photo_hash_is_sha256_of_bytes(tmp_path: Path) -> None:
    import hashlib

    p = tmp_path / "x.bin"
    data = bytes(range(256)) * 9000  # several read chunks
    p.write_bytes(data)
    assert DetectionCache(tmp_path).photo_hash(p) == hashlib.sha256(data).hexdigest()
