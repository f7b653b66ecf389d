#!/usr/bin/env python
"""The shipped MNI152 model on measured k-space of its validation slices: PSNR with the masks'
law given and with the law estimated from the masks (``mri_n2n.mask_estimation.estimate_family``).

Each validation slice (``build_mni152_datasets(size=128)``) is acquired once, noise-free, with a
mask of the checkpoint's family seeded per slice as ``reconstruct --simulate`` seeds them
(``slice_seed(0, i)``); ``Reconstructor.kspace`` reconstructs the volume with ``law=`` the family,
then with no law (estimated). Prints JSON: the mean per-slice PSNR (peak 1, output clamped to
[0, 1], the validation's convention) both ways and the estimate's mean real keep probability.
"""

import json
import sys
import time
from pathlib import Path

try:
    import mri_n2n  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mri_n2n.corruptions import seeded_generator  # noqa: E402
from mri_n2n.data.mni152 import build_mni152_datasets  # noqa: E402
from mri_n2n.fft import fft2c  # noqa: E402
from mri_n2n.mask_estimation import estimate_family  # noqa: E402
from mri_n2n.metrics import psnr  # noqa: E402
from mri_n2n.reconstruction import Reconstructor  # noqa: E402
from mri_n2n.reconstruction.engine import slice_seed  # noqa: E402


def main() -> int:
    rec = Reconstructor.from_pretrained("mni152-n2n", device="cpu")
    size = rec.config.size
    _, valid = build_mni152_datasets(size=size)
    imgs = torch.stack([torch.as_tensor(valid[i][0]).float().reshape(size, size) for i in range(len(valid))])
    fam = rec.family((size, size))
    masks = torch.cat([fam.sample(1, generator=seeded_generator(slice_seed(0, i))) for i in range(len(imgs))])
    k = (fft2c(imgs.to(torch.complex64)) * masks).numpy()
    est = estimate_family(masks)
    out = {
        "slices": len(imgs),
        "sampled": float(masks.float().mean()),
        "true_mean_real_p": float(fam.real_keep_probability().mean()),
        "estimated_mean_real_p": float(est.real_keep_probability().mean()),
        "estimate_hermitian": est.hermitian,
        "estimate_unidentified": getattr(est, "unidentified", None),
    }
    for how, law in (("given", fam), ("estimated", None)):
        t = time.time()
        r = rec.kspace(k, masks.numpy(), law=law)
        x = torch.from_numpy(np.moveaxis(r.image, 2, 0)).float()
        per = psnr(x.clamp(0, 1)[:, None], imgs[:, None], data_range=1.0, reduction="none")
        out[how] = {
            "psnr": round(float(per.mean()), 2),
            "warnings": r.warnings,
            "seconds": round(time.time() - t, 1),
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
