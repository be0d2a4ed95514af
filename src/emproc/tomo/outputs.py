"""Files users continue with: IMOD .tlt/.xf, AreTomo-style .aln, snapshots, plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from emproc.io.atomic import atomic_path, write_text_atomic  # noqa: E402
from emproc.tomo.align import AlignmentResult  # noqa: E402
from emproc.tomo.geometry import xf_lines  # noqa: E402


def write_imod_alignment(
    alignment: AlignmentResult, xf_path: Path, tlt_path: Path, xtilt_path: Path | None = None
) -> None:
    """`.xf` (raw -> aligned, unbinned px, one line per tilt of the stack), `.tlt` and
    `.xtilt` (tilt around X per view as tiltalign writes it: 0, not solved)."""
    text = xf_lines(
        alignment.tilt_axis_angle_deg,
        alignment.shifts_px,
        alignment.rotations_deg,
        alignment.magnifications,
    )
    write_text_atomic(xf_path, text)
    write_text_atomic(tlt_path, "".join(f"{a:.2f}\n" for a in alignment.tilt_angles_deg))
    if xtilt_path is not None:
        write_text_atomic(xtilt_path, "".join("0.00\n" for _ in alignment.tilt_angles_deg))


def write_aln(alignment: AlignmentResult, aln_path: Path, image_size_xy: tuple[int, int]) -> None:
    """AreTomo-style summary: SEC ROT GMAG TX TY SMEAN SFIT SCALE BASE TILT per tilt.

    ROT is the tilt-axis angle (from +Y, counter-clockwise), TX/TY the raw-frame shift in
    unbinned pixels, i.e. the emproc convention, not AreTomo's internal one.
    """
    count = len(alignment.tilt_angles_deg)
    lines = [
        "# AreTomo Alignment / Priism bprmMn (written by emproc)",
        f"# RawSize = {image_size_xy[0]} {image_size_xy[1]} {count}",
        "# NumPatches = 0",
        "# SEC     ROT         GMAG       TX          TY      SMEAN     SFIT    SCALE     BASE"
        "     TILT",
    ]
    for section, (angle, shift) in enumerate(
        zip(alignment.tilt_angles_deg, alignment.shifts_px, strict=True)
    ):
        lines.append(
            f"{section:5d} {alignment.tilt_axis_angle_deg:10.4f} {1.0:10.5f} {shift[0]:10.3f}"
            f" {shift[1]:10.3f} {1.0:8.2f} {1.0:8.2f} {1.0:8.2f} {0.0:8.2f} {angle:8.2f}"
        )
    write_text_atomic(aln_path, "\n".join(lines) + "\n")


def _save_image(image: np.ndarray, path: Path) -> None:
    low, high = np.percentile(image, [1, 99])
    with atomic_path(path) as temporary:
        plt.imsave(temporary, image, cmap="gray", vmin=low, vmax=high, origin="lower")


def write_snapshots(
    volume: np.ndarray, xy_path: Path, xz_path: Path, slab_path: Path, slab_px: int = 8
) -> None:
    """Central XY slice, central XZ slice and a thin-slab (`slab_px` slices) projection of a
    [z, y, x] tomogram, shown dense-dark as users expect from cryo-ET."""
    nz, ny, _ = volume.shape
    _save_image(-volume[nz // 2], xy_path)
    _save_image(-volume[:, ny // 2, :], xz_path)
    low = max(nz // 2 - slab_px // 2, 0)
    _save_image(-volume[low : low + slab_px].mean(axis=0), slab_path)


def write_residual_plot(alignment: AlignmentResult, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(alignment.tilt_angles_deg, alignment.residuals_per_tilt_px, "o-", ms=3)
    axis.set_xlabel("tilt angle (deg)")
    axis.set_ylabel(f"residual (px, bin {alignment.binning})")
    label = "fiducial" if alignment.method == "fiducial" else "patch-tracking"
    axis.set_title(f"{label} fit: rms {alignment.residual_rms_px:.2f} px")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
