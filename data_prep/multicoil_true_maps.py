"""Diagnostic: ``bench generalization --study multicoil-lines`` with the true (normalised) coil maps
given to both the network and TV-SENSE instead of the maps estimated from the data, to separate
the cost of map estimation from the network's (docs/results.md, "Multi-coil data on whole lines").

    python data_prep/multicoil_true_maps.py [--json out.json]
"""

import argparse
import json

import torch

import mri_n2n.bench.generalization as G
import mri_n2n.reconstruction.multicoil as rm
from mri_n2n.coils import normalize_maps
from mri_n2n.seeding import seeded_generator, stable_ident


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    truth: dict[str, torch.Tensor] = {}
    study_volume = G.multicoil_lines_volume

    def volume(arr, fraction, seed):  # the study's data, remembering the array's true maps
        y, masks, ref, law = study_volume(arr, fraction, seed)
        z, _, _ = G.complex_lines_volume(arr, fraction, seed, G.MULTICOIL_CENTER_LINES)
        support = z.abs().amax(0) > 0.1 * float(z.abs().max())
        g = seeded_generator(stable_ident("generalization-coils", seed))
        array = G.random_coil_array(tuple(z.shape[-2:]), G.MULTICOIL_COILS, g, support=support)
        truth["maps"] = normalize_maps(array.maps).to(torch.complex64)
        return y, masks, ref, law

    def true_maps(y, *args, **kwargs):
        return truth["maps"].expand(y.shape[0], -1, -1, -1).clone()

    G.multicoil_lines_volume = volume
    rm.inference_maps = true_maps  # what reconstruct estimates for the network
    G.inference_maps = true_maps  # what the bench estimates for TV-SENSE
    res = G.bench_generalization(
        {"N2N-multicoil": "synth-multicoil-n2n"}, fraction=0.25, study="multicoil-lines"
    )
    print(G.generalization_markdown(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=float)


if __name__ == "__main__":
    main()
