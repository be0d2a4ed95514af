"""The report's 3D section: central slices and projections of the maps, FSC and B-factor plots."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from emproc.refine3d.maps import read_map
from emproc.report.plots import _png, plt  # one Agg backend and PNG encoder for the report


def map_views_png(volume: np.ndarray, title: str) -> bytes:
    """Central slices (top row) and projections (bottom row) along z, y and x."""
    figure, axes = plt.subplots(2, 3, figsize=(6.0, 4.2))
    centre = np.array(volume.shape) // 2
    views = [volume[centre[0]], volume[:, centre[1]], volume[:, :, centre[2]]]
    views += [volume.sum(axis=axis) for axis in range(3)]
    names = ["slice z", "slice y", "slice x", "projection z", "projection y", "projection x"]
    for ax, view, name in zip(axes.ravel(), views, names, strict=True):
        ax.imshow(view, cmap="gray", origin="lower")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(title, fontsize=9)
    return _png(figure)


def fsc_png(postprocess: dict[str, Any]) -> bytes:
    curve = postprocess["fsc"]
    resolution = np.asarray(curve["resolution_angstrom"], dtype=float)
    frequency = np.where(np.isfinite(resolution) & (resolution > 0), 1.0 / resolution, 0.0)
    figure, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.plot(frequency, curve["fsc_corrected"], label="masked, corrected")
    ax.plot(frequency, curve["fsc_unmasked"], label="unmasked", alpha=0.6)
    ax.axhline(0.143, color="grey", linestyle=":")
    ax.set_xlabel("spatial frequency (1/A)")
    ax.set_ylabel("FSC")
    ax.set_title(f"gold-standard FSC: {postprocess['resolution_angstrom']:.1f} A at 0.143")
    ax.legend(fontsize=8)
    return _png(figure)


def bfactor_png(bfactor: dict[str, Any]) -> bytes:
    counts = np.array([row["number_of_particles"] for row in bfactor["subsets"]], dtype=float)
    resolution = np.array([row["resolution_angstrom"] for row in bfactor["subsets"]])
    figure, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.plot(np.log(counts), 1.0 / resolution**2, "o")
    line = np.linspace(np.log(counts.min()), np.log(counts.max()), 10)
    ax.plot(line, bfactor["slope_per_angstrom2"] * line + bfactor["intercept_per_angstrom2"])
    ax.set_xlabel("ln(number of particles)")
    ax.set_ylabel("1 / resolution^2 (1/A^2)")
    ax.set_title(f"B-factor {bfactor['bfactor_angstrom2'] or float('nan'):.0f} A^2")
    return _png(figure)


def spa3d_section(output_dir: str | Path, image: Callable[[bytes, str, str], str]) -> str:
    """HTML of the 3D section (empty before 3D ran); `image(png, mime, caption)` embeds a PNG."""
    index_path = Path(output_dir) / "spa3d.json"
    if not index_path.is_file():
        return ""
    index = json.loads(index_path.read_text())
    head = (
        f"<h2>3D</h2><p>{index['number_of_selected_particles']} particles selected from 2D "
        f"classes ({index['min_particles_for_3d']} needed for 3D).</p>"
    )
    steps = {}
    for step, path in index.get("steps", {}).items():
        if Path(path).is_file():
            steps[step] = json.loads(Path(path).read_text())
    items, lines = [], []
    if "initial_model" in steps:
        model = steps["initial_model"]
        volume, _ = read_map(model["map_path"])
        items.append(image(map_views_png(volume, "initial model"), "image/png", "initial model"))
        lines.append(f"initial model: {model['resolution_angstrom']:.1f} A")
    if "class3d" in steps:
        classes = steps["class3d"]["classes"]
        for entry in classes:
            volume, _ = read_map(entry["class_map_path"])
            caption = (
                f"3D class {entry['class_number']}: {entry['particles_per_class']} particles, "
                f"{entry['estimated_resolution_angstrom']:.1f} A"
                + (" (refined)" if entry["selected"] else "")
            )
            items.append(image(map_views_png(volume, caption), "image/png", caption))
    if "refine" in steps:
        volume, _ = read_map(steps["refine"]["map_path"])
        items.append(image(map_views_png(volume, "refined map"), "image/png", "refined map"))
        lines.append(f"refined: {steps['refine']['number_of_particles']} particles")
    if "postprocess" in steps:
        post = steps["postprocess"]
        items.append(image(fsc_png(post), "image/png", "FSC"))
        lines.append(
            f"post-processed: {post['resolution_angstrom']:.2f} A, sharpening B "
            f"{post['sharpening_bfactor_angstrom2']:.0f} A^2"
        )
    if "bfactor" in steps and steps["bfactor"].get("subsets"):
        items.append(image(bfactor_png(steps["bfactor"]), "image/png", "B-factor fit"))
        lines.append(
            f"B-factor fit: {steps['bfactor']['bfactor_angstrom2'] or float('nan'):.0f} A^2"
        )
    text = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return head + (f"<ul>{text}</ul>" if text else "") + "".join(items)
