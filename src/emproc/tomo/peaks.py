"""Sub-pixel peak of a cross-correlation map (tilt-to-tilt and projection matching)."""

import numpy as np


def correlation_peak(correlation: np.ndarray, max_shift: float) -> tuple[float, float, float]:
    """Sub-pixel (x, y) position and height of the highest peak of a centred correlation map,
    within `max_shift` px of the centre."""
    ny, nx = correlation.shape
    yy, xx = np.ogrid[:ny, :nx]
    allowed = ((yy - ny // 2) ** 2 + (xx - nx // 2) ** 2) <= max_shift**2
    masked = np.where(allowed, correlation, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(masked)), masked.shape)

    def vertex(minus: float, centre: float, plus: float) -> float:
        denominator = minus - 2 * centre + plus
        return 0.0 if denominator >= 0 else 0.5 * (minus - plus) / denominator

    dy = vertex(correlation[iy - 1, ix], correlation[iy, ix], correlation[(iy + 1) % ny, ix])
    dx = vertex(correlation[iy, ix - 1], correlation[iy, ix], correlation[iy, (ix + 1) % nx])
    return ix + dx - nx // 2, iy + dy - ny // 2, float(correlation[iy, ix])
