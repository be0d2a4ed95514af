"""A test bench for tomogram denoising: a simulated tilt series reconstructed with its true
geometry, its even/odd half tomograms, the noise-free tomogram of the same draw and the true
density, all on one grid.

Two references, because denoising can only reach one of them:
- `noise_free`: the same series with every frame at its expected counts (no shot noise; the
  specimen, shifts, defoci, ice texture and drift are the same draws), reconstructed the same
  way: what a perfect denoiser would return;
- `truth`: the phantom's density binned to the grid. The reconstruction itself departs from
  it (phase-flipped CTF without amplitude correction, the defocus gradient of tilted views,
  the missing wedge, per-exposure ice texture), so even the noise-free tomogram correlates
  with it well below 1.

Alignment is the truth's, so the bench scores denoising only, not the aligner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import mrcfile
import numpy as np

from emproc.io.mdoc import read_tilt_series_mdoc
from emproc.simulate.phantom import PhantomParams
from emproc.simulate.tomo import TiltSeriesParams, simulate_tomo_session
from emproc.tomo.reconstruct import ReconstructionParams, aligned_stack, reconstruct_tomogram
from emproc.tomo.score import bin_volume, central_mask
from emproc.tomo.stack import assemble_tilt_stack

# specimen name -> phantom: a few vesicles among particles (the demo's), or a crowded slab
# of particles with a single vesicle
SPECIMENS = {
    "vesicles": PhantomParams(),
    "crowded": PhantomParams(number_of_vesicles=1, number_of_particles=90),
}


@dataclass(frozen=True)
class DenoiseCase:
    specimen: str = "vesicles"
    image_size_px: int = 128
    dose_per_tilt_e_per_angstrom2: float = 3.0
    frames_per_tilt: int = 4
    binning: int = 2
    seed: int = 1


@dataclass(frozen=True)
class DenoiseBench:
    """Volumes [z, y, x] on the reconstruction grid."""

    tomogram: np.ndarray  # from the motion-corrected full sums
    even_frames: np.ndarray  # from the even / odd frames of every tilt
    odd_frames: np.ndarray
    even_tilts: np.ndarray  # from the even / odd tilts (by angle) of the full sums
    odd_tilts: np.ndarray
    noise_free: np.ndarray
    truth: np.ndarray
    mask: np.ndarray  # central region, away from the field's edges
    voxel_size_angstrom: float


def _series_params(case: DenoiseCase, shot_noise: bool) -> TiltSeriesParams:
    if case.specimen not in SPECIMENS:
        raise ValueError(f"unknown specimen {case.specimen!r} ({' | '.join(SPECIMENS)})")
    size_angstrom = case.image_size_px * TiltSeriesParams.pixel_size_angstrom
    phantom = replace(SPECIMENS[case.specimen], lateral_extent_angstrom=0.9 * size_angstrom)
    return TiltSeriesParams(
        image_size_px=case.image_size_px,
        dose_per_tilt_e_per_angstrom2=case.dose_per_tilt_e_per_angstrom2,
        frames_per_tilt=case.frames_per_tilt,
        phantom=phantom,
        shot_noise=shot_noise,
    )


def _aligned(
    images: np.ndarray,
    series: dict,
    pixel_size_angstrom: float,
    binning: int,
    images_binning: int,
) -> np.ndarray:
    """Images (already binned by `images_binning`) aligned with the series' true geometry
    and binned to `binning`, phase-flipped at the true defoci."""
    order = np.argsort(series["tilt_angles_deg"])
    return aligned_stack(
        images,
        series["tilt_axis_angle_deg"],
        np.array(series["shifts_px"])[order] / images_binning,
        binning // images_binning,
        pixel_size_angstrom=pixel_size_angstrom * images_binning,
        defocus_angstrom=list(np.array(series["defocus_angstrom"])[order]),
    )


def denoise_bench(case: DenoiseCase, directory: str | Path) -> DenoiseBench:
    """Simulate `case` (noisy and noise-free) under `directory` and reconstruct it."""
    directory = Path(directory)
    volumes = {}
    for label, shot_noise in (("noisy", True), ("noise_free", False)):
        session = directory / label
        truth_path = simulate_tomo_session(
            session, params=_series_params(case, shot_noise), seed=case.seed
        )
        truth = json.loads(truth_path.read_text())["tilt_series"][0]
        stack = assemble_tilt_stack(
            read_tilt_series_mdoc(session / "Position_1.mdoc"),
            frame_halves_binning=case.binning if shot_noise else None,
        )
        with mrcfile.open(truth["phantom_path"]) as mrc:
            phantom = bin_volume(mrc.data, case.binning)
        params = ReconstructionParams(binning=case.binning, thickness_px=phantom.shape[0])

        angles = stack.tilt_angles_deg
        pixel = stack.pixel_size_angstrom
        full = _aligned(stack.images, truth, pixel, case.binning, 1)
        volumes[label] = reconstruct_tomogram(full, angles, params)
        if shot_noise:
            for half, images in (
                ("even_frames", stack.even_images),
                ("odd_frames", stack.odd_images),
            ):
                volumes[half] = reconstruct_tomogram(
                    _aligned(images, truth, pixel, case.binning, case.binning), angles, params
                )
            volumes["even_tilts"] = reconstruct_tomogram(full[0::2], angles[0::2], params)
            volumes["odd_tilts"] = reconstruct_tomogram(full[1::2], angles[1::2], params)
            volumes["truth"] = phantom
            voxel = pixel * case.binning
    return DenoiseBench(
        tomogram=volumes["noisy"],
        even_frames=volumes["even_frames"],
        odd_frames=volumes["odd_frames"],
        even_tilts=volumes["even_tilts"],
        odd_tilts=volumes["odd_tilts"],
        noise_free=volumes["noise_free"],
        truth=volumes["truth"],
        mask=central_mask(volumes["truth"].shape),
        voxel_size_angstrom=voxel,
    )
