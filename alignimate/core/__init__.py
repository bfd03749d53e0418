"""alignimate's differentiable computer-vision core: pure, batched tensor ops with no I/O.

Images are ``(B, C, H, W)`` float tensors; points ``(B, N, 2)`` pixel ``(x, y)``; matrices
``dst_H_src`` ``(B, 3, 3)`` map source pixels to destination pixels. All conventions are stated
once in docs/conventions.md.

Modules: ``transforms`` (matrix builders, compose, invert, transform_points), ``warp`` (warps, crop,
pad), ``fit`` (closed-form fits from correspondences), ``filters`` (Gaussian, box, Sobel,
Laplacian), ``pyramid``, ``heatmaps``, ``resize``, ``color`` (colour and tensor/array conversion),
``color_match`` (gain/offset and histogram matching between images, as lookup tables),
``losses`` (losses and metrics, one value per image), ``consensus`` (RANSAC: robust fits from
correspondences with outliers), ``features`` (keypoints, descriptors and matching), ``morphology``
(window maxima and minima).
"""

from alignimate.core.color import *  # noqa: F403
from alignimate.core.color import __all__ as _color
from alignimate.core.color_match import *  # noqa: F403
from alignimate.core.color_match import __all__ as _color_match
from alignimate.core.consensus import *  # noqa: F403
from alignimate.core.consensus import __all__ as _consensus
from alignimate.core.coords import denormalize_pixel_matrix, normalize_pixel_matrix, pixel_grid
from alignimate.core.features import *  # noqa: F403
from alignimate.core.features import __all__ as _features
from alignimate.core.filters import *  # noqa: F403
from alignimate.core.filters import __all__ as _filters
from alignimate.core.fit import *  # noqa: F403
from alignimate.core.fit import __all__ as _fit
from alignimate.core.heatmaps import *  # noqa: F403
from alignimate.core.heatmaps import __all__ as _heatmaps
from alignimate.core.losses import *  # noqa: F403
from alignimate.core.losses import __all__ as _losses
from alignimate.core.morphology import *  # noqa: F403
from alignimate.core.morphology import __all__ as _morphology
from alignimate.core.pyramid import *  # noqa: F403
from alignimate.core.pyramid import __all__ as _pyramid
from alignimate.core.resize import *  # noqa: F403
from alignimate.core.resize import __all__ as _resize
from alignimate.core.transforms import *  # noqa: F403
from alignimate.core.transforms import __all__ as _transforms
from alignimate.core.warp import *  # noqa: F403
from alignimate.core.warp import __all__ as _warp

__all__ = [
    "denormalize_pixel_matrix",
    "normalize_pixel_matrix",
    "pixel_grid",
    *_color,
    *_color_match,
    *_features,
    *_filters,
    *_fit,
    *_heatmaps,
    *_losses,
    *_morphology,
    *_pyramid,
    *_consensus,
    *_resize,
    *_transforms,
    *_warp,
]
