"""Marker-free shift refinement by projection matching (as AreTomo refines a tilt series).

Each tilt is compared with what the *other* tilts say it should look like: the reprojection,
at its angle, of a slab reconstructed from them (leave one out). Unlike tilt-to-tilt
correlation (coarse alignment, patch tracks) the reference carries the specimen's 3D
parallax, so a thick crowded slab does not bias the match and errors do not accumulate tilt
by tilt.

The reprojection needs no volume. In the aligned frame (axis along y), a weighted
back-projection of the R-weighted images f_j over a slab |z| <= T/2, reprojected at tilt
b_k, is along x

    r_k(u) = sum_j  integral_{-T/2}^{T/2} f_j(u cos b_j / cos b_k + z sin(b_j - b_k) / cos b_k) dz

i.e. each other tilt stretched by cos b_j / cos b_k (tiltxcorr's cosine stretch) and blurred
along x by a box of width T |sin(b_j - b_k)| / cos b_k (the parallax across the slab): a sinc
in Fourier space. One pass costs about as much as a few WBPs of the binned stack.

Limits (measured, docs/tomo.md): a reference made of all other tilts is dominated by the
nearest ones at the frequencies that localise, so drifts that are locally linear in tilt
angle (random walks of the chained start) are hardly seen; the method removes the
tilt-to-tilt scatter of a start that is already close (patch tracking), not its drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage

from emproc.tomo.geometry import align_image, rotation_matrix, taper_mask
from emproc.tomo.peaks import correlation_peak


@dataclass(frozen=True)
class ProjectionMatchingParams:
    iterations: int = 4  # 0 = off
    # slab thickness T, fraction of the binned image width (the specimen's own thickness is
    # unknown; half the width held an 800 A slab at 16 A/px and a film 210 A below centre)
    thickness_fraction: float = 0.5
    max_step_px: float = 3.0  # accepted shift update per iteration (binned px)
    tolerance_px: float = 0.02  # stop when the rms update is below this (binned px)


def _field_mask(shape: tuple[int, int], axis_deg: float) -> np.ndarray:
    """Smooth mask of the part of the aligned frame every raw image covers (the rotated
    field minus its corners), so sharp edges do not ring through the R-weighting."""
    ones = np.ones(shape, dtype=np.float32)
    covered = align_image(ones, axis_deg, (0.0, 0.0)) > 0.999
    eroded = ndimage.binary_erosion(covered, iterations=max(2, shape[0] // 32))
    smooth = ndimage.gaussian_filter(eroded.astype(np.float32), max(1.0, shape[0] / 48))
    return smooth * taper_mask(shape, 0.1)


def _aligned(images: np.ndarray, axis_deg: float, raw_shifts: np.ndarray) -> np.ndarray:
    mask = _field_mask(images.shape[1:], axis_deg)
    out = np.stack(
        [align_image(image, axis_deg, s) for image, s in zip(images, raw_shifts, strict=True)]
    )
    out -= out.mean(axis=(1, 2), keepdims=True)
    return (out * mask).astype(np.float32)


def _spectra(aligned: np.ndarray) -> np.ndarray:
    """R-weighted (|k| along x) spectra along x of aligned images, zero-padded to twice
    the width so the stretch and blur do not wrap."""
    count, ny, nx = aligned.shape
    padded = np.zeros((count, ny, 2 * nx), np.float32)
    padded[:, :, nx // 2 : nx // 2 + nx] = aligned
    ramp = np.abs(np.fft.rfftfreq(2 * nx)).astype(np.float32)  # keeps complex64
    return scipy.fft.rfft(padded, axis=-1) * ramp


def slab_reprojection(
    spectra: np.ndarray,
    angles_deg: np.ndarray,
    thickness_px: float,
    target: int,
    exclude: int = 0,
) -> np.ndarray:
    """Reprojection at tilt `target` of the slab back-projected from all *other* tilts
    (module docstring), from their `_spectra`; [y, x] in the target's aligned frame."""
    count, ny, bins = spectra.shape
    width = 2 * (bins - 1)
    nx = width // 2
    kappa = np.fft.rfftfreq(width)
    beta = np.deg2rad(angles_deg)
    cos_k = np.cos(beta[target])
    u = np.arange(nx) - nx / 2
    total = np.zeros((ny, nx), np.float32)
    for j in range(count):
        if abs(j - target) <= exclude:
            continue
        parallax = abs(np.sin(beta[j] - beta[target])) / cos_k  # j's x per unit height
        blurred = spectra[j] * np.sinc(kappa * thickness_px * parallax).astype(np.float32)
        filtered = scipy.fft.irfft(blurred, n=width, axis=-1)
        position = np.cos(beta[j]) / cos_k * u + width / 2
        floor = np.clip(np.floor(position).astype(int), 0, width - 2)
        fraction = (position - floor).astype(np.float32)
        total += filtered[:, floor] * (1 - fraction) + filtered[:, floor + 1] * fraction
    return total


def _match(reference: np.ndarray, moving: np.ndarray, max_shift: float):
    """(dx, dy, normalised peak): moving ~ reference shifted by (dx, dy)."""
    product = np.conj(scipy.fft.rfft2(reference)) * scipy.fft.rfft2(moving)
    correlation = scipy.fft.fftshift(scipy.fft.irfft2(product, s=reference.shape))
    dx, dy, peak = correlation_peak(correlation, max_shift)
    norm = float(np.linalg.norm(reference) * np.linalg.norm(moving)) + 1e-12
    return dx, dy, peak / norm


def _remove_translation(update: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Update [tilt, (x, y)] (aligned frame) minus a specimen translation's part
    (a cos b + c sin b, d): it changes no reprojection, the caller's gauge fixes it."""
    basis = np.column_stack([np.cos(beta), np.sin(beta)])
    coefficients, *_ = np.linalg.lstsq(basis, update[:, 0], rcond=None)
    cleaned = update.copy()
    cleaned[:, 0] -= basis @ coefficients
    cleaned[:, 1] -= cleaned[:, 1].mean()
    return cleaned


@dataclass(frozen=True)
class ProjectionMatchingResult:
    raw_shifts_px: np.ndarray  # [tilt, (x, y)] raw frame, binned px
    updates_rms_px: list[float]  # rms shift update per iteration (binned px)
    match_scores: np.ndarray  # normalised correlation peak per tilt, last iteration


def refine_shifts(
    images: np.ndarray,
    angles_deg: np.ndarray,
    axis_deg: float,
    raw_shifts: np.ndarray,
    params: ProjectionMatchingParams,
) -> ProjectionMatchingResult:
    """Leave-one-out projection matching of band-passed binned images [tilt, y, x] sorted by
    angle; raw shifts [tilt, (x, y)] in binned px. All tilts update together each
    iteration; the translation part of the updates is dropped (the input's gauge stays)."""
    angles_deg = np.asarray(angles_deg, dtype=float)
    beta = np.deg2rad(angles_deg)
    thickness = params.thickness_fraction * images.shape[2]
    rotation = rotation_matrix(axis_deg)
    shifts = np.array(raw_shifts, dtype=float)
    window = taper_mask(images.shape[1:], 0.2)
    history: list[float] = []
    scores = np.zeros(len(angles_deg))
    for _ in range(params.iterations):
        aligned = _aligned(images, axis_deg, shifts)
        spectra = _spectra(aligned)
        update = np.zeros((len(angles_deg), 2))
        for k in range(len(angles_deg)):
            reference = slab_reprojection(spectra, angles_deg, thickness, k)
            dx, dy, scores[k] = _match(reference * window, aligned[k] * window, params.max_step_px)
            update[k] = dx, dy
        update = _remove_translation(update, beta)
        shifts += update @ rotation.T
        history.append(float(np.sqrt(np.mean(np.sum(update**2, axis=1)))))
        if history[-1] < params.tolerance_px:
            break
    return ProjectionMatchingResult(shifts, history, scores)
