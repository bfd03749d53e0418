from __future__ import annotations

import errno
import json
import os
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alignimate.detect import cache as cache_mod
from alignimate.detect.base import Instance
from alignimate.detect.cache import CacheWarning, DetectionCache, default_cache_dir, detect_cached


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
    warned: list[str] = []
    cache = DetectionCache(tmp_path / "cache", warn=warned.append)
    det = CountingDetector()
    detect_cached(det, paths, _load, cache)
    (entry,) = list((tmp_path / "cache").rglob("*.npz"))
    entry.write_bytes(b"PK\x03\x04 truncated")
    again = detect_cached(det, paths, _load, cache)
    assert det.seen == 2 and cache.corrupt == 1 and cache.hits == 0 and len(warned) == 1
    assert again[0][0].box[2] == pytest.approx(10.0)
    detect_cached(det, paths, _load, cache)  # rewritten entry is good again
    assert det.seen == 2 and cache.hits == 1


def test_arrays_round_trip_and_foreign_npz_counts_as_corrupt(tmp_path: Path) -> None:
    warned: list[str] = []
    cache = DetectionCache(tmp_path, warn=warned.append)
    emb = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    assert cache.load_array("emb", "k1") is None
    cache.save_array("emb", "k1", emb)
    np.testing.assert_array_equal(cache.load_array("emb", "k1"), emb)
    path = next(tmp_path.rglob("k1.npz"))
    np.savez(path.open("wb"), other=np.zeros(2))
    assert cache.load_array("emb", "k1") is None
    assert cache.stats() == {"hits": 1, "misses": 2, "corrupt": 1} and len(warned) == 1


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


# -- a hostile or broken cache (issue #12) ----------------------------------------------------------


def _assert_same(got: list[list[Instance]], want: list[list[Instance]]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            for field in ("box", "mask", "keypoints", "keypoint_scores", "embedding"):
                xv, yv = getattr(x, field), getattr(y, field)
                assert (xv is None) == (yv is None), field
                if xv is not None:
                    np.testing.assert_allclose(xv, yv, rtol=1e-3, err_msg=field)
            assert x.score == pytest.approx(y.score)
            assert (x.label, x.keypoint_names, tuple(x.image_size or ())) == (
                y.label,
                y.keypoint_names,
                tuple(y.image_size or ()),
            )


def _expected(paths: list[Path]) -> list[list[Instance]]:
    return CountingDetector().detect([_load(p) for p in paths])


def _entry(cache: DetectionCache, path: Path) -> Path:
    """The detections entry of ``path`` under CountingDetector, found on disk by its key."""
    det = CountingDetector()
    key = cache.key(cache.photo_hash(path), det.name, det.settings())
    (entry,) = list(cache.root.rglob(f"{key}.npz"))
    return entry


def _arrays(entry: Path) -> dict[str, np.ndarray]:
    with np.load(entry, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")] if root.is_dir() else []


def _set_meta(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, np.ndarray]], None]:
    def tamper(data: dict[str, np.ndarray]) -> None:
        meta = json.loads(str(data["meta"]))
        change(meta[0])
        data["meta"] = np.array(json.dumps(meta))

    return tamper


def _set(name: str, value: Any) -> Callable[[dict[str, np.ndarray]], None]:
    def tamper(data: dict[str, np.ndarray]) -> None:
        if value is None:
            del data[name]
        else:
            data[name] = value

    return tamper


def _field(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        if value is _DELETE:
            del m[name]
        else:
            m[name] = value

    return change


_DELETE = object()
_OK_META = '{"box": [0, 0, 1, 1], "score": 0.5, "label": "x", "keypoint_names": null, "image_size": null}'

TAMPERS: dict[str, Callable[[dict[str, np.ndarray]], None]] = {
    "box-3-values": _set_meta(_field("box", [0, 0, 1])),
    "box-nan": _set_meta(_field("box", [0, 0, float("nan"), 1])),
    "box-overflows-float32": _set_meta(_field("box", [0, 0, 1e300, 1])),
    "box-text": _set_meta(_field("box", "0 0 1 1")),
    "box-bools": _set_meta(_field("box", [True, False, True, True])),
    "box-nested": _set_meta(_field("box", [[0, 0], [1, 1]])),
    "score-infinite": _set_meta(_field("score", float("inf"))),
    "score-text": _set_meta(_field("score", "0.9")),
    "score-huge-int": _set_meta(_field("score", 10**400)),
    "label-number": _set_meta(_field("label", 5)),
    "label-missing": _set_meta(_field("label", _DELETE)),
    "names-not-text": _set_meta(_field("keypoint_names", [1, 2])),
    "names-wrong-length": _set_meta(_field("keypoint_names", ["a"])),
    "size-zero": _set_meta(_field("image_size", [0, 4])),
    "size-one-value": _set_meta(_field("image_size", [4])),
    "size-float": _set_meta(_field("image_size", [4.0, 4])),
    "size-bool": _set_meta(_field("image_size", [True, 4])),
    "size-huge": _set_meta(_field("image_size", [10**40, 4])),
    "meta-object-not-list": _set("meta", np.array('{"a": 1}')),
    "meta-list-of-numbers": _set("meta", np.array("[1, 2]")),
    "meta-numeric-array": _set("meta", np.arange(3)),
    "meta-1d-text": _set("meta", np.array(["[]", "[]"])),
    "meta-missing": _set("meta", None),
    "meta-not-json": _set("meta", np.array("[{'box': 1}]")),
    "meta-deeply-nested": _set("meta", np.array("[" * 200_000 + "]" * 200_000)),
    "meta-int-too-long": _set("meta", np.array(_OK_META.replace("0.5", "1" * 5000).join("[]"))),
    "mask-1d": _set("mask_0", np.zeros(6, np.float16)),
    "mask-3d": _set("mask_0", np.zeros((2, 2, 2), np.float16)),
    "mask-empty": _set("mask_0", np.zeros((0, 4), np.float16)),
    "mask-inf": _set("mask_0", np.full((4, 6), np.inf, np.float16)),
    "mask-text": _set("mask_0", np.array([["a", "b"]])),
    "mask-complex": _set("mask_0", np.ones((4, 6), np.complex64)),
    "mask-structured": _set("mask_0", np.zeros((4, 6), [("a", "f4")])),
    "mask-object-dtype": _set("mask_0", np.array([[{}, None]], dtype=object)),
    "keypoints-k-by-3": _set("keypoints_0", np.zeros((2, 3), np.float32)),
    "keypoints-1d": _set("keypoints_0", np.zeros(4, np.float32)),
    "keypoints-nan": _set("keypoints_0", np.full((2, 2), np.nan, np.float32)),
    "keypoint-scores-wrong-length": _set("keypoint_scores_0", np.zeros(3, np.float32)),
    "keypoint-scores-2d": _set("keypoint_scores_0", np.zeros((2, 1), np.float32)),
    "keypoint-scores-without-keypoints": _set("keypoints_0", None),
    "embedding-2d": _set("embedding_0", np.zeros((1, 2), np.float32)),
    "embedding-nan": _set("embedding_0", np.array([np.nan, 1], np.float32)),
    "embedding-huge-float64": _set("embedding_0", np.array([1e300, 1], np.float64)),
}


@pytest.mark.parametrize("tamper", list(TAMPERS.values()), ids=list(TAMPERS))
def test_wrongly_shaped_entry_is_recomputed_and_replaced(
    tmp_path: Path, tamper: Callable[[dict[str, np.ndarray]], None]
) -> None:
    paths = _photos(tmp_path / "photos", [10, 20])
    detect_cached(CountingDetector(), paths, _load, DetectionCache(tmp_path / "cache"))
    entry = _entry(DetectionCache(tmp_path / "cache"), paths[0])
    data = _arrays(entry)
    tamper(data)
    with entry.open("wb") as f:
        np.savez(f, **data)

    warned: list[str] = []
    cache = DetectionCache(tmp_path / "cache", warn=warned.append)
    det = CountingDetector()
    got = detect_cached(det, paths, _load, cache)
    _assert_same(got, _expected(paths))
    assert det.seen == 1  # only the bad entry's photo
    assert cache.stats() == {"hits": 1, "misses": 1, "corrupt": 1}
    assert len(warned) == 1 and str(entry) in warned[0]

    # Replaced by the recomputed entry: a fresh run reads it without detecting anything.
    fresh, det2 = DetectionCache(tmp_path / "cache", warn=warned.append), CountingDetector()
    _assert_same(detect_cached(det2, paths, _load, fresh), _expected(paths))
    assert det2.seen == 0 and fresh.stats() == {"hits": 2, "misses": 0, "corrupt": 0}
    assert len(warned) == 1 and _temp_files(tmp_path / "cache") == []


def _write_npy(entry: Path) -> None:
    with entry.open("wb") as f:
        np.save(f, np.zeros(3))


def _write_zip_with_text_member(entry: Path) -> None:
    with zipfile.ZipFile(entry, "w") as z:
        z.writestr("meta.npy", b"")
        z.writestr("notes.txt", b"not an array")


def _write_truncated(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:100])


def _write_oversized(entry: Path) -> None:
    with entry.open("r+b") as f:  # sparse: costs no disk space, only the size check sees it
        f.truncate((64 << 20) + 1)


def _write_unpickled_object(entry: Path) -> None:
    with entry.open("wb") as f:
        np.savez(f, meta=np.array([{"box": 1}], dtype=object))


def _write_dev_null_link(entry: Path) -> None:
    entry.unlink()
    entry.symlink_to(os.devnull)


def _write_fifo(entry: Path) -> None:
    entry.unlink()
    os.mkfifo(entry)


BAD_FILES: dict[str, Callable[[Path], None]] = {
    "garbage-bytes": lambda e: e.write_bytes(bytes(range(256)) * 40),
    "empty": lambda e: e.write_bytes(b""),
    "zip-magic-then-garbage": lambda e: e.write_bytes(b"PK\x03\x04" + b"\xff" * 500),
    "truncated-archive": _write_truncated,
    "single-npy": _write_npy,
    "zip-member-not-npy": _write_zip_with_text_member,
    "pickled-object-array": _write_unpickled_object,
    "larger-than-64-mib": _write_oversized,
    "link-to-device": _write_dev_null_link,
}
if hasattr(os, "mkfifo"):
    BAD_FILES["fifo"] = _write_fifo  # opening it for reading would block the run


@pytest.mark.parametrize("spoil", list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_unreadable_entry_is_recomputed_and_replaced(tmp_path: Path, spoil: Callable[[Path], None]) -> None:
    paths = _photos(tmp_path / "photos", [10, 0, 30])
    detect_cached(CountingDetector(), paths, _load, DetectionCache(tmp_path / "cache"))
    entry = _entry(DetectionCache(tmp_path / "cache"), paths[0])
    spoil(entry)

    warned: list[str] = []
    cache = DetectionCache(tmp_path / "cache", warn=warned.append)
    det = CountingDetector()
    _assert_same(detect_cached(det, paths, _load, cache), _expected(paths))
    assert det.seen == 1 and cache.stats() == {"hits": 2, "misses": 1, "corrupt": 1}
    assert len(warned) == 1 and "unreadable detection cache entry" in warned[0]
    st = os.lstat(entry)
    assert stat.S_ISREG(st.st_mode) and st.st_size < (1 << 20)  # a fresh entry, link/FIFO replaced
    again = CountingDetector()
    detect_cached(again, paths, _load, DetectionCache(tmp_path / "cache"))
    assert again.seen == 0


def test_folder_in_place_of_an_entry_is_a_miss_and_left_alone(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", [10, 20])
    detect_cached(CountingDetector(), paths[:1], _load, DetectionCache(tmp_path / "cache"))
    entry = _entry(DetectionCache(tmp_path / "cache"), paths[0])
    entry.unlink()
    entry.mkdir()
    (entry / "keep.txt").write_text("not the cache's to delete")

    warned: list[str] = []
    cache = DetectionCache(tmp_path / "cache", warn=warned.append)
    for run in range(2):
        det = CountingDetector()
        _assert_same(detect_cached(det, paths, _load, cache), _expected(paths))
        # The folder blocks only its own entry: the other photo is written, then read back.
        assert det.seen == (2 if run == 0 else 1)
    assert cache.stats() == {"hits": 1, "misses": 3, "corrupt": 2}
    assert len(warned) == 1 and "unreadable" in warned[0]  # no "cannot be written" warning
    assert (entry / "keep.txt").read_text() == "not the cache's to delete"
    assert _temp_files(tmp_path / "cache") == []


def test_dangling_link_entry_is_a_plain_miss(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", [10])
    detect_cached(CountingDetector(), paths, _load, DetectionCache(tmp_path / "cache"))
    entry = _entry(DetectionCache(tmp_path / "cache"), paths[0])
    entry.unlink()
    entry.symlink_to(tmp_path / "nowhere")
    warned: list[str] = []
    cache = DetectionCache(tmp_path / "cache", warn=warned.append)
    det = CountingDetector()
    _assert_same(detect_cached(det, paths, _load, cache), _expected(paths))
    assert det.seen == 1 and cache.stats() == {"hits": 0, "misses": 1, "corrupt": 0} and warned == []
    assert not entry.is_symlink() and entry.is_file() and not (tmp_path / "nowhere").exists()


def _assert_write_warning(warned: list[str], root: Path) -> None:
    assert len(warned) == 1, warned
    assert f"detection cache {root} cannot be written" in warned[0]
    assert "$ALIGNIMATE_CACHE" in warned[0] and "--no-cache" in warned[0]


@pytest.mark.parametrize("where", ["root", "parent"])
def test_cache_path_that_is_a_file_warns_once_and_the_run_goes_on(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"someone else's file")
    root = blocker if where == "root" else blocker / "cache"
    paths = _photos(tmp_path / "photos", [10, 20, 0, 40, 50, 60, 70])
    warned: list[str] = []
    cache = DetectionCache(root, warn=warned.append)
    det = CountingDetector()
    for run in (1, 2):
        _assert_same(detect_cached(det, paths, _load, cache, batch_size=3), _expected(paths))
        assert det.seen == 7 * run
    assert cache.stats() == {"hits": 0, "misses": 14, "corrupt": 0}
    _assert_write_warning(warned, root)
    assert "not a folder" in warned[0] or "Not a directory" in warned[0]
    assert blocker.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "photos"]


def _fail_mkdir(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        calls.append(1)
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(os, "mkdir", mkdir)
    return calls


def _fail_mkstemp(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        calls.append(1)
        raise PermissionError(errno.EACCES, "Permission denied", str(kwargs.get("dir")))

    monkeypatch.setattr(cache_mod.tempfile, "mkstemp", mkstemp)
    return calls


def _fail_savez(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def savez_compressed(f: Any, **arrays: Any) -> None:
        calls.append(1)
        f.write(b"PK\x03\x04 half an archive")  # the disk fills up mid-entry
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod.np, "savez_compressed", savez_compressed)
    return calls


def _fail_replace(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def replace(src: Any, dst: Any) -> None:
        calls.append(1)
        raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", replace)
    return calls


FAILURES: dict[str, Callable[[pytest.MonkeyPatch], list[int]]] = {
    "read-only-mkdir": _fail_mkdir,
    "permission-denied-mkstemp": _fail_mkstemp,
    "disk-full-while-writing": _fail_savez,
    "disk-full-at-replace": _fail_replace,
}


@pytest.mark.parametrize("fail", list(FAILURES.values()), ids=list(FAILURES))
def test_unwritable_cache_warns_once_keeps_reading_and_leaves_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: Callable[[pytest.MonkeyPatch], list[int]]
) -> None:
    root = tmp_path / "cache"
    paths = _photos(tmp_path / "photos", [10, 20, 30, 0, 50, 60, 70, 80])
    detect_cached(CountingDetector(), paths[:2], _load, DetectionCache(root))  # two good entries
    before = sorted(p for p in root.rglob("*") if not p.is_dir())

    calls = fail(monkeypatch)
    warned: list[str] = []
    calls_when_warned: list[int] = []

    def warn(message: str) -> None:
        warned.append(message)
        calls_when_warned.append(len(calls))

    cache = DetectionCache(root, warn=warn)
    det = CountingDetector()
    for run in (1, 2):
        _assert_same(detect_cached(det, paths, _load, cache, batch_size=2), _expected(paths))
        assert det.seen == 6 * run  # the two old entries are still read
    assert cache.stats() == {"hits": 4, "misses": 12, "corrupt": 0}
    _assert_write_warning(warned, root)
    assert calls_when_warned == [len(calls)]  # after the first failed write it stops trying
    monkeypatch.undo()
    # No temp file, no half entry: the files are the two good entries (some folders may be new).
    assert sorted(p for p in root.rglob("*") if not p.is_dir()) == before and len(before) == 2


def test_read_only_folder_for_real(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        probe = parent / "probe"
        try:
            probe.mkdir()
        except PermissionError:
            pass
        else:
            probe.rmdir()
            pytest.skip("this user can write to a 0o500 folder (root); see the monkeypatched tests")
        warned: list[str] = []
        cache = DetectionCache(parent / "cache", warn=warned.append)
        paths = _photos(tmp_path / "photos", [10, 20, 30])
        det = CountingDetector()
        _assert_same(detect_cached(det, paths, _load, cache, batch_size=1), _expected(paths))
        assert det.seen == 3
        _assert_write_warning(warned, parent / "cache")
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o700)


def test_link_inside_the_cache_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "cache"
    root.mkdir()
    (root / "detections").symlink_to(outside, target_is_directory=True)
    warned: list[str] = []
    cache = DetectionCache(root, warn=warned.append)
    paths = _photos(tmp_path / "photos", [10, 20])
    det = CountingDetector()
    _assert_same(detect_cached(det, paths, _load, cache), _expected(paths))
    assert det.seen == 2 and list(outside.iterdir()) == []
    _assert_write_warning(warned, root)
    assert "link" in warned[0]


def test_default_warning_is_a_cache_warning(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_bytes(b"x")
    paths = _photos(tmp_path / "photos", [10, 20])
    with pytest.warns(CacheWarning, match="cannot be written") as record:
        got = detect_cached(CountingDetector(), paths, _load, DetectionCache(root))
    _assert_same(got, _expected(paths))
    assert len([w for w in record if issubclass(w.category, CacheWarning)]) == 1


def test_many_bad_entries_give_one_warning(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", list(range(10, 130, 10)))
    detect_cached(CountingDetector(), paths, _load, DetectionCache(tmp_path / "cache"))
    for entry in (tmp_path / "cache").rglob("*.npz"):
        entry.write_bytes(b"garbage")
    warned: list[str] = []
    cache = DetectionCache(tmp_path / "cache", warn=warned.append)
    det = CountingDetector()
    _assert_same(detect_cached(det, paths, _load, cache, batch_size=5), _expected(paths))
    assert det.seen == 12 and cache.corrupt == 12 and len(warned) == 1


def test_disabled_cache_never_warns_about_a_bad_path(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_bytes(b"x")
    warned: list[str] = []
    cache = DetectionCache(root, enabled=False, warn=warned.append)
    det = CountingDetector()
    paths = _photos(tmp_path / "photos", [10])
    _assert_same(detect_cached(det, paths, _load, cache), _expected(paths))
    assert det.seen == 1 and warned == [] and root.read_bytes() == b"x"


BAD_ARRAYS: dict[str, Any] = {
    "object-dtype": np.array([{"a": 1}, None], dtype=object),
    "nan": np.array([[0.5, np.nan]], np.float32),
    "inf": np.array([np.inf], np.float64),
    "zero-d": np.array(3.0),
    "text": np.array(["a", "b"]),
    "complex": np.ones(2, np.complex64),
    "structured": np.zeros(2, [("a", "f4")]),
}


@pytest.mark.parametrize("bad", list(BAD_ARRAYS.values()), ids=list(BAD_ARRAYS))
def test_load_array_refuses_what_is_not_a_finite_numeric_array(tmp_path: Path, bad: np.ndarray) -> None:
    warned: list[str] = []
    cache = DetectionCache(tmp_path, warn=warned.append)
    good = np.array([[0.6, 0.8]], np.float32)
    cache.save_array("emb", "k1", good)
    path = next(tmp_path.rglob("k1.npz"))
    with path.open("wb") as f:
        np.savez(f, array=bad)
    assert cache.load_array("emb", "k1") is None
    assert cache.stats() == {"hits": 0, "misses": 1, "corrupt": 1} and len(warned) == 1
    cache.save_array("emb", "k1", good)  # the recomputed array replaces it
    np.testing.assert_array_equal(cache.load_array("emb", "k1"), good)
    assert len(warned) == 1


def test_load_array_gives_native_byte_order(tmp_path: Path) -> None:
    cache = DetectionCache(tmp_path)
    cache.save_array("emb", "k1", np.zeros(1))
    path = next(tmp_path.rglob("k1.npz"))
    swapped = np.array([1.5, -2.0], np.float32).astype(np.dtype(np.float32).newbyteorder("S"))
    with path.open("wb") as f:
        np.savez(f, array=swapped)
    got = cache.load_array("emb", "k1")
    assert got is not None and got.dtype.isnative
    np.testing.assert_array_equal(got, [1.5, -2.0])


def test_archive_that_unpacks_too_large_is_corrupt_and_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_mod, "_MAX_UNPACKED_BYTES", 10_000)
    warned: list[str] = []
    cache = DetectionCache(tmp_path, warn=warned.append)
    big = np.zeros(5_000, np.float32)  # 20 kB unpacked, a few hundred bytes packed
    cache.save_array("emb", "big", big)
    assert list(tmp_path.rglob("*.npz")) == [] and _temp_files(tmp_path) == []
    cache.save_array("emb", "small", np.zeros(4))
    path = next(tmp_path.rglob("small.npz"))
    with path.open("wb") as f:
        np.savez_compressed(f, array=big)
    assert path.stat().st_size < 10_000
    assert cache.load_array("emb", "small") is None and cache.corrupt == 1
    assert len(warned) == 1 and "unpacks to" in warned[0]


def test_entry_too_large_on_disk_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "_MAX_ENTRY_BYTES", 100)
    warned: list[str] = []
    cache = DetectionCache(tmp_path, warn=warned.append)
    cache.save_array("emb", "k1", np.arange(1000, dtype=np.float32))
    assert list(tmp_path.rglob("*.npz")) == [] and _temp_files(tmp_path) == [] and warned == []
    assert cache.load_array("emb", "k1") is None and cache.corrupt == 0


def test_keys_cannot_leave_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "cache"
    cache = DetectionCache(root)
    cache.save_array("emb", "../../../../escape", np.ones(2))
    assert [p for p in tmp_path.rglob("*.npz") if root not in p.parents] == []
    np.testing.assert_array_equal(cache.load_array("emb", "../../../../escape"), np.ones(2))
