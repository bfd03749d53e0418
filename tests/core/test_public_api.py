"""The names the issue requires in ``alignimate.core`` exist and are the documented functions."""

import inspect

import alignimate.core as core

REQUIRED = [
    "warp_affine",
    "warp_perspective",
    "gaussian_blur2d",
    "sobel",
    "spatial_gradient",
    "pyrdown",
    "build_pyramid",
    "keypoint_heatmaps",
    "rgb_to_grayscale",
    "ssim",
    "psnr",
    "zncc",
    "estimate_similarity",
    "estimate_affine",
    "estimate_homography",
    "transform_points",
]


def test_required_names_are_exported_with_docstrings() -> None:
    for name in REQUIRED:
        assert name in core.__all__, name
        fn = getattr(core, name)
        assert callable(fn), name
        assert fn.__doc__ and "(B" in fn.__doc__, f"{name} docstring must state shapes"


def test_all_has_no_duplicates_and_everything_resolves() -> None:
    assert len(core.__all__) == len(set(core.__all__))
    for name in core.__all__:
        assert hasattr(core, name), name


def test_signatures_follow_the_issue() -> None:
    assert list(inspect.signature(core.warp_perspective).parameters)[:3] == ["images", "dst_H_src", "dsize"]
    assert list(inspect.signature(core.warp_affine).parameters)[:3] == ["images", "dst_A_src", "dsize"]
    assert list(inspect.signature(core.gaussian_blur2d).parameters)[:3] == ["images", "kernel_size", "sigma"]
    params = list(inspect.signature(core.estimate_similarity).parameters)
    assert params[:3] == ["src_points", "dst_points", "weights"]
