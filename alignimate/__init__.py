"""alignimate: align photo series onto one reference and turn them into animations.

The Python API mirrors the command line::

    import alignimate
    result = alignimate.align_folder("photos/", "aligned/")          # alignimate register
    alignimate.animate("aligned/", "timeline.mp4", fps=12)            # alignimate animate

and exposes the engine and the core for tensors::

    result = alignimate.register(moving, fixed, "similarity")          # (B, C, H, W) tensors
    aligned = result.warp(moving_full_resolution)

Names are imported on first use, so ``import alignimate`` (and the CLI's ``--help``) stays fast.
"""

from __future__ import annotations

from alignimate.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "register": "alignimate.registration",
    "register_points": "alignimate.registration",
    "RegistrationResult": "alignimate.registration",
    "align_folder": "alignimate.pipeline",
    "apply_transforms": "alignimate.pipeline",
    "animate": "alignimate.pipeline",
    "AlignResult": "alignimate.pipeline",
    "UsageError": "alignimate.pipeline",
}

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
