"""Run motion correction on a movie file and write every per-movie and aggregate output.

File names and JSON keys follow docs/architecture.md. RELION sign convention: RELION's
rlnMicrographShiftX/Y is the shift *applied* to a frame to align it to frame 1 (its
motioncorr moves frame k by +shift), i.e. the negative of our drift; frame 1 is 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from emproc.io.atomic import atomic_path, write_json_atomic
from emproc.io.gain import load_defect_map, load_gain_reference
from emproc.io.movie import MovieError, movie_header, read_movie
from emproc.io.plot_json import write_xy_json
from emproc.motion.correct import MotionCorrectionError, MotionResult, motion_correct
from emproc.motion.ice import IceThicknessError, relative_ice_thickness

MOTION_PARAMETERS = (
    "patches_x",
    "patches_y",
    "bin_for_alignment",
    "bfactor_angstrom2",
    "iterations",
    "early_frames",
    "dose_weighting",
)

OPTICS_COLUMNS = [
    "rlnOpticsGroup",
    "rlnOpticsGroupName",
    "rlnMicrographOriginalPixelSize",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnMicrographPixelSize",
]
MICROGRAPH_COLUMNS = [
    "rlnMicrographName",
    "rlnMicrographNameNoDW",
    "rlnMicrographMetadata",
    "rlnOpticsGroup",
    "rlnAccumMotionTotal",
    "rlnAccumMotionEarly",
    "rlnAccumMotionLate",
]


class PixelSizeMismatchError(MovieError):
    """The movie header's pixel size disagrees with the metadata."""


@dataclass(frozen=True)
class MotionOutputs:
    """Paths of the per-movie outputs (the Snakemake rule's `output` names)."""

    micrograph: str
    micrograph_dw: str
    shifts_star: str
    shifts_csv: str
    summary: str
    snapshot: str
    drift_plot: str

    @property
    def drift_json(self) -> str:
        """The drift as PATo reads it (`{movie}_drift.json` beside the PNG)."""
        return os.fspath(Path(self.drift_plot).with_suffix(".json"))

    @classmethod
    def from_any(cls, outputs: MotionOutputs | dict | Any) -> MotionOutputs:
        if isinstance(outputs, MotionOutputs):
            return outputs
        names = cls.__dataclass_fields__
        if isinstance(outputs, dict):
            return cls(**{name: os.fspath(outputs[name]) for name in names})
        return cls(**{name: os.fspath(getattr(outputs, name)) for name in names})


def write_mrc(image: np.ndarray, path: str | os.PathLike[str], pixel_size_angstrom: float) -> None:
    with atomic_path(path) as temporary:
        with mrcfile.new(temporary, overwrite=True) as mrc:
            mrc.set_data(np.asarray(image, dtype=np.float32))
            mrc.voxel_size = pixel_size_angstrom


def write_shifts_star(
    result: MotionResult,
    path: str | os.PathLike[str],
    *,
    movie_path: str,
    dose_per_frame_e_per_angstrom2: float,
    pre_exposure_e_per_angstrom2: float,
    voltage_kv: float,
    gain_reference: str = "",
) -> None:
    """RELION per-micrograph STAR: `general` key-value block and `global_shift` loop."""
    import pandas as pd  # imported here: a chunk job imports only what it uses
    import starfile

    ny, nx = result.aligned_sum.shape
    general = {
        "rlnImageSizeX": int(nx),
        "rlnImageSizeY": int(ny),
        "rlnImageSizeZ": result.number_of_frames,
        "rlnMicrographMovieName": movie_path,
        "rlnMicrographBinning": 1.0,
        "rlnMicrographOriginalPixelSize": result.pixel_size_angstrom,
        "rlnMicrographDoseRate": dose_per_frame_e_per_angstrom2,
        "rlnMicrographPreExposure": pre_exposure_e_per_angstrom2,
        "rlnVoltage": voltage_kv,
        "rlnMicrographStartFrame": 1,
    }
    if gain_reference:
        general["rlnMicrographGainName"] = gain_reference
    frames = np.arange(1, result.number_of_frames + 1)
    shifts = pd.DataFrame(
        {
            "rlnMicrographFrameNumber": frames,
            "rlnMicrographShiftX": -result.shifts_px[:, 0],
            "rlnMicrographShiftY": -result.shifts_px[:, 1],
        }
    )
    with atomic_path(path) as temporary:
        starfile.write({"general": general, "global_shift": shifts}, temporary, overwrite=True)


def write_shifts_csv(
    result: MotionResult,
    path: str | os.PathLike[str],
    dose_per_frame_e_per_angstrom2: float,
    pre_exposure_e_per_angstrom2: float = 0.0,
) -> None:
    """Per-frame drift (our convention) in pixels and Angstrom, and accumulated dose."""
    import pandas as pd

    frames = np.arange(1, result.number_of_frames + 1)
    table = pd.DataFrame(
        {
            "frame": frames,
            "drift_x_px": result.shifts_px[:, 0],
            "drift_y_px": result.shifts_px[:, 1],
            "drift_x_angstrom": result.shifts_px[:, 0] * result.pixel_size_angstrom,
            "drift_y_angstrom": result.shifts_px[:, 1] * result.pixel_size_angstrom,
            "accumulated_dose_e_per_angstrom2": pre_exposure_e_per_angstrom2
            + frames * dose_per_frame_e_per_angstrom2,
        }
    )
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False, float_format="%.4f")


def _optional_path(value: Any) -> str:
    return "" if value in (None, "") else os.fspath(value)


def check_pixel_size(
    movie_path: Path, header_pixel_size: float | None, pixel_size: float, tolerance: float
) -> None:
    if header_pixel_size is None:
        return
    if abs(header_pixel_size - pixel_size) > tolerance * pixel_size:
        raise PixelSizeMismatchError(
            f"{movie_path}: header pixel size {header_pixel_size:.4f} A differs from the "
            f"metadata pixel size {pixel_size:.4f} A by more than {100 * tolerance:g}%"
        )


def motion_correct_movie(
    movie_path: str | os.PathLike[str],
    metadata: dict,
    motion_params: dict,
    outputs: MotionOutputs | dict,
    threads: int = 1,
    *,
    pixel_size_tolerance_fraction: float = 0.01,
) -> dict:
    """Correct one movie described by its Import JSON and write all outputs; returns the
    `_motion.json` summary. Bad input raises an error whose message names the movie."""
    from emproc.motion.plots import write_drift_plot, write_snapshot  # matplotlib

    movie_path = Path(movie_path)
    outputs = MotionOutputs.from_any(outputs)
    pixel_size = float(metadata["pixel_size_angstrom"])
    dose = float(metadata["dose_per_frame_e_per_angstrom2"])
    pre_exposure = float(metadata.get("pre_exposure_e_per_angstrom2") or 0.0)
    voltage = float(metadata.get("voltage_kv") or 300.0)
    eer_fractions = int(metadata.get("eer_fractions") or 40)

    header = movie_header(movie_path, eer_fractions=eer_fractions)
    check_pixel_size(
        movie_path, header.pixel_size_angstrom, pixel_size, pixel_size_tolerance_fraction
    )
    frames = read_movie(movie_path, eer_fractions=eer_fractions)
    gain_path = _optional_path(metadata.get("gain_reference"))
    rotation = int(metadata.get("gain_rotation_deg") or 0)
    flip = metadata.get("gain_flip") or "none"
    gain = None
    if gain_path:
        gain = load_gain_reference(
            gain_path, rotation_deg=rotation, flip=flip, expected_shape=header.shape
        )
    defect_path = _optional_path(metadata.get("defect_map"))
    defects = None
    if defect_path:
        defects = load_defect_map(
            defect_path, rotation_deg=rotation, flip=flip, expected_shape=header.shape
        )
    parameters = {key: motion_params[key] for key in MOTION_PARAMETERS if key in motion_params}
    try:
        result = motion_correct(
            frames,
            pixel_size_angstrom=pixel_size,
            dose_per_frame_e_per_angstrom2=dose,
            pre_exposure_e_per_angstrom2=pre_exposure,
            voltage_kv=voltage,
            gain=gain,
            defect_mask=defects,
            threads=threads,
            **parameters,
        )
    except MotionCorrectionError as error:
        raise MovieError(f"{movie_path}: {error}") from error

    write_mrc(result.aligned_sum, outputs.micrograph, pixel_size)
    # the rule always declares the DW output; without weighting it holds the plain sum
    dw_image = (
        result.dose_weighted_sum if result.dose_weighted_sum is not None else result.aligned_sum
    )
    write_mrc(dw_image, outputs.micrograph_dw, pixel_size)
    write_shifts_star(
        result,
        outputs.shifts_star,
        movie_path=os.fspath(movie_path),
        dose_per_frame_e_per_angstrom2=dose,
        pre_exposure_e_per_angstrom2=pre_exposure,
        voltage_kv=voltage,
        gain_reference=gain_path,
    )
    write_shifts_csv(result, outputs.shifts_csv, dose, pre_exposure)
    movie_name = metadata.get("movie_name") or movie_path.stem
    write_snapshot(
        result.dose_weighted_sum if result.dose_weighted_sum is not None else result.aligned_sum,
        outputs.snapshot,
    )
    write_drift_plot(result.shifts_px, pixel_size, outputs.drift_plot, title=str(movie_name))
    drift_angstrom = np.asarray(result.shifts_px) * pixel_size
    write_xy_json(
        drift_angstrom[:, 0],
        drift_angstrom[:, 1],
        outputs.drift_json,
        x_label="drift x (A)",
        y_label="drift y (A)",
    )
    try:
        # counts a pixel gets over vacuum from the frames summed: dose x pixel area
        vacuum_counts = dose * result.number_of_frames * pixel_size**2
        ice = relative_ice_thickness(result.aligned_sum, vacuum_counts).to_dict()
    except IceThicknessError:
        ice = None  # e.g. an opaque micrograph: no ice figure, the rest stands
    summary = {
        "movie_name": movie_name,
        "micrograph_path": outputs.micrograph,
        "micrograph_dw_path": outputs.micrograph_dw
        if result.dose_weighted_sum is not None
        else None,
        "shifts_star_path": outputs.shifts_star,
        "shifts_csv_path": outputs.shifts_csv,
        "snapshot_path": outputs.snapshot,
        "drift_plot_path": outputs.drift_plot,
        "drift_json_path": outputs.drift_json,
        "relative_ice_thickness": ice,
        "number_of_frames": result.number_of_frames,
        "first_frame": 1,
        "last_frame": result.number_of_frames,
        "pixel_size_angstrom": pixel_size,
        "dose_per_frame_e_per_angstrom2": dose,
        "total_motion_angstrom": result.total_motion_angstrom,
        "early_motion_angstrom": result.early_motion_angstrom,
        "late_motion_angstrom": result.late_motion_angstrom,
        "average_motion_per_frame_angstrom": result.average_motion_per_frame_angstrom,
        "patches_used_x": result.patches_used_x,
        "patches_used_y": result.patches_used_y,
        "optics_group": int(metadata.get("optics_group") or 1),
    }
    write_json_atomic(outputs.summary, summary)
    return summary


def write_corrected_micrographs_star(
    summaries: list[dict], metadata: list[dict], path: str | os.PathLike[str]
) -> None:
    """RELION 3.1+ `corrected_micrographs.star`: `optics` and `micrographs` blocks.

    `metadata[i]` is the Import JSON of `summaries[i]`. rlnMicrographName is the
    dose-weighted sum when there is one (as RELION), with the plain sum in
    rlnMicrographNameNoDW.
    """
    import pandas as pd
    import starfile

    from emproc.io.relion import corrected_micrograph_row, micrograph_optics_table

    if len(summaries) != len(metadata):
        raise ValueError(
            f"{path}: {len(summaries)} motion summaries but {len(metadata)} metadata records"
        )
    rows = [
        corrected_micrograph_row(summary, meta, Path(path).parent)
        for summary, meta in zip(summaries, metadata, strict=True)
    ]
    optics_table = micrograph_optics_table(
        metadata, [summary["pixel_size_angstrom"] for summary in summaries], table_path=path
    )[OPTICS_COLUMNS]
    micrographs = pd.DataFrame(rows, columns=MICROGRAPH_COLUMNS)
    with atomic_path(path) as temporary:
        starfile.write(
            {"optics": optics_table, "micrographs": micrographs}, temporary, overwrite=True
        )
