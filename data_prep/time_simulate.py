#!/usr/bin/env python
"""Time ``Reconstructor.simulate`` of one volume with the shipped ``synth-n2n`` weights: the
median of 5 rounds after a warm-up (the numbers under "Before and after the acquisition-kinds
refactor" in docs/results.md). The checkout on ``PYTHONPATH`` decides the code, so two trees
can be compared on one machine::

    PYTHONPATH=/path/to/checkout python data_prep/time_simulate.py [THREADS]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

import mri_n2n
from mri_n2n import Reconstructor


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(int(argv[0]) if argv else 2)
    rng = np.random.default_rng(0)
    vol = gaussian_filter(rng.random((256, 256, 24)).astype(np.float32), 3)
    rec = Reconstructor.from_pretrained("synth-n2n")
    rec.simulate(vol[..., :8], 0.1, seed=1)  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        out = rec.simulate(vol, 0.1, seed=1)
        times.append(time.perf_counter() - t0)
    print(mri_n2n.__file__, "median", round(statistics.median(times), 3), [round(t, 3) for t in times],
          "psnr", out.metrics.get("psnr"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
