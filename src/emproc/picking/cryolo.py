"""Optional crYOLO backend: the command line is built and the output parsed here.

crYOLO (`cryolo_predict.py`) reads a directory of micrographs and writes, per micrograph,
`STAR/<name>.star` (rlnCoordinateX/Y box centres in pixels, optionally a figure of merit)
and `CBOX/<name>.cbox` under the output directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emproc.picking.io import CoordinateFileError, read_coordinate_star


class CryoloError(RuntimeError):
    """crYOLO is not installed, failed, or wrote no coordinates."""


@dataclass(frozen=True)
class CryoloParams:
    config_path: str  # crYOLO config.json
    weights_path: str  # trained or general model (.h5)
    threshold: float = 0.3  # confidence threshold
    gpu: str = ""  # e.g. "0"; empty: CPU (--use_cpu)
    executable: str = "cryolo_predict.py"


def cryolo_available(executable: str = "cryolo_predict.py") -> bool:
    return shutil.which(executable) is not None


def build_cryolo_command(input_dir: Path, output_dir: Path, params: CryoloParams) -> list[str]:
    command = [
        params.executable,
        "-c",
        str(params.config_path),
        "-w",
        str(params.weights_path),
        "-i",
        str(input_dir),
        "-o",
        str(output_dir),
        "-t",
        f"{params.threshold:g}",
    ]
    command += ["-g", params.gpu] if params.gpu else ["--use_cpu", "1"]
    return command


def parse_cryolo_output(output_dir: Path, micrograph_stem: str) -> pd.DataFrame:
    """Picks (x_px, y_px, score_sigma = crYOLO confidence) for one micrograph."""
    star = Path(output_dir) / "STAR" / f"{micrograph_stem}.star"
    try:
        return read_coordinate_star(star)
    except CoordinateFileError as error:
        raise CryoloError(f"crYOLO wrote no usable coordinates: {error}") from error


def run_cryolo(
    micrograph_path: str | os.PathLike[str], work_dir: str | os.PathLike[str], params: CryoloParams
) -> pd.DataFrame:
    """Run crYOLO on one micrograph (linked into its own input directory) and parse it."""
    if not cryolo_available(params.executable):
        raise CryoloError(f"{params.executable} not found on PATH (picking.backend: cryolo)")
    micrograph_path = Path(micrograph_path).resolve()
    work_dir = Path(work_dir)
    input_dir = work_dir / "input"
    output_dir = work_dir / "output"
    input_dir.mkdir(parents=True, exist_ok=True)
    link = input_dir / micrograph_path.name
    if not link.exists():
        link.symlink_to(micrograph_path)
    command = build_cryolo_command(input_dir, output_dir, params)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CryoloError(
            f"crYOLO failed on {micrograph_path} (exit {result.returncode}): "
            f"{result.stderr.strip()[-500:]}"
        )
    return parse_cryolo_output(output_dir, micrograph_path.stem)
