"""Global initialisation by phase correlation (torch.fft, batched, on the images' device).

Both images are resampled into a common square *canvas* of ``n x n`` pixels that covers their
frames' ``[-1, 1]^2`` (see :mod:`alignimate.registration.frames`), so one canvas pixel is ``2 / n``
frame units for both images whatever their sizes. Then, for every pair:

1. rotation and scale from the log-polar phase correlation of the magnitude spectra (the
   Fourier-Mellin method): a rotation of the image rotates its magnitude spectrum and a scaling
   shrinks it, which in log-polar coordinates are shifts. Spectra of real images are symmetric, so
   the angle is known modulo 180 degrees and both candidates are kept;
2. translation from the phase correlation of the fixed canvas with the moving image resampled
   through each rotation/scale candidate;
3. the candidates (including "no rotation, no scale") go back to the engine, which refines each on
   the coarsest pyramid level and keeps the best, so the result is never worse than the plain
   translation estimate and a near-symmetric image cannot lock onto the 180-degree twin.

Everything is batched and free of host synchronisation; the candidates are frame models
``T (B, K, 3, 3)`` (fixed frame -> moving frame).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

from .sampling import products

__all__ = ["CANVAS", "CanvasView", "global_candidates", "phase_correlation"]

# Canvas side in pixels. At 64 px the estimates are good to a canvas pixel or two, well inside the
# Gauss-Newton basin on the ~32 px level where refinement starts; on the benchmark cases larger
# canvases cost several times more and were no more reliable (docs/benchmarks.md, design
# measurements).
CANVAS = 64
# Radii of the log-polar map in spectrum pixels: below ~n/32 the window's own spectrum dominates;
# above ~0.4 n the corners of the spectrum are aliased and noisy.
_MIN_RADIUS_FRACTION = 1.0 / 32.0
_MAX_RADIUS_FRACTION = 0.4


class CanvasView:
    """One image prepared for the canvas: a grey image ``(B|1, 1, h, w)`` at a resolution near the
    canvas, ``norm_H_frame (3, 3)`` (its frame -> ``grid_sample``'s normalised coordinates, in the
    image's dtype and device), ``half_extent`` ``(half_w, half_h)`` in frame units and an optional
    ``mask (B|1, 1, h, w)``: masked-out pixels get no weight on the canvas, with a soft edge so the
    mask's border does not become an edge the correlation locks onto."""

    def __init__(
        self,
        image: torch.Tensor,
        norm_H_frame: torch.Tensor,
        half_extent: tuple[float, float],
        mask: torch.Tensor | None = None,
    ) -> None:
        self.image = image
        self.norm_H_frame = norm_H_frame.to(image)
        self.inscribed_radius = min(half_extent)
        self.mask = mask


def global_candidates(
    moving: CanvasView, fixed: CanvasView, model_rank: int, canvas: int = CANVAS
) -> torch.Tensor:
    """Candidate frame models ``T (B, K, 3, 3)`` from phase correlation, for the caller to verify.

    ``model_rank`` is the motion model's rank (0 translation, 1 rigid, 2+ similarity and up).
    Translation gives ``K = 2`` candidates (the phase-correlation shift and no motion); the others
    ``K = 4``: no rotation or scale, the log-polar estimate and the same turned by 180 degrees, each
    with its phase-correlation shift (rigid models keep the scale at 1), and no motion at all.

    Why "no motion" too: the photos of a series are usually close to aligned already, and where an
    occluder or a smooth, low-contrast scene leaves phase correlation no clear peak, every shift it
    gives can be far off while the unmoved start lies within the refinement's reach.
    """
    dtype, device = moving.image.dtype, moving.image.device
    batch = max(moving.image.shape[0], fixed.image.shape[0])
    coords = _canvas_coords(canvas, dtype, device)
    window_f = _radial_window(coords, fixed.inscribed_radius, canvas)
    fixed_values, fixed_inside = _sample(fixed, None, coords, canvas)
    fixed_canvas = _apodise(fixed_values, fixed_inside * window_f)

    identity = torch.eye(3, dtype=dtype, device=device).expand(batch, 3, 3)
    linear = [identity]
    if model_rank >= 1:
        window_m = _radial_window(coords, moving.inscribed_radius, canvas)
        moving_values, moving_inside = _sample(moving, None, coords, canvas)
        moving_canvas = _apodise(moving_values, moving_inside * window_m)
        angle, log_scale = _rotation_scale(fixed_canvas, moving_canvas)
        if model_rank == 1:
            log_scale = torch.zeros_like(log_scale)
        linear += [
            _rotation_scale_matrix(angle, log_scale),
            _rotation_scale_matrix(angle + math.pi, log_scale),
        ]

    candidates = []
    for a in linear:
        values, inside = _sample(moving, a, coords, canvas)
        shift = phase_correlation(fixed_canvas, _apodise(values, inside * window_f)) * (2.0 / canvas)
        # I_f(x) = I_m(A x + t) = W(x + A^-1 t) with W = I_m(A .), so t = A @ shift.
        t = a.clone()
        t[:, :2, 2] = torch.einsum("bij,bj->bi", a[:, :2, :2], shift)
        candidates.append(t)
    candidates.append(identity)
    return torch.stack(candidates, dim=1)


def phase_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Shifts ``d (B, 2)`` as ``(dx, dy)`` in pixels with ``a(x) ~ b(x + d)`` for images
    ``(B|1, H, W)``, from the normalised cross-power spectrum (sub-pixel by a parabola through the
    peak and its neighbours). Shifts are in ``[-W/2, W/2) x [-H/2, H/2)`` (circular)."""
    fa, fb = torch.fft.rfft2(a), torch.fft.rfft2(b)
    cross = fb * fa.conj()
    cross = cross / (cross.abs() + 1e-12 * cross.abs().amax(dim=(-2, -1), keepdim=True) + 1e-30)
    corr = torch.fft.irfft2(cross, s=a.shape[-2:])
    return _subpixel_peak(corr)


def _subpixel_peak(corr: torch.Tensor) -> torch.Tensor:
    """Signed ``(dx, dy)`` of the maximum of circular correlations ``(B, H, W)``."""
    b, h, w = corr.shape
    flat = corr.reshape(b, -1).argmax(dim=1)
    iy, ix = flat // w, flat % w
    rows = torch.arange(b, device=corr.device)

    def at(dy: int, dx: int) -> torch.Tensor:
        return corr[rows, (iy + dy) % h, (ix + dx) % w]

    centre = at(0, 0)
    offsets = []
    for minus, plus in ((at(0, -1), at(0, 1)), (at(-1, 0), at(1, 0))):
        curvature = minus - 2.0 * centre + plus
        safe = torch.where(curvature < 0, curvature, -torch.ones_like(curvature))
        offsets.append(torch.where(curvature < 0, 0.5 * (minus - plus) / safe, torch.zeros_like(curvature)))
    dx = (ix.to(corr.dtype) + offsets[0].clamp(-0.5, 0.5) + w / 2) % w - w / 2
    dy = (iy.to(corr.dtype) + offsets[1].clamp(-0.5, 0.5) + h / 2) % h - h / 2
    return torch.stack([dx, dy], dim=1)


def _rotation_scale(
    fixed_canvas: torch.Tensor, moving_canvas: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Angle and log-scale ``(B,)`` of ``A = exp(log_scale) R(angle)`` with ``I_f(x) ~ I_m(A x)``.

    ``|F_f|(k) ~ |F_m|(R k / s)``, so in log-polar coordinates ``(angle, log radius)`` the fixed
    spectrum is the moving one shifted by ``(-angle, +log s)``.
    """
    lp_f = _log_polar(_spectrum(fixed_canvas))
    lp_m = _log_polar(_spectrum(moving_canvas))
    shift = phase_correlation(lp_f, lp_m)  # lp_f(x) = lp_m(x + d)
    n_angles, n_radii = lp_f.shape[-2:]
    angle = shift[:, 1] * (math.pi / n_angles)
    log_step = math.log(_MAX_RADIUS_FRACTION / _MIN_RADIUS_FRACTION) / (n_radii - 1)
    log_scale = -shift[:, 0] * log_step
    return angle, log_scale


def _spectrum(canvas: torch.Tensor) -> torch.Tensor:
    """High-pass emphasised log magnitude spectrum, DC at the centre, ``(B, n, n)``."""
    n = canvas.shape[-1]
    magnitude = torch.fft.fftshift(torch.fft.fft2(canvas).abs(), dim=(-2, -1))
    freq = torch.fft.fftshift(torch.fft.fftfreq(n, device=canvas.device, dtype=canvas.dtype))
    # Reddy & Chatterji's emphasis filter: suppresses the low frequencies that the window and the
    # image's global brightness layout dominate.
    x = torch.cos(math.pi * freq)[None, :] * torch.cos(math.pi * freq)[:, None]
    emphasis = (1.0 - x) * (2.0 - x)
    return torch.log1p(magnitude) * emphasis


def _log_polar(spectrum: torch.Tensor) -> torch.Tensor:
    """Log-polar resampling ``(B, n_angles, n_radii)`` of centred spectra ``(B, n, n)`` over angles
    ``[0, pi)`` (the spectrum is point-symmetric) and log-spaced radii."""
    b, n, _ = spectrum.shape
    n_angles, n_radii = n, n // 2
    dtype, device = spectrum.dtype, spectrum.device
    angles = torch.arange(n_angles, dtype=dtype, device=device) * (math.pi / n_angles)
    log_r = torch.linspace(
        math.log(_MIN_RADIUS_FRACTION * n),
        math.log(_MAX_RADIUS_FRACTION * n),
        n_radii,
        dtype=dtype,
        device=device,
    )
    radii = torch.exp(log_r)
    kx = radii[None, :] * torch.cos(angles)[:, None]
    ky = radii[None, :] * torch.sin(angles)[:, None]
    # DC sits at index n/2 after fftshift; grid_sample's normalised coordinate of index i is (2i+1)/n - 1.
    grid = torch.stack([(2.0 * (kx + n // 2) + 1.0) / n - 1.0, (2.0 * (ky + n // 2) + 1.0) / n - 1.0], dim=-1)
    lp = F.grid_sample(spectrum.unsqueeze(1), grid.expand(b, -1, -1, -1), align_corners=False)[:, 0]
    # The radius axis is not periodic: taper it so the circular correlation sees no wrap-around edge.
    taper = torch.hann_window(n_radii + 2, periodic=False, dtype=dtype, device=device)[1:-1]
    return (lp - lp.mean(dim=-1, keepdim=True)) * taper


def _rotation_scale_matrix(angle: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    scale = torch.exp(log_scale)
    c, s = scale * torch.cos(angle), scale * torch.sin(angle)
    m = torch.eye(3, dtype=angle.dtype, device=angle.device).repeat(angle.shape[0], 1, 1)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _canvas_coords(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Homogeneous frame coordinates ``(n * n, 3)`` of the canvas pixel centres, row-major."""
    t = (2.0 * torch.arange(n, dtype=dtype, device=device) + 1.0) / n - 1.0
    v, u = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(-1, 3)


def _radial_window(coords: torch.Tensor, radius: float, n: int) -> torch.Tensor:
    """Raised-cosine disc ``(1, n, n)`` that falls to 0 at ``radius`` frame units (rotation
    covariant, unlike a separable window, so it does not pull the angle towards 0)."""
    r = torch.sqrt(coords[:, 0] ** 2 + coords[:, 1] ** 2) / radius
    w = torch.where(r < 1.0, 0.5 * (1.0 + torch.cos(math.pi * r.clamp(max=1.0))), torch.zeros_like(r))
    return w.reshape(1, n, n)


def _sample(
    view: CanvasView, model: torch.Tensor | None, coords: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and weight ``(B, n, n)`` of ``view`` sampled at ``model @ coords`` (frame): 1 inside the
    image, 0 outside, and softly 0 where its mask is (see :class:`CanvasView`)."""
    m = view.norm_H_frame.unsqueeze(0) if model is None else view.norm_H_frame @ model
    batch = max(m.shape[0], view.image.shape[0])
    mapped = products(m, coords.unsqueeze(0)).expand(batch, -1, -1)  # (B, 3, n * n)
    z = mapped[:, 2:3]
    xy = mapped[:, :2] / torch.where(z > 1e-6, z, torch.ones_like(z))
    grid = xy.transpose(1, 2).reshape(batch, n, n, 2)
    image = view.image if view.mask is None else torch.cat([view.image, view.mask], dim=1)
    sampled = F.grid_sample(
        image.expand(batch, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    values = sampled[:, 0]
    inside = ((xy.abs().amax(dim=1) <= 1.0) & (z[:, 0] > 1e-6)).reshape(batch, n, n).to(values.dtype)
    if view.mask is not None:
        # Only fully valid canvas pixels, then a ramp of a few pixels into them.
        solid = (sampled[:, 1:2] >= 0.99).to(values.dtype)
        soft = F.avg_pool2d(F.avg_pool2d(solid, 5, 1, 2, count_include_pad=False), 5, 1, 2)
        inside = inside * soft[:, 0] * solid[:, 0]
    return values, inside


def _apodise(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Subtract the weighted mean and multiply by the weight, ``(B, n, n)``."""
    total = weight.sum(dim=(-2, -1), keepdim=True).clamp(min=1e-6)
    mean = (values * weight).sum(dim=(-2, -1), keepdim=True) / total
    return (values - mean) * weight
