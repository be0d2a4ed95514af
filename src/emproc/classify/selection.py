"""Automatic 2D class selection: a score per class from the strength of its average.

score = mean-square density of the class average inside the mask, relative to the strongest
class (so in (0, 1]). Classes of false picks (noise, ice) average out to almost nothing,
even though aligning noise to a reference biases it towards that reference: their half-set
FRC can still look good ("Einstein from noise"), so resolution alone would select them.
Classes with too few particles are never selected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emproc.classify.align import soft_circular_mask


@dataclass(frozen=True)
class SelectionParams:
    min_score: float = 0.2
    min_class_fraction: float | None = None  # default: 0.5 / number of classes


def class_scores(class_averages: np.ndarray, mask_radius_px: float) -> np.ndarray:
    """Mean-square density inside the mask of each average, divided by the largest."""
    mask = soft_circular_mask(class_averages.shape[-1], mask_radius_px)
    power = ((class_averages * mask) ** 2).sum(axis=(1, 2)) / mask.sum()
    return power / power.max() if power.max() > 0 else np.zeros_like(power)


def select_classes(
    class_averages: np.ndarray,
    mask_radius_px: float,
    class_distribution: np.ndarray,
    params: SelectionParams = SelectionParams(),
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, selected) per class."""
    distribution = np.asarray(class_distribution, dtype=float)
    minimum = (
        0.5 / len(distribution) if params.min_class_fraction is None else params.min_class_fraction
    )
    scores = class_scores(class_averages, mask_radius_px)
    return scores, (scores >= params.min_score) & (distribution >= minimum)
