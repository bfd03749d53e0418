"""Photo input and output: finding, reading and ordering photos, atomic writes, animations, captions,
and video files read as a series of frames (:mod:`alignimate.io.video`).

Arrays here are numpy ``(H, W, 3)`` uint8 RGB images (height first); converting them to the
core's ``(B, C, H, W)`` float tensors is the caller's job. The full-resolution frame path
(:mod:`alignimate.io.planes`) decodes and encodes without the copies Pillow's arrays cost, as numpy
arrays or as ``(3, H, W)`` uint8 torch tensors. Nothing here imports torch at import time.
"""

from __future__ import annotations

from alignimate.io.animation import (
    AnimationInfo,
    AnimationWriter,
    LazyFrames,
    check_fps,
    count_output_frames,
    write_animation,
)
from alignimate.io.captions import draw_caption, format_age, format_caption
from alignimate.io.images import (
    SUPPORTED_SUFFIXES,
    PhotoError,
    PhotoInfo,
    UnusableEntry,
    find_images,
    probe_image,
    read_image,
    read_images_parallel,
    scan_folder,
)
from alignimate.io.ordering import exif_datetime, natural_key, sort_photos
from alignimate.io.planes import read_image_pixels, read_image_planes, save_image_pixels, save_image_planes
from alignimate.io.video import (
    VIDEO_SUFFIXES,
    VideoFrame,
    VideoInfo,
    is_video_file,
    iter_video_frames,
    probe_video,
    sample_indices,
)
from alignimate.io.writing import atomic_write, save_image, write_csv, write_json

__all__ = [
    "SUPPORTED_SUFFIXES",
    "VIDEO_SUFFIXES",
    "AnimationInfo",
    "AnimationWriter",
    "LazyFrames",
    "PhotoError",
    "PhotoInfo",
    "UnusableEntry",
    "VideoFrame",
    "VideoInfo",
    "atomic_write",
    "check_fps",
    "count_output_frames",
    "draw_caption",
    "exif_datetime",
    "find_images",
    "format_age",
    "format_caption",
    "is_video_file",
    "iter_video_frames",
    "natural_key",
    "probe_image",
    "probe_video",
    "read_image",
    "read_image_pixels",
    "read_image_planes",
    "read_images_parallel",
    "sample_indices",
    "save_image",
    "save_image_pixels",
    "save_image_planes",
    "scan_folder",
    "sort_photos",
    "write_animation",
    "write_csv",
    "write_json",
]
