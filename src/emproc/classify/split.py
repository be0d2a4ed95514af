"""Splitting an over-full 2D class in two (bisecting, as in bisecting k-means).

A class that collects several times its share of particles is usually a blurred mixture
that noisy particles of every kind fit about equally badly (an "attractor"); iterating does
not empty it. Splitting it along the main direction of variation of its aligned members
separates the mixture, and the class it replaces (the emptiest) costs least.
"""

from __future__ import annotations

import numpy as np


def bisect_members(aligned: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(m,) bool: the side of each aligned image along the first principal component.

    Images are masked and 2x2 binned first (less noise per dimension); the split is the
    1D two-means of the projections, started at the median.
    """
    m, size, _ = aligned.shape
    half = size // 2
    binned = (aligned * mask)[:, : 2 * half, : 2 * half].reshape(m, half, 2, half, 2).mean((2, 4))
    data = binned.reshape(m, -1).astype(np.float64)
    data -= data.mean(axis=0)
    # top eigenvector of the (m x m) Gram matrix: cheaper than an SVD when m < pixels
    gram = data @ data.T
    _, vectors = np.linalg.eigh(gram)
    projection = vectors[:, -1]
    threshold = np.median(projection)
    for _ in range(20):
        side = projection > threshold
        if side.all() or not side.any():
            break
        new = 0.5 * (projection[side].mean() + projection[~side].mean())
        if np.isclose(new, threshold):
            break
        threshold = new
    return projection > threshold


def classes_to_split(
    sizes: np.ndarray, split_ratio: float, max_splits: int
) -> list[tuple[int, int]]:
    """(largest, emptiest) class pairs: split the first, replace the second.

    A class is split while it holds more than `split_ratio` times the mean class size (or
    another class is empty) and at least two particles; the classes replaced are the
    emptiest, each used once.
    """
    sizes = np.asarray(sizes, dtype=float).copy()
    mean = sizes.sum() / len(sizes)
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for _ in range(max_splits):
        order = np.argsort(sizes, kind="stable")
        free = [int(c) for c in order if c not in used]
        if len(free) < 2:
            break
        emptiest, largest = free[0], int(np.argmax(sizes))
        if largest == emptiest or largest in used:
            break
        if sizes[largest] <= split_ratio * mean and sizes[emptiest] >= 0.5:
            break
        if sizes[largest] < 2:
            break
        pairs.append((largest, emptiest))
        used.update((largest, emptiest))
        sizes[largest] /= 2.0
        sizes[emptiest] = sizes[largest]
    return pairs
