"""Video frames as JPEG or PNG: the cost of writing them, their size, what JPEG loses, and whether
that changes how well a hand-held video registers.

    python benchmarks/video_frames.py                  # 20 frames of 1920x1080
    python benchmarks/video_frames.py --frames 40 --size 1280x720

A hand-held video is synthesised from sample_data/scenes/scene_00.jpg (scaled up, with fixed-seed
sensor noise): every frame shows the scene through a window shifted by up to 12 px and rotated by
up to 0.4 degrees, with the exact matrix known, and is encoded as H.264 (imageio-ffmpeg, quality 8).
For each frame format, ``frames_from_video`` writes every frame (timed), the PSNR of the written
frames against the decoded ones is measured, and ``align_folder`` (similarity, working size 512)
registers them onto the first frame. The residual jitter between consecutive aligned frames is the
mean length, over a grid of the common crop, of the difference of their leftover displacement
fields (true matrix against the found one), in output pixels.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

from alignimate.io import iter_video_frames, read_image
from alignimate.pipeline.outputs import OutputFolder
from alignimate.pipeline.register_folder import align_folder
from alignimate.pipeline.video_input import frames_from_video

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "scenes" / "scene_00.jpg"


def hand_held(count: int, hw: tuple[int, int], seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames and, for each, the 3x3 matrix mapping its pixels to the scene's."""
    h, w = hw
    rng = np.random.default_rng(seed)
    with Image.open(SCENE) as image:
        scale = 1.25 * max(w / image.width, h / image.height)
        big = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)))
    noisy = np.asarray(big).astype(np.int16) + rng.integers(-6, 7, (big.height, big.width, 3), dtype=np.int16)
    scene = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    origin = np.array([[1, 0, (scene.width - w) / 2], [0, 1, (scene.height - h) / 2], [0, 0, 1]], float)
    frames, matrices = [], []
    for k in range(count):
        angle = 0.0 if k == 0 else np.deg2rad(rng.uniform(-0.4, 0.4))
        shift = np.zeros(2) if k == 0 else rng.uniform(-12, 12, 2)
        c, s = np.cos(angle), np.sin(angle)
        centre = np.array([w / 2, h / 2])
        jitter = np.eye(3)
        jitter[:2, :2] = [[c, -s], [s, c]]
        jitter[:2, 2] = centre + shift - jitter[:2, :2] @ centre
        scene_H_frame = origin @ jitter
        affine = tuple(scene_H_frame[:2].ravel())
        filmed = scene.transform((w, h), Image.Transform.AFFINE, affine, Image.BICUBIC)
        frames.append(np.asarray(filmed))
        matrices.append(scene_H_frame)
    return frames, matrices


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def residual_jitter(out: Path, truth: list[np.ndarray]) -> list[float]:
    run = json.loads((out / "transforms.json").read_text())
    crop = run["crop"]
    ys, xs = np.mgrid[
        crop["top"] : crop["top"] + crop["height"] : 8, crop["left"] : crop["left"] + crop["width"] : 8
    ]
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)]).astype(float)
    fields = []
    for true_H, record in zip(truth, run["photos"], strict=True):
        mapped = true_H @ np.linalg.inv(np.asarray(record["matrix"])) @ points
        fields.append(mapped[:2] / mapped[2] - points[:2])
    return [float(np.linalg.norm(b - a, axis=0).mean()) for a, b in itertools.pairwise(fields)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", default="1920x1080", help="WxH of the video")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="alignimate-video-bench-"))
    try:
        frames, scene_H_frame = hand_held(args.frames, (h, w))
        video = work / "hand-held.mp4"
        writer = imageio_ffmpeg.write_frames(str(video), (w, h), fps=30, quality=8, macro_block_size=8)
        writer.send(None)
        for frame in frames:
            writer.send(frame)
        writer.close()
        decoded = {f.index: f.image.copy() for f in iter_video_frames(video)}
        truth = [np.linalg.inv(scene_H_frame[0]) @ m for m in scene_H_frame]
        print(f"{args.frames} frames of {w}x{h}, H.264 {video.stat().st_size / 1e6:.1f} MB")
        print("| format | write ms/frame | MB/frame | PSNR vs decoded (dB) | jitter median px | worst px |")
        print("|---|---:|---:|---:|---:|---:|")
        for fmt in ("jpg", "png"):
            with OutputFolder.open(work / f"out-{fmt}", command="bench") as folder:
                start = time.perf_counter()
                source = frames_from_video(video, folder, frame_format=fmt)
                seconds = time.perf_counter() - start
            files = sorted(source.glob(f"*.{fmt}"))
            size = statistics.mean(p.stat().st_size for p in files) / 1e6
            quality = statistics.median(psnr(read_image(p), decoded[i]) for i, p in enumerate(files))
            aligned = work / f"aligned-{fmt}"
            align_folder(source, aligned, model="similarity", workers=1, device="cpu")
            jitter = residual_jitter(aligned, truth)
            print(
                f"| {fmt} | {1000 * seconds / len(files):.0f} | {size:.2f} | {quality:.1f} | "
                f"{statistics.median(jitter):.3f} | {max(jitter):.3f} |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
