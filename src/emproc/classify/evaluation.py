"""Scoring 2D classes against known particle identities (tests, benchmarks).

purity: each class is labelled with the shape most of its particles have; purity is the
fraction of ALL particles whose class carries their own shape's label. Every class counts,
however small, so a class that mixes shapes costs exactly its minority particles and
splitting one shape into many classes (K larger than the number of shapes) costs nothing.
shape purity: the same fraction per shape; its minimum shows a shape the classes lose
(e.g. absorbed into another shape's classes) even when the overall purity looks fine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ClassPurity:
    purity: float  # fraction of particles in a class labelled with their shape
    shape_purity: dict  # shape -> that fraction among the shape's particles
    class_shape: dict  # class -> majority shape
    dominant_shapes: frozenset  # shapes that label at least one class

    @property
    def worst_shape_purity(self) -> float:
        return min(self.shape_purity.values())


def class_shape_labels(classes: np.ndarray, shapes: np.ndarray) -> dict:
    """Class number -> the shape most of its particles have."""
    table = pd.crosstab(np.asarray(classes), np.asarray(shapes))
    return table.idxmax(axis=1).to_dict()


def class_purity(classes: np.ndarray, shapes: np.ndarray) -> ClassPurity:
    """Score the class assignment `classes` (n,) against the true `shapes` (n,)."""
    classes, shapes = np.asarray(classes), np.asarray(shapes)
    if classes.shape != shapes.shape or classes.size == 0:
        raise ValueError(
            f"need equal, non-empty class and shape arrays: {classes.shape}, {shapes.shape}"
        )
    labels = class_shape_labels(classes, shapes)
    correct = np.array([labels[c] for c in classes]) == shapes
    per_shape = {s: float(correct[shapes == s].mean()) for s in np.unique(shapes)}
    return ClassPurity(float(correct.mean()), per_shape, labels, frozenset(labels.values()))


def shape_agreement(classes_a: np.ndarray, classes_b: np.ndarray, shapes: np.ndarray) -> float:
    """Fraction of particles whose class has the same shape label in both classifications.

    Each classification labels its classes by majority shape; a particle agrees when the
    two labels its two classes carry are the same shape (class numbers themselves differ).
    """
    labels_a = class_shape_labels(classes_a, shapes)
    labels_b = class_shape_labels(classes_b, shapes)
    a = np.array([labels_a[c] for c in np.asarray(classes_a)])
    b = np.array([labels_b[c] for c in np.asarray(classes_b)])
    return float(np.mean(a == b))
