"""Motion-correction speed and peak memory (run by hand; results in docs/benchmarks.md).

    .venv/bin/python benchmarks/bench_motion.py [--threads 2] [--sizes 1024x20 4096x40]

Each movie (a drifting random texture with Poisson counts, uint8, like an EPU K3 TIFF)
is written as an uncompressed TIFF; a fresh child process then reads it with
`read_movie` (memory-mapped) and runs `motion_correct` with a gain reference, so the
reported peak RSS is that of one pipeline job (the mapped movie pages included).
tracemalloc's peak counts the Python/numpy allocations alone.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.fft
import tifffile


def make_movie(path: Path, size: int, frames: int, seed: int = 0) -> np.ndarray:
    """Smooth decaying sub-pixel drift (~10 px path), exact Fourier shifts, ~1 count/px."""
    from emproc.motion.align import phase_ramp

    rng = np.random.default_rng(seed)
    k = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :])
    spectrum = scipy.fft.rfft2(rng.standard_normal((size, size)).astype(np.float32))
    spectrum *= np.exp(-60 * k**2).astype(np.float32)
    scale = 0.3 / float(np.sqrt(np.mean(np.abs(spectrum) ** 2) * 2) / size)
    steps = np.exp(-np.arange(frames - 1) / (frames / 4)) + 0.15
    steps *= 10.0 / steps.sum()
    angle = rng.uniform(0, 2 * np.pi) + np.linspace(0, 1, frames - 1)
    drift = np.vstack([[0, 0], np.cumsum(steps[:, None] * np.c_[np.cos(angle), np.sin(angle)], 0)])
    with tifffile.TiffWriter(path) as writer:
        for shift in drift:
            moved = spectrum * np.conj(phase_ramp((size, size), shift))  # features at p + shift
            texture = 1.0 + scale * scipy.fft.irfft2(moved, s=(size, size), workers=2)
            writer.write(rng.poisson(np.clip(texture, 0, None)).astype(np.uint8), contiguous=True)
    return drift


def run_case(path: str, patches: int, threads: int, queue) -> None:
    from emproc.io.movie import read_movie
    from emproc.motion import motion_correct

    tracemalloc.start()
    start = time.perf_counter()
    cpu_start = time.process_time()
    frames = read_movie(path)
    gain = np.ones(frames.shape[1:], dtype=np.float32)
    result = motion_correct(
        frames,
        pixel_size_angstrom=0.83,
        dose_per_frame_e_per_angstrom2=1.0,
        gain=gain,
        patches_x=patches,
        patches_y=patches,
        threads=threads,
    )
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    _, traced_peak = tracemalloc.get_traced_memory()
    peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "peak_rss_gib": peak_rss_kib / 2**20,
            "tracemalloc_peak_gib": traced_peak / 2**30,
            "shifts": result.shifts_px,
            "patches_used": (result.patches_used_x, result.patches_used_y),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=["1024x20", "4096x40"])
    arguments = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as directory:
        for size_spec in arguments.sizes:
            size, frames = (int(v) for v in size_spec.split("x"))
            path = Path(directory) / f"movie_{size}_{frames}.tiff"
            drift = make_movie(path, size, frames)
            for patches in (1, 5):
                queue = context.Queue()
                child = context.Process(
                    target=run_case, args=(str(path), patches, arguments.threads, queue)
                )
                child.start()
                report = queue.get()
                child.join()
                error = report["shifts"] - drift
                error -= error.mean(axis=0)
                rms = float(np.sqrt(np.mean(np.sum(error**2, axis=1))))
                print(
                    f"{size}x{size}x{frames} patches {patches}x{patches} "
                    f"(used {report['patches_used'][0]}x{report['patches_used'][1]}), "
                    f"{arguments.threads} threads: {report['seconds']:.1f} s "
                    f"(CPU {report['cpu_seconds']:.1f} s, load {os.getloadavg()[0]:.1f}), "
                    f"peak RSS {report['peak_rss_gib']:.2f} GiB, "
                    f"tracemalloc peak {report['tracemalloc_peak_gib']:.2f} GiB, "
                    f"shift RMS error {rms:.3f} px",
                    flush=True,
                )
            path.unlink()


if __name__ == "__main__":
    main()
