"""Topaz-Denoise 3D on CPU: does the pretrained model run here, and what does it cost?

Not an emproc dependency (docs/tomo.md, "Topaz-Denoise, evaluated and not used"). Run with a
separate environment that has torch and topaz-em, e.g.

    python3 -m venv /tmp/topaz && /tmp/topaz/bin/pip install torch==2.13.0 numpy scipy \\
        h5py tqdm pandas psutil scikit-learn pillow future
    /tmp/topaz/bin/pip install --no-deps topaz-em==0.3.20
    nice -n 10 /tmp/topaz/bin/python benchmarks/bench_topaz_denoise_cpu.py 48,96,96

topaz-em 0.3.20 cannot load its own packaged weights (`load_model` looks them up with
importlib.resources and a `..` path) and `Denoise3D` accepts only a plain nn.Module or
nn.Sequential; both are worked around below. Patches are Topaz's defaults (96, padding 48),
as cryoemservices' denoise service runs them. Timing is of a random volume: a CNN's cost does
not depend on the content.
"""

import os
import resource
import sys
import time

import numpy as np
import topaz
import torch
from topaz.denoise import Denoise3D
from topaz.denoising.models import UDenoiseNet3D

WEIGHTS = "pretrained/denoise/unet-3d-10a-v0.2.4.sav"


def main() -> None:
    shape = tuple(int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "48,96,96").split(","))
    torch.set_num_threads(1)
    model = UDenoiseNet3D(base_width=7)
    state = torch.load(
        os.path.join(os.path.dirname(topaz.__file__), WEIGHTS),
        map_location="cpu",
        weights_only=False,
    )
    model.load_state_dict(state)
    model.eval()
    denoiser = Denoise3D(torch.nn.Sequential(model), use_cuda=False, dims=3)
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    wall, cpu = time.perf_counter(), time.process_time()
    denoised = denoiser.denoise(volume, patch_size=96, padding=48, verbose=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"topaz {topaz.__version__ if hasattr(topaz, '__version__') else ''} torch "
        f"{torch.__version__} numpy {np.__version__}: {shape} -> {denoised.shape}, "
        f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {peak_mb:.0f} MB, "
        f"load {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
