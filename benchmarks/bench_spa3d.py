"""Benchmark (run by hand): time and memory of the RELION 3D steps against problem size.

    .venv/bin/python benchmarks/bench_spa3d.py [--steps class3d,refine,...] [--cases ...]

Each case simulates particles (emproc.simulate.particles3d: a C1 two-density mixture, 4 A/px)
and runs the steps one after the other, each in its own process so the peak RSS of RELION's
processes (ru_maxrss of the waited-for children) belongs to that step. Prints one row per
case and step: wall seconds, CPU seconds of RELION, peak RSS, and the step's main number.
Results go in docs/benchmarks.md, section "SPA 3D".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

STEP_CODE = r"""
import json, resource, sys, time
from emproc.refine3d.bfactor import BFactorParams, run_bfactor
from emproc.refine3d.relion import Compute
from emproc.refine3d.steps import *
spec = json.loads(sys.argv[1])
d = spec["dir"]
common = Common3DParams(spec["diameter"], pad=spec["pad"], skip_gridding=spec["skip_gridding"])
compute = Compute(threads=spec["threads"], nice=spec["nice"])
quick = dict(offset_range_px=2.0, offset_step_px=1.0)
start = time.perf_counter()
step = spec["step"]
if step == "initial_model":
    out = run_initial_model(f"{d}/particles.star", f"{d}/InitialModel", d, common,
        InitialModelParams(iterations_initial=10, iterations_inbetween=30, iterations_final=10,
                           subset_initial=100, subset_final=200), compute)
    number = out["resolution_angstrom"]
elif step == "class3d":
    out = run_class3d(f"{d}/particles.star", f"{d}/truth_1.mrc", f"{d}/Class3D", d, common,
        Class3DParams(number_of_classes=spec["classes"], iterations=spec["iterations"],
                      healpix_order=spec["healpix_order"], **quick),
        compute)
    number = max(c["class_distribution"] for c in out["classes"])
elif step == "refine":
    out = run_refine(f"{d}/particles.star", f"{d}/truth_1.mrc", f"{d}/Refine3D", d, common,
        RefineParams(healpix_order=2, local_healpix_order=3, **quick), compute)
    number = out["resolution_angstrom"]
elif step == "postprocess":
    out = run_postprocess(f"{d}/Refine3D/run_half1_class001_unfil.mrc", f"{d}/PostProcess", d,
        PostprocessParams(), mask_from_map=f"{d}/Refine3D/run_class001.mrc")
    number = out["resolution_angstrom"]
elif step == "bfactor":
    out = run_bfactor(f"{d}/Refine3D/run_data.star", f"{d}/Refine3D/run_class001.mrc",
        f"{d}/PostProcess/mask.mrc", f"{d}/BFactor", d, common,
        BFactorParams(number_of_subsets=4, min_particles=200), compute=compute)
    number = out["bfactor_angstrom2"]
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mib": usage.ru_maxrss / 1024, "number": number}))
"""


def simulate(directory: Path, box: int, particles: int, snr: float) -> float:
    from emproc.simulate.particles3d import Particles3DParams, make_atom_density, write_particles

    pixel = 4.0
    densities = [
        make_atom_density("ellipsoid", 0.6 * box * pixel, 300, seed=1),
        make_atom_density("dumbbell", 0.6 * box * pixel, 300, seed=2),
    ]
    params = Particles3DParams(
        box_px=box, pixel_size_angstrom=pixel, number_of_particles=particles,
        bfactor_angstrom2=150.0, snr=snr, class_fractions=(0.7, 0.3),
    )  # fmt: skip
    write_particles(directory, densities, params)
    return 0.75 * box * pixel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="initial_model,class3d,refine,postprocess,bfactor")
    parser.add_argument(
        "--cases", default="32x1000x2", help="comma-separated BOXxPARTICLESxCLASSES"
    )
    parser.add_argument("--class3d-iterations", type=int, default=5)
    parser.add_argument("--class3d-healpix-order", type=int, default=1)
    parser.add_argument("--snr", type=float, default=1.0, help="per pixel, as the tests use")
    parser.add_argument("--pad", type=int, default=1)
    parser.add_argument("--gridding", action="store_true", help="no --skip_gridding")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nice", type=int, default=10)
    args = parser.parse_args()
    print(f"# load before: {os.getloadavg()}")
    print("case | step | wall s | RELION CPU s | peak RSS MiB | number")
    for case in args.cases.split(","):
        box, particles, classes = (int(v) for v in case.split("x"))
        with tempfile.TemporaryDirectory() as work:
            diameter = simulate(Path(work), box, particles, args.snr)
            for step in args.steps.split(","):
                spec = {
                    "dir": work, "step": step, "diameter": diameter, "classes": classes,
                    "iterations": args.class3d_iterations, "threads": args.threads,
                    "nice": args.nice, "pad": args.pad, "skip_gridding": not args.gridding,
                    "healpix_order": args.class3d_healpix_order,
                }  # fmt: skip
                result = subprocess.run(
                    [sys.executable, "-c", STEP_CODE, json.dumps(spec)],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                if result.returncode != 0:
                    print(f"{case} | {step} | failed: {result.stderr.strip()[-300:]}")
                    continue
                row = json.loads(result.stdout.strip().splitlines()[-1])
                print(
                    f"{case} | {step} | {row['seconds']:.0f} | {row['cpu_seconds']:.0f} | "
                    f"{row['peak_rss_mib']:.0f} | {row['number']:.3g}",
                    flush=True,
                )
    print(f"# load after: {os.getloadavg()}")
    print(
        f"# peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
