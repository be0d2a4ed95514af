"""`emproc simulate spa|tomo OUTDIR`: a synthetic session with its ground truth,
and optionally a config file that processes it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from emproc.config import WORKFLOW_ROOT, load_config, validate_config


def _template_config() -> dict[str, Any]:
    return load_config(WORKFLOW_ROOT / "config" / "config.yaml")


def spa_config(truth_path: Path, session_dir: Path, output_dir: Path) -> dict[str, Any]:
    """A validated config whose optics, dose and gain settings match a simulated SPA session."""
    from emproc.simulate.spa import load_spa_truth

    truth = load_spa_truth(truth_path)
    params = truth.params
    config = _template_config()
    extension = {"tiff": "tiff", "mrc": "mrc"}.get(truth.movie_format, truth.movie_format)
    config["session"].update(
        session_dir=str(session_dir.resolve()),
        movie_glob=f"Images-Disc*/GridSquare_*/Data/*_fractions.{extension}",
        experiment="spa",
    )
    config["microscope"].update(
        voltage_kv=float(params.voltage_kv),
        spherical_aberration_mm=float(params.spherical_aberration_mm),
        amplitude_contrast=float(params.amplitude_contrast),
        pixel_size_angstrom=float(params.pixel_size_angstrom),
        dose_per_frame_e_per_angstrom2=float(params.dose_per_frame_e_per_angstrom2),
        gain_reference=str(truth.gain_reference_path.resolve())
        if truth.gain_reference_path
        else "",
        gain_rotation_deg=int(truth.gain_rotation_deg),
        gain_flip=str(truth.gain_flip),
    )
    smallest_side = min(params.shape_px)
    # the CTF tile must fit the micrograph several times over
    config["ctf"]["box_size_px"] = int(min(config["ctf"]["box_size_px"], smallest_side // 2))
    config["picking"].update(
        min_diameter_angstrom=round(0.8 * params.particle_diameter_angstrom, 1),
        max_diameter_angstrom=round(1.2 * params.particle_diameter_angstrom, 1),
    )
    # a simulated session is complete and small: classify what it has in modest batches
    config["class2d"].update(
        batch_size=100, classify_partial_batch=True, number_of_classes=6, iterations=15
    )
    config["outputs"]["dir"] = str(output_dir.resolve())
    return validate_config(config)


def demo_3d_settings(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with 3D reached by a few hundred particles at coarse, quick settings
    (`emproc simulate spa --demo-3d`, `make demo`): a smoke run, not a structure (docs/spa3d.md)."""
    spa3d = config["spa3d"]
    spa3d["min_particles"] = 50
    # small boxes: the references need no Fourier padding, reconstructions no gridding
    # correction: both cut RELION's M-step (docs/spa3d.md)
    spa3d.update(pad=1, skip_gridding=True)
    spa3d["initial_model"].update(
        iterations_initial=10, iterations_inbetween=20, iterations_final=10,
        subset_initial=50, subset_final=100,
    )  # fmt: skip
    spa3d["class3d"].update(number_of_classes=2, iterations=8, healpix_order=1)
    spa3d["refine"].update(healpix_order=1, local_healpix_order=3)
    spa3d["bfactor"].update(number_of_subsets=3, min_particles=50)
    return validate_config(config)


def _write_config(config: dict[str, Any], path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# emproc config for the simulated {kind} session in {config['session']['session_dir']}\n"
    )
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))


def command_simulate_spa(args: argparse.Namespace) -> int:
    from emproc.simulate.spa import SpaMovieParams, simulate_spa_session

    params = SpaMovieParams(
        shape_px=(args.size, args.size),
        number_of_frames=args.frames,
        pixel_size_angstrom=args.pixel_size,
        dose_per_frame_e_per_angstrom2=args.dose_per_frame,
        number_of_particles=args.particles,
        local_deformation_px=args.local_deformation,
    )
    session_dir = Path(args.outdir)
    truth_path = simulate_spa_session(
        session_dir,
        number_of_movies=args.movies,
        params=params,
        seed=args.seed,
        movie_format=args.format,
        grid_squares=args.grid_squares,
        with_gain=not args.no_gain,
    )
    print(f"simulated {args.movies} movies in {session_dir}; ground truth: {truth_path}")
    if args.write_config:
        config_path = Path(args.write_config)
        output_dir = Path(args.output_dir) if args.output_dir else session_dir.parent / "processed"
        config = spa_config(truth_path, session_dir, output_dir)
        if args.demo_3d:
            config = demo_3d_settings(config)
        _write_config(config, config_path, "SPA")
        print(f"config: {config_path} (outputs will go to {output_dir})")
    return 0


def tomo_config(session_dir: Path, output_dir: Path, params: Any) -> dict[str, Any]:
    """A validated config for a simulated tomography session (`TiltSeriesParams` given)."""
    config = _template_config()
    config["session"].update(
        session_dir=str(session_dir.resolve()), tomo_mdoc_glob="Position_*.mdoc", experiment="tomo"
    )
    config["microscope"].update(
        voltage_kv=float(params.voltage_kv),
        spherical_aberration_mm=float(params.spherical_aberration_mm),
        amplitude_contrast=float(params.amplitude_contrast),
        pixel_size_angstrom=float(params.pixel_size_angstrom),
        dose_per_frame_e_per_angstrom2=params.dose_per_tilt_e_per_angstrom2
        / params.frames_per_tilt,
        gain_reference="",
    )
    config["ctf"].update(
        box_size_px=int(min(config["ctf"]["box_size_px"], params.image_size_px // 2)),
        # low-dose tilts at a coarse pixel: fit Thon rings out to 2.5 pixels
        max_resolution_angstrom=round(2.5 * params.pixel_size_angstrom, 1),
        min_resolution_angstrom=max(50.0, 10 * params.pixel_size_angstrom),
    )
    # small simulated tilt series: keep the reconstruction at a useful sampling
    binning = 2 if params.image_size_px <= 512 else 4
    slab_px = params.phantom.slab_thickness_angstrom / (params.pixel_size_angstrom * binning)
    config["tomo"].update(
        binning=binning,
        alignment_binning=binning,
        patch_size_px=48 if binning == 2 else 24,
        thickness_px=int(round(1.5 * slab_px / 8)) * 8,
        completion_timeout_s=0,
        # gold in the phantom: fiducial alignment at its diameter; none: patch tracking
        bead_diameter_nm=(
            params.phantom.gold_radius_angstrom / 5.0
            if params.phantom.number_of_gold_beads
            else 0.0
        ),
    )
    config["outputs"]["dir"] = str(output_dir.resolve())
    return validate_config(config)


def command_simulate_tomo(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from emproc.simulate.phantom import PhantomParams
    from emproc.simulate.tomo import TiltSeriesParams, simulate_tomo_session

    phantom = replace(
        PhantomParams(),
        number_of_gold_beads=args.beads,
        gold_radius_angstrom=5.0 * args.bead_diameter_nm,
    )
    params = TiltSeriesParams(
        image_size_px=args.size, tilt_step_deg=args.tilt_step, phantom=phantom
    )
    session_dir = Path(args.outdir)
    truth_path = simulate_tomo_session(
        session_dir, number_of_tilt_series=args.tilt_series, params=params, seed=args.seed
    )
    print(f"simulated {args.tilt_series} tilt series in {session_dir}; ground truth: {truth_path}")
    if args.write_config:
        config_path = Path(args.write_config)
        output_dir = Path(args.output_dir) if args.output_dir else session_dir.parent / "processed"
        _write_config(tomo_config(session_dir, output_dir, params), config_path, "tomography")
        print(f"config: {config_path} (outputs will go to {output_dir})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    simulate = subparsers.add_parser("simulate", help="write a synthetic session with ground truth")
    kinds = simulate.add_subparsers(dest="kind", required=True)

    spa = kinds.add_parser("spa", help="an EPU-like single-particle session")
    spa.add_argument("outdir", help="session directory to create")
    spa.add_argument("--movies", type=int, default=4)
    spa.add_argument("--size", type=int, default=1024, help="frame side, pixels")
    spa.add_argument("--frames", type=int, default=16)
    spa.add_argument("--pixel-size", type=float, default=1.0, help="Angstrom/pixel")
    spa.add_argument("--dose-per-frame", type=float, default=1.0, help="e-/A^2 per frame")
    spa.add_argument("--particles", type=int, default=60, help="particles per movie (at most)")
    spa.add_argument("--local-deformation", type=float, default=0.0, help="pixels, 0 = none")
    spa.add_argument("--grid-squares", type=int, default=2)
    spa.add_argument("--format", choices=["tiff", "mrc"], default="tiff")
    spa.add_argument("--no-gain", action="store_true", help="frames already gain-corrected")
    spa.add_argument("--seed", type=int, default=0)
    spa.add_argument("--write-config", default=None, help="also write a config for this session")
    spa.add_argument("--output-dir", default=None, help="outputs dir in that config")
    spa.add_argument(
        "--demo-3d", action="store_true", help="that config reaches 3D with few particles"
    )
    spa.set_defaults(handler=command_simulate_spa)

    tomo = kinds.add_parser("tomo", help="SerialEM-like tilt series (mdoc + per-tilt movies)")
    tomo.add_argument("outdir", help="session directory to create")
    tomo.add_argument("--tilt-series", type=int, default=1)
    tomo.add_argument("--size", type=int, default=256, help="image side, pixels")
    tomo.add_argument("--tilt-step", type=float, default=3.0, help="degrees")
    tomo.add_argument("--seed", type=int, default=0)
    tomo.add_argument("--beads", type=int, default=24, help="gold beads in the phantom, 0 = none")
    tomo.add_argument("--bead-diameter-nm", type=float, default=10.0)
    tomo.add_argument("--write-config", default=None, help="also write a config for this session")
    tomo.add_argument("--output-dir", default=None, help="outputs dir in that config")
    tomo.set_defaults(handler=command_simulate_tomo)
