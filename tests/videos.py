"""Small synthetic videos for the video-input tests, with exactly known content and motion.

``jittered_scene`` films a window of ``sample_data/scenes/scene_00.jpg`` the way a hand-held camera
would: every frame is the scene seen through a slightly shifted and rotated window, with the exact
matrix that maps the frame's pixels to the scene's. Frame 0 is the steady window, and a steady
video repeats it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

__all__ = ["SCENE", "ffmpeg", "grey_frames", "jittered_scene", "steady_scene", "write_video"]

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "scenes" / "scene_00.jpg"
WINDOW_HW = (240, 320)


def ffmpeg(*args: str) -> None:
    """Run the ffmpeg that imageio-ffmpeg ships (for what its writer cannot do: timestamps, rotation)."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True, capture_output=True)


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 25.0, quality: float = 9.0) -> Path:
    """Encode ``(H, W, 3)`` uint8 frames (sides multiples of 16) as H.264 (``.mp4``/``.mov``/``.mkv``)
    or VP9 (``.webm``)."""
    h, w = frames[0].shape[:2]
    codec = "libvpx-vp9" if path.suffix == ".webm" else "libx264"
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, quality=quality, codec=codec, macro_block_size=16
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def grey_frames(n: int, hw: tuple[int, int] = (64, 96), step: int = 8, noise: int = 0) -> list[np.ndarray]:
    """Grey frames whose mean level tells their index: frame ``i`` is ``16 + step * i``, flat, or with
    zero-mean noise of +-``noise`` levels (which makes every frame cost many bytes to encode)."""
    rng = np.random.default_rng(1)
    frames = []
    for i in range(n):
        level = np.full((*hw, 1), 16 + step * i, np.int16)
        if noise:
            level = level + rng.integers(-noise, noise + 1, (*hw, 1), dtype=np.int16)
        frames.append(np.repeat(np.clip(level, 0, 255).astype(np.uint8), 3, axis=2))
    return frames


def _similarity(angle_deg: float, shift: tuple[float, float], centre: tuple[float, float]) -> np.ndarray:
    """Rotation by ``angle_deg`` about ``centre``, then translation by ``shift`` (x, y), as 3x3."""
    a = np.deg2rad(angle_deg)
    cx, cy = centre
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    to_centre = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    back = np.array([[1.0, 0.0, cx + shift[0]], [0.0, 1.0, cy + shift[1]], [0.0, 0.0, 1.0]])
    return back @ rot @ to_centre


def _film(scene: Image.Image, scene_H_frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The frame whose pixel (x, y) shows the scene at ``scene_H_frame @ (x, y, 1)``."""
    a, b, c, d, e, f = scene_H_frame[:2].ravel()
    return np.asarray(
        scene.transform((hw[1], hw[0]), Image.Transform.AFFINE, (a, b, c, d, e, f), Image.BICUBIC)
    )


def jittered_scene(
    n: int, *, max_shift: float = 4.0, max_angle_deg: float = 0.4, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` frames of a hand-held view of the scene, and for each the 3x3 matrix mapping its pixels to
    the scene's pixels. Frame 0 is the steady window (no jitter); the others are shifted by up to
    ``max_shift`` pixels (sub-pixel amounts) and rotated by up to ``max_angle_deg`` about the centre."""
    rng = np.random.default_rng(seed)
    with Image.open(SCENE) as image:
        scene = image.convert("RGB")
    h, w = WINDOW_HW
    origin = np.array([[1.0, 0.0, (scene.width - w) / 2], [0.0, 1.0, (scene.height - h) / 2], [0, 0, 1.0]])
    frames, matrices = [], []
    for k in range(n):
        if k == 0:
            jitter = np.eye(3)
        else:
            shift = tuple(rng.uniform(-max_shift, max_shift, 2))
            jitter = _similarity(rng.uniform(-max_angle_deg, max_angle_deg), shift, (w / 2, h / 2))
        scene_H_frame = origin @ jitter
        frames.append(_film(scene, scene_H_frame, WINDOW_HW))
        matrices.append(scene_H_frame)
    return frames, matrices


def steady_scene(n: int) -> list[np.ndarray]:
    """``n`` copies of the steady window (frame 0 of `jittered_scene`)."""
    frames, _ = jittered_scene(1)
    return [frames[0].copy() for _ in range(n)]
