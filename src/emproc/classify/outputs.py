"""Writing a classified batch: averages, model STAR, assignments, gallery, selection, summary."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import starfile
from matplotlib.figure import Figure
from matplotlib.image import imsave

from emproc.classify.class2d import Class2DResult
from emproc.extract.run import relative_to, write_stack
from emproc.extract.star import write_particle_star
from emproc.io.atomic import atomic_path, write_json_atomic


@dataclass(frozen=True)
class BatchOutputPaths:
    class_averages: Path  # .mrcs
    model_star: Path
    particles_star: Path  # every particle with its class
    selected_star: Path  # particles of selected classes
    gallery: Path  # .png
    class_images_dir: Path  # one PNG per class (ISPyB class_image_path)
    summary: Path  # .json

    @classmethod
    def in_directory(cls, directory: str | os.PathLike[str]) -> BatchOutputPaths:
        directory = Path(directory)
        return cls(
            class_averages=directory / "class_averages.mrcs",
            model_star=directory / "model.star",
            particles_star=directory / "particles.star",
            selected_star=directory / "particles_selected.star",
            gallery=directory / "classes.png",
            class_images_dir=directory / "class_images",
            summary=directory / "summary.json",
        )


def _display_range(image: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(image, [1.0, 99.5])
    return float(low), float(high if high > low else low + 1.0)


def write_gallery(
    path: Path,
    averages: np.ndarray,
    distribution: np.ndarray,
    resolution: np.ndarray,
    selected: np.ndarray,
) -> None:
    """PNG grid of class averages sorted by size (largest first), selected ones outlined."""
    order = np.argsort(-distribution, kind="stable")
    columns = int(np.ceil(np.sqrt(len(order))))
    rows = int(np.ceil(len(order) / columns))
    figure = Figure(figsize=(1.6 * columns, 1.8 * rows), dpi=100)
    for position, label in enumerate(order):
        axes = figure.add_subplot(rows, columns, position + 1)
        low, high = _display_range(averages[label])
        axes.imshow(averages[label], cmap="gray", vmin=low, vmax=high)
        axes.set_xticks([])
        axes.set_yticks([])
        colour = "lime" if selected[label] else "red"
        for spine in axes.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2.5)
        axes.set_title(
            f"{label + 1}: {100 * distribution[label]:.1f}% {resolution[label]:.0f}A", fontsize=7
        )
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def write_batch_outputs(
    result: Class2DResult,
    optics: pd.DataFrame,
    particles: pd.DataFrame,
    *,
    batch_number: int,
    scores: np.ndarray,
    selected: np.ndarray,
    paths: BatchOutputPaths,
    project_dir: str | os.PathLike[str],
) -> dict[str, Any]:
    """Write every output of one batch; returns the summary (ISPyB class2d contract)."""
    k = len(result.class_averages)
    pixel = result.pixel_size_angstrom
    write_stack(paths.class_averages, result.class_averages, pixel)
    averages_name = relative_to(paths.class_averages, project_dir)
    classes = pd.DataFrame(
        {
            "rlnReferenceImage": [f"{label:06d}@{averages_name}" for label in range(1, k + 1)],
            "rlnClassDistribution": result.class_distribution,
            "rlnAccuracyRotations": result.accuracy_rotations_deg,
            "rlnAccuracyTranslationsAngst": result.accuracy_translations_angstrom,
            "rlnEstimatedResolution": result.estimated_resolution_angstrom,
            "rlnClassScore": scores,
        }
    )
    general = {
        "rlnReferenceDimensionality": 2,
        "rlnDataDimensionality": 2,
        "rlnOriginalImageSize": int(result.class_averages.shape[-1]),
        "rlnPixelSize": pixel,
        "rlnNrClasses": k,
        "rlnCurrentResolution": float(result.estimated_resolution_angstrom.min()),
        "rlnSigmaOffsetsAngst": float(np.std(result.shift_xy_px) * pixel),
    }
    with atomic_path(paths.model_star) as temporary:
        starfile.write({"model_general": general, "model_classes": classes}, temporary)

    assigned = particles.copy()
    assigned["rlnClassNumber"] = result.class_number
    assigned["rlnAnglePsi"] = result.psi_deg
    # RELION's origin is the shift that centres the particle: minus its offset
    assigned["rlnOriginXAngst"] = -result.shift_xy_px[:, 0] * pixel
    assigned["rlnOriginYAngst"] = -result.shift_xy_px[:, 1] * pixel
    assigned["rlnMaxValueProbDistribution"] = result.max_probability
    write_particle_star(paths.particles_star, optics, assigned)
    chosen = np.flatnonzero(selected) + 1
    write_particle_star(
        paths.selected_star,
        optics,
        assigned[assigned["rlnClassNumber"].isin(chosen)].reset_index(drop=True),
    )

    write_gallery(
        paths.gallery,
        result.class_averages,
        result.class_distribution,
        result.estimated_resolution_angstrom,
        selected,
    )
    paths.class_images_dir.mkdir(parents=True, exist_ok=True)
    counts = np.bincount(result.class_number - 1, minlength=k)
    summary_classes = []
    for label in range(k):
        image_path = paths.class_images_dir / f"class_{label + 1:03d}.png"
        low, high = _display_range(result.class_averages[label])
        with atomic_path(image_path) as temporary:
            imsave(
                temporary,
                result.class_averages[label],
                cmap="gray",
                vmin=low,
                vmax=high,
                format="png",
            )
        summary_classes.append(
            {
                "class_number": label + 1,
                "class_image_path": str(image_path.resolve()),
                "particles_per_class": int(counts[label]),
                "class_distribution": float(result.class_distribution[label]),
                "estimated_resolution_angstrom": float(result.estimated_resolution_angstrom[label]),
                "selected": bool(selected[label]),
            }
        )
    summary = {
        "batch_number": int(batch_number),
        "number_of_particles": int(len(particles)),
        "number_of_classes": k,
        "classes": summary_classes,
    }
    write_json_atomic(paths.summary, summary)
    return summary
