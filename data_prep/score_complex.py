"""Score complex single-coil checkpoints on the tuning sources only (how the shipped complex model
is chosen between runs).

The ``complex-lines`` study of ``bench generalization`` at 4x (the phase model's phase, fastMRI
equispaced lines with an 8 % centre), network part only, on :func:`tune_maps.cases`: the tuning
volumes (pixel-disjoint from every evaluation volume, checked first) at 33 x 41, 64² and 128²
(brains) and 256², 64² and 33 x 41 (photographs). Prints each case's fastMRI volume PSNR per
checkpoint and the means. ``--family`` scores another law on the same cases (a line family at
acceleration ``1 / fraction``, e.g. ``lines_random``; a 2-D one at density ``fraction``, e.g.
``gaussian --fraction 0.1``).

    python data_prep/score_complex.py CKPT [CKPT ...] [--fraction 0.25] [--family NAME] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch
from tune_maps import cases

from mri_n2n.bench.generalization import _as_slices, complex_lines_volume
from mri_n2n.evaluation import volume_metrics
from mri_n2n.fft import fft2c
from mri_n2n.physics import Acquisition
from mri_n2n.reconstruction import Reconstructor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="shipped names or checkpoint paths")
    ap.add_argument("--fraction", type=float, default=0.25, help="sampling fraction (0.25: 4x)")
    ap.add_argument("--family", default=None, help="a registered mask family (default: equispaced lines)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recs = {ck: Reconstructor.from_checkpoint(ck) for ck in args.checkpoints}
    scores: dict[str, list[float]] = {ck: [] for ck in recs}
    for name, vol in cases().items():
        z, masks, law = complex_lines_volume(vol, args.fraction, 0, family=args.family)
        n, h, w = z.shape
        acq = Acquisition(masks, keep_prob=law.keep_probability()).with_data(fft2c(z)[:, None])
        y = acq.y[:, 0].numpy()
        for ck, rec in recs.items():
            out = rec.kspace(y, masks.numpy(), law=law)
            scores[ck].append(volume_metrics(_as_slices(out.image, n, (h, w)), z.abs().numpy())["psnr"])
        print(name, " ".join(f"{s[-1]:.2f}" for s in scores.values()), flush=True)
    for ck, s in scores.items():
        print(f"{ck}: mean {sum(s) / len(s):.2f} dB")


if __name__ == "__main__":
    main()
