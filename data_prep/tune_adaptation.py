"""Choose the settings of scan-specific adaptation (``--adapt``) on a tuning set that shares no
volume with the generalisation table (``mri_n2n.bench.generalization``).

Tuning volumes (all install offline): nibabel's ``example_nifti2.nii.gz`` (an EPI, 32 x 20 x 12,
first frame), pydicom's ``examples_overlay.dcm`` (an MR image, 300 x 484) and scikit-image's
Shepp-Logan ``phantom.png`` (400 x 400). Each is studied retrospectively at 10 % like the table
(seed 0) with the shipped ``mni152-n2n`` model, adapted with each setting of the grid; the
printed line per setting is the fastMRI volume PSNR of each volume, their mean and the mean gain
over the trained weights. The project's defaults (``mri_n2n.reconstruction.adapt``) are the best
mean of this grid.

    python data_prep/tune_adaptation.py            # about 20 minutes on 2 CPU cores
"""

from __future__ import annotations

import os
import time

import nibabel
import numpy as np
import pydicom
import pydicom.data
import skimage.data
import skimage.io

from mri_n2n.reconstruction import Reconstructor

GRID = [(shift, steps) for shift in (None, 0) for steps in (50, 100, 200)]


def tuning_volumes() -> dict[str, np.ndarray]:
    """The three tuning volumes as float32 ``(rows, cols, slices)`` arrays."""
    nib = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data")
    phantom = os.path.join(os.path.dirname(skimage.data.__file__), "phantom.png")
    epi = nibabel.load(os.path.join(nib, "example_nifti2.nii.gz"))
    return {
        "nifti2-epi": np.asarray(epi.dataobj[..., 0], np.float32),
        "overlay-mr": pydicom.dcmread(pydicom.data.get_testdata_file("examples_overlay.dcm"))
        .pixel_array.astype(np.float32)[..., None],
        "phantom": skimage.io.imread(phantom, as_gray=True).astype(np.float32)[..., None],
    }


def main() -> None:
    vols = tuning_volumes()
    base = Reconstructor.from_pretrained("mni152-n2n", device="cpu")
    ref = {k: base.simulate(v, 0.1, seed=0, axis=2).metrics["psnr"] for k, v in vols.items()}
    print("trained weights: " + " ".join(f"{k} {p:.2f}" for k, p in ref.items()), flush=True)
    for shift, steps in GRID:
        rec = Reconstructor.from_pretrained("mni152-n2n", device="cpu", adapt=steps)
        rec.adapt_max_shift = shift
        t0 = time.perf_counter()
        ps = [rec.simulate(v, 0.1, seed=0, axis=2).metrics["psnr"] for v in vols.values()]
        gain = np.mean(ps) - np.mean(list(ref.values()))
        print(
            f"shift={'quarter' if shift is None else shift} steps={steps}: "
            + " ".join(f"{p:.2f}" for p in ps)
            + f" mean {np.mean(ps):.2f} gain {gain:+.2f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
