"""Benchmark (run by hand): the picking matrix, RELION's LoG side by side, and 4k speed.

    .venv/bin/python benchmarks/bench_picking.py [--matrix] [--relion-cells N] [--speed]

--matrix        every cell of `emproc.micrograph_matrix.pairwise_cells()` (diameters 60-400 A,
                0.5-1.5 A/px, four shapes, sparse to crowded, defocus 0.5-3.5 um, 20-60 e/A^2,
                ice gradient or not): precision/recall with default settings (only the
                cell's diameter range given), enough micrographs for >= 40 particles
                (at most 4), and the ideal matched-filter SNR of the cell's particles.
--relion-cells  run `relion_autopick --LoG` (GUI defaults: --shrink 0 --lowpass 20) on the
                same micrographs of the first N matrix cells and score it the same way.
--ctf           also pick with the CTF-matched filter (`picking.ctf_filter`), given the
                generator's true mean defocus (the role of the CTF estimate; astigmatism of up
                to 400 A ignored): columns "ctf P/R".
--oracle        for cells below 0.9: the best min(P, R) any fixed threshold reaches (swept
                2-8 sigma, chosen with the ground truth, which no picker has): whether the
                filters separate the particles from the noise at all.
--speed         4096 x 4096 micrographs (1 A/px, 150 A and 60 A particles): emproc (read + pick)
                and relion_autopick --LoG on the same file, alternating, 3 runs each.
Prints markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np
import starfile

from emproc.micrograph_matrix import (
    AMPLITUDE_CONTRAST,
    Cell,
    Truth,
    ideal_detection_snr,
    pairwise_cells,
    render_cell_micrograph,
    score_cell,
)
from emproc.picking import LogPickerParams, pick_log
from emproc.picking.ctf_weight import MicrographCtf
from emproc.picking.io import read_micrograph

MIN_PARTICLES = 40
MAX_MICROGRAPHS = 4


def write_mrc(path: Path, image: np.ndarray, pixel_size: float) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(image.astype(np.float32))
        mrc.voxel_size = pixel_size


def write_micrographs_star(path: Path, names: list[str], pixel_size: float) -> None:
    path.write_text(
        "data_optics\nloop_\n_rlnOpticsGroupName\n_rlnOpticsGroup\n_rlnMicrographPixelSize\n"
        "_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\n"
        f"opticsGroup1 1 {pixel_size} 300 2.7 0.07\n\n"
        "data_micrographs\nloop_\n_rlnMicrographName\n_rlnOpticsGroup\n"
        + "".join(f"{name} 1\n" for name in names)
    )


def relion_log_command(star: Path, cell_range: tuple[float, float], pixel: float) -> list[str]:
    return [
        "relion_autopick",
        "--i",
        str(star.name),
        "--odir",
        "AutoPick/",
        "--pickname",
        "autopick",
        "--LoG",
        "--LoG_diam_min",
        f"{cell_range[0]:.1f}",
        "--LoG_diam_max",
        f"{cell_range[1]:.1f}",
        "--angpix",
        f"{pixel}",
        "--shrink",
        "0",
        "--lowpass",
        "20",
    ]


def run_relion(directory: Path, names: list[str], cell: Cell) -> tuple[list[np.ndarray], float]:
    """RELION LoG picks per micrograph (x, y px) and the wall seconds of the call."""
    star = directory / "micrographs.star"
    write_micrographs_star(star, names, cell.pixel_size_angstrom)
    command = relion_log_command(star, cell.diameter_range_angstrom, cell.pixel_size_angstrom)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"relion_autopick failed: {result.stderr[-500:]}")
    picks = []
    for name in names:
        coordinates = directory / "AutoPick" / f"{Path(name).stem}_autopick.star"
        table = starfile.read(coordinates, always_dict=True) if coordinates.exists() else {}
        block = next(iter(table.values()), None)
        if block is None or len(block) == 0:
            picks.append(np.zeros((0, 2)))
        else:
            picks.append(block[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(dtype=float))
    return picks, wall


def score(all_picks, micrographs, cell: Cell) -> tuple[float, float, int, int]:
    result = score_cell(cell, all_picks, micrographs)
    return result["precision"], result["recall"], result["picks"], result["particles"]


def true_ctf(truth: Truth) -> MicrographCtf:
    return MicrographCtf(
        truth.defocus_angstrom, truth.defocus_angstrom, 0.0, 300.0, 2.7, AMPLITUDE_CONTRAST
    )


def pick_all(micrographs, cell: Cell, params: LogPickerParams, with_ctf: bool) -> list:
    """Picks (x, y, score) per micrograph."""
    return [
        pick_log(
            image, cell.pixel_size_angstrom, params, ctf=true_ctf(truth) if with_ctf else None
        )[["x_px", "y_px", "score_sigma"]].to_numpy()
        for image, truth in micrographs
    ]


def oracle_threshold(micrographs, cell: Cell, params: LogPickerParams, with_ctf: bool) -> str:
    """Best min(P, R) over fixed thresholds 2-8 sigma (chosen with the truth) and where.

    Picks once at 2 sigma and keeps those scoring >= t: non-maximum suppression is greedy
    from the top, so it keeps the same peaks above t (ridge merging through peaks below t
    is the one approximation)."""
    low = dataclasses.replace(params, threshold_sigma=2.0)
    picks = pick_all(micrographs, cell, low, with_ctf)
    best = (-1.0, 0.0, 0.0, 0.0)
    for threshold in np.arange(2.0, 8.01, 0.25):
        kept = [p[p[:, 2] >= threshold, :2] for p in picks]
        precision, recall, _, _ = score(kept, micrographs, cell)
        precision = float(np.nan_to_num(precision))
        if min(precision, recall) > best[0]:
            best = (min(precision, recall), threshold, precision, recall)
    return f"{best[0]:.2f} (t {best[1]:.2f}: P {best[2]:.2f} R {best[3]:.2f})"


def bench_matrix(
    relion_cells: int,
    only_relion: bool,
    with_ctf: bool,
    oracle: bool,
    selected: list[int] | None = None,
    ideal_snr: bool = True,
) -> None:
    cells = pairwise_cells()
    print(
        "| cell | px | micrographs | particles | ideal SNR (median) | emproc P | emproc R |"
        " emproc s/micrograph | RELION P | RELION R | ctf P | ctf R | oracle | ctf oracle |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    worst = 1.0
    for index, cell in enumerate(cells):
        with_relion = index < relion_cells and shutil.which("relion_autopick")
        if (only_relion and not with_relion) or (selected and index not in selected):
            continue
        micrographs = []
        seed = 0
        while seed < MAX_MICROGRAPHS:
            micrographs.append(render_cell_micrograph(cell, 100 + seed))
            seed += 1
            if sum(len(t.particles) for _, t in micrographs) >= MIN_PARTICLES:
                break
        snr = float(np.median(ideal_detection_snr(cell, 100))) if ideal_snr else float("nan")
        low, high = cell.diameter_range_angstrom
        params = LogPickerParams(min_diameter_angstrom=low, max_diameter_angstrom=high)
        ours = []
        wall = 0.0
        for image, _ in micrographs:
            start = time.perf_counter()
            picks = pick_log(image, cell.pixel_size_angstrom, params)
            wall += time.perf_counter() - start
            ours.append(picks[["x_px", "y_px"]].to_numpy())
        precision, recall, _, particles = score(ours, micrographs, cell)
        worst = min(worst, precision, recall)
        extra = "| - | - |"
        if with_ctf:
            with_ctf_picks = [p[:, :2] for p in pick_all(micrographs, cell, params, True)]
            cp, cr, _, _ = score(with_ctf_picks, micrographs, cell)
            extra = f"| {cp:.2f} | {cr:.2f} |"
        if oracle and min(np.nan_to_num(precision), recall) < 0.9:
            extra += f" {oracle_threshold(micrographs, cell, params, False)} |"
            extra += f" {oracle_threshold(micrographs, cell, params, True)} |"
        else:
            extra += " - | - |"
        relion = "| - | - |"
        if with_relion:
            with tempfile.TemporaryDirectory() as directory:
                names = []
                for number, (image, _) in enumerate(micrographs):
                    names.append(f"mic{number}.mrc")
                    write_mrc(Path(directory) / names[-1], image, cell.pixel_size_angstrom)
                relion_picks, _ = run_relion(Path(directory), names, cell)
            rp, rr, _, _ = score(relion_picks, micrographs, cell)
            relion = f"| {rp:.2f} | {rr:.2f} |"
        print(
            f"| {cell.name} | {cell.size_px} | {len(micrographs)} | {particles} | {snr:.1f} |"
            f" {precision:.2f} | {recall:.2f} | {wall / len(micrographs):.2f} {relion}"
            f" {extra[2:]}",
            flush=True,
        )
    print(f"worst cell: {worst:.2f}")


def bench_speed(diameter_angstrom: float, repeats: int = 3) -> None:
    cell = Cell(
        shape="compact", diameter_angstrom=diameter_angstrom, crowding="medium", size_px=4096
    )
    image, truth = render_cell_micrograph(cell, 1)
    low, high = cell.diameter_range_angstrom
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        write_mrc(directory / "mic.mrc", image, 1.0)
        ours_wall, ours_cpu, relion_wall, relion_cpu = [], [], [], []
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            micrograph, pixel = read_micrograph(directory / "mic.mrc")
            picks = pick_log(
                micrograph,
                pixel,
                LogPickerParams(min_diameter_angstrom=low, max_diameter_angstrom=high),
            )
            ours_wall.append(time.perf_counter() - start)
            ours_cpu.append(time.process_time() - cpu)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            relion_picks, wall = run_relion(directory, ["mic.mrc"], cell)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            relion_wall.append(wall)
            relion_cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    ours_score = score([picks[["x_px", "y_px"]].to_numpy()], [(image, truth)], cell)
    relion_score = score(relion_picks, [(image, truth)], cell)
    print(
        f"4096 x 4096, 1 A/px, {len(truth.particles)} particles of {diameter_angstrom:g} A,"
        f" {repeats} runs each"
    )
    print("| picker | wall (median) | CPU (median) | precision | recall |")
    print("|---|---|---|---|---|")
    print(
        f"| emproc pick_log (read MRC + pick) | {np.median(ours_wall):.2f} s |"
        f" {np.median(ours_cpu):.2f} s | {ours_score[0]:.2f} | {ours_score[1]:.2f} |"
    )
    print(
        f"| relion_autopick --LoG (process) | {np.median(relion_wall):.2f} s |"
        f" {np.median(relion_cpu):.2f} s | {relion_score[0]:.2f} | {relion_score[1]:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--matrix", action="store_true")
    parser.add_argument("--relion-cells", type=int, default=0)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--ctf", action="store_true")
    parser.add_argument("--oracle", action="store_true")
    parser.add_argument("--cells", type=int, nargs="+", help="matrix cell indices only")
    parser.add_argument("--no-ideal-snr", action="store_true", help="skip the ideal SNR column")
    parser.add_argument(
        "--speed-diameters", type=float, nargs="+", default=[150.0, 60.0], help="Angstrom"
    )
    args = parser.parse_args()
    if args.matrix or args.relion_cells:
        bench_matrix(
            args.relion_cells,
            not args.matrix,
            args.ctf,
            args.oracle,
            args.cells,
            not args.no_ideal_snr,
        )
    if args.speed:
        for diameter in args.speed_diameters:
            bench_speed(diameter)


if __name__ == "__main__":
    main()
