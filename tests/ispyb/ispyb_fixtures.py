"""Output-directory builders and constants for the ISPyB tests (imported by conftest and tests).

The JSON files follow docs/architecture.md (Import, MotionCorr, CtfFind) and docs/ispyb.md
(picking, 2D classes, tomogram) with known values the tests check against.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

VISIT = "bi12345-1"
NUMBER_OF_MOVIES = 3
START = datetime.datetime(2026, 11, 29, 10, 0, 0)


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def movie_name(index: int) -> str:
    """{movie} of the index-th movie, EPU-style."""
    hole = f"FoilHole_{100 + index}_Data_1_1_20261129_{index:04d}"
    return f"Images-Disc1/GridSquare_1/Data/{hole}_fractions"


def make_config(session_dir: Path, output_dir: Path) -> dict[str, Any]:
    """A validated-looking config (defaults filled) for the fixture session."""
    return {
        "session": {
            "session_dir": str(session_dir),
            "visit": VISIT,
            "movie_glob": "Images-Disc*/GridSquare_*/Data/*_fractions.tiff",
            "tomo_mdoc_glob": "",
            "experiment": "spa",
        },
        "microscope": {
            "voltage_kv": 300.0,
            "spherical_aberration_mm": 2.7,
            "amplitude_contrast": 0.1,
            "pixel_size_angstrom": 1.0,
            "dose_per_frame_e_per_angstrom2": 1.0,
            "pre_exposure_e_per_angstrom2": 0.0,
        },
        "ctf": {
            "box_size_px": 512,
            "min_resolution_angstrom": 30.0,
            "max_resolution_angstrom": 5.0,
            "min_defocus_angstrom": 5000.0,
            "max_defocus_angstrom": 50000.0,
            "defocus_step_angstrom": 500.0,
            "expected_astigmatism_angstrom": 200.0,
            "phase_plate": False,
        },
        "picking": {"min_diameter_angstrom": 120.0, "max_diameter_angstrom": 180.0},
        "extraction": {"box_size_px": 256, "downscale_size_px": 64, "bg_radius_px": 24},
        "tomo": {"binning": 4},
        "ispyb": {"credentials": "", "embedded_url": "sqlite:///{outputs}/ispyb.sqlite"},
        "outputs": {"dir": str(output_dir)},
    }


def write_spa_outputs(output_dir: Path, session_dir: Path, number_of_movies: int) -> None:
    """Import/MotionCorr/CtfFind JSONs as docs/architecture.md specifies, with known values."""
    for i in range(number_of_movies):
        name = movie_name(i)
        _write(
            output_dir / "Import" / f"{name}.json",
            {
                "movie_name": name,
                "movie_path": str(session_dir / f"{name}.tiff"),
                "metadata_path": None,
                "pixel_size_angstrom": 1.0,
                "dose_per_frame_e_per_angstrom2": 1.0,
                "pre_exposure_e_per_angstrom2": 0.0,
                "voltage_kv": 300.0,
                "spherical_aberration_mm": 2.7,
                "amplitude_contrast": 0.1,
                "nominal_defocus_angstrom": 15000.0 + 1000.0 * i,
                "timestamp": (START + datetime.timedelta(seconds=30 * i)).isoformat(),
                "grid_square": 1,
                "foil_hole": 100 + i,
                "detector": "K3",
                "gain_reference": "",
                "gain_rotation_deg": 0,
                "gain_flip": "none",
                "defect_map": "",
                "eer_fractions": 40,
                "optics_group": 1,
                "optics_group_name": "opticsGroup1",
            },
        )
        motion_dir = output_dir / "MotionCorr"
        _write(
            motion_dir / f"{name}_motion.json",
            {
                "movie_name": name,
                "micrograph_path": str(motion_dir / f"{name}.mrc"),
                "micrograph_dw_path": str(motion_dir / f"{name}_DW.mrc"),
                "shifts_star_path": str(motion_dir / f"{name}.star"),
                "shifts_csv_path": str(motion_dir / f"{name}_shifts.csv"),
                "snapshot_path": str(motion_dir / f"{name}.jpg"),
                "drift_plot_path": str(motion_dir / f"{name}_drift.png"),
                "drift_json_path": str(motion_dir / f"{name}_drift.json"),
                "relative_ice_thickness": {
                    "minimum": 0.1 + 0.1 * i,
                    "q1": 0.2 + 0.1 * i,
                    "median": 0.25 + 0.1 * i,
                    "q3": 0.3 + 0.1 * i,
                    "maximum": 0.4 + 0.1 * i,
                    "tiles_used": 64,
                    "tiles_opaque": 0,
                },
                "number_of_frames": 40,
                "first_frame": 1,
                "last_frame": 40,
                "pixel_size_angstrom": 1.0,
                "dose_per_frame_e_per_angstrom2": 1.0,
                "total_motion_angstrom": 10.0 + i,
                "early_motion_angstrom": 6.0,
                "late_motion_angstrom": 4.0 + i,
                "average_motion_per_frame_angstrom": (10.0 + i) / 39,
                "patches_used_x": 5,
                "patches_used_y": 5,
                "optics_group": 1,
            },
        )
        ctf_dir = output_dir / "CtfFind"
        _write(
            ctf_dir / f"{name}_ctf.json",
            {
                "movie_name": name,
                "micrograph_path": str(motion_dir / f"{name}.mrc"),
                "defocus_u_angstrom": 15100.0 + 1000.0 * i,
                "defocus_v_angstrom": 14900.0 + 1000.0 * i,
                "astigmatism_angle_deg": 30.0 + i,
                "astigmatism_angstrom": 200.0,
                "phase_shift_deg": 0.0,
                "cross_correlation": 0.2 + 0.01 * i,
                "fit_resolution_angstrom": 4.0 + 0.5 * i,
                "diagnostic_image_path": str(ctf_dir / f"{name}_ctf.png"),
                "ctffind_txt_path": str(ctf_dir / f"{name}.txt"),
                "box_size_px": 512,
                "min_resolution_angstrom": 30.0,
                "max_resolution_angstrom": 5.0,
            },
        )


def write_later_stage_outputs(output_dir: Path, session_dir: Path, number_of_movies: int) -> None:
    """Picking, 2D classification and tomogram dicts at the paths their stages write."""
    for i in range(number_of_movies):
        name = movie_name(i)
        _write(
            output_dir / "Picking" / f"{name}_picks.json",
            {
                "movie_name": name,
                "number_of_particles": 100 + 10 * i,
                "particle_diameter_angstrom": 150.0,
                "summary_image_path": str(output_dir / "Picking" / f"{name}_picks.jpg"),
                "coordinates_star_path": str(output_dir / "Picking" / f"{name}.star"),
                "picking_template": "log",
            },
        )
    _write(
        output_dir / "Class2D" / "batch_1" / "summary.json",
        {
            "batch_number": 1,
            "number_of_particles": 330,
            "number_of_classes": 4,
            "binned_pixel_size_angstrom": 4.0,
            "classes": [
                {
                    "class_number": k + 1,
                    "class_image_path": str(
                        output_dir / "Class2D" / "batch_1" / f"class{k + 1:03d}.png"
                    ),
                    "particles_per_class": [150, 100, 50, 30][k],
                    "class_distribution": [150, 100, 50, 30][k] / 330,
                    "estimated_resolution_angstrom": 8.0 + k,
                    "selected": k < 2,
                }
                for k in range(4)
            ],
        },
    )
    write_tomo_summary(
        output_dir / "Tomograms" / "Position_1" / "Position_1_tomo.json", session_dir
    )


def write_tomo_summary(path: Path, session_dir: Path) -> dict[str, Any]:
    """`Tomograms/{ts}/{ts}_tomo.json` as emproc.tomo.pipeline writes it: 5 used tilts of 6
    (one dark), acquired 0, 3, -3, 6, -6 (dark), -6 degrees."""
    name = path.name.removesuffix("_tomo.json")
    base = path.parent / name
    angles = [0.0, 3.0, -3.0, 6.0, -6.0, -6.0]
    statuses = ["used", "used", "used", "used", "dark", "used"]
    summary = {
        "tilt_series_name": name,
        "mdoc_path": str(session_dir / f"{name}.mdoc"),
        "stack_path": f"{base}.st",
        "tomogram_path": f"{base}_rec.mrc",
        "xy_snapshot_path": f"{base}_xy.jpg",
        "xz_snapshot_path": f"{base}_xz.jpg",
        "slab_snapshot_path": f"{base}_slab.jpg",
        "residual_plot_path": f"{base}_residuals.png",
        "xy_shift_plot_path": f"{base}_xy_shifts.json",
        "summary_path": str(path),
        "tilt_axis_angle_deg": 85.0,
        "alignment_residual_angstrom": 12.0,
        "pixel_size_angstrom": 2.0,
        "binning": 4,
        "voxel_size_angstrom": 8.0,
        "tomogram_shape_zyx": [256, 1000, 1000],
        "tilts": [
            {
                "tilt_angle_deg": a,
                "acquisition_index": k,
                "movie_name": f"{name}_{k + 1:03d}[{a:.2f}].tiff",
                "accumulated_dose_e_per_angstrom2": 3.0 * k,
                "exposure_dose_e_per_angstrom2": 3.0,
                "mean_counts": 10.0,
                "defocus_angstrom": 30000.0 + 100 * k,
                "ctf_estimated": True,
                "ctf_fit_resolution_angstrom": 9.0 + k,
                "motion_corrected": True,
                "status": status,
                "ctf_source": "tilt",
            }
            for k, (a, status) in enumerate(zip(angles, statuses, strict=True))
        ],
    }
    _write(path, summary)
    return summary


# the 3D summaries of one real run of the spa3d steps (RELION 3.1.3, `make demo`'s coarse
# settings), with the output directory written as {outputs}; see tests/ispyb/data/README.md
SPA3D_DATA = Path(__file__).parent / "data" / "spa3d"
SPA3D_STEPS = ("InitialModel", "Class3D", "Refine3D", "PostProcess", "BFactor")


def write_spa3d_outputs(output_dir: Path) -> dict[str, dict[str, Any]]:
    """Write the recorded 3D step summaries under `output_dir`; returns them by step."""
    summaries = {}
    for step in SPA3D_STEPS:
        text = (SPA3D_DATA / step / "summary.json").read_text()
        data = json.loads(text.replace("{outputs}", str(output_dir)))
        _write(output_dir / step / "summary.json", data)
        summaries[step] = data
    return summaries
