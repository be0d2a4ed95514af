"""Carbon / ice-contamination rejection by local mean and local variance outliers.

Contamination (ethane crystals, thick ice, carbon) shifts the local mean of the micrograph far
more than a particle does, and carbon edges raise the local variance. Both are measured over
a window of a few particle diameters and compared with the micrograph's robust spread.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _robust_z(values: np.ndarray) -> np.ndarray:
    median = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - median))
    if spread <= 0:
        spread = values.std() or 1.0
    return (values - median) / spread


def contamination_mask(
    image: np.ndarray, window_px: float, threshold_sigma: float, dilation_px: float = 0.0
) -> np.ndarray:
    """Boolean mask (True = reject) of regions whose local mean or variance is an outlier.

    `image` is the binned, inverted micrograph (particles bright): local-mean outliers in
    either direction (thick contamination or holes) and high-variance outliers are flagged.
    """
    size = max(int(round(window_px)), 3)
    local_mean = ndimage.uniform_filter(image.astype(np.float64), size=size, mode="reflect")
    local_square = ndimage.uniform_filter(image.astype(np.float64) ** 2, size=size, mode="reflect")
    local_variance = np.maximum(local_square - local_mean**2, 0.0)
    mask = (np.abs(_robust_z(local_mean)) > threshold_sigma) | (
        _robust_z(local_variance) > threshold_sigma
    )
    if dilation_px > 0 and mask.any():
        radius = int(np.ceil(dilation_px))
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        mask = ndimage.binary_dilation(mask, structure=xx**2 + yy**2 <= radius**2)
    return mask
