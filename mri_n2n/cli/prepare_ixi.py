"""``mri-n2n prepare-ixi``: prepare IXI T1 volumes as the paper does (the library is
:func:`mri_n2n.data.ixi.prepare_ixi`)."""

from __future__ import annotations

import argparse

from ..data.ixi import PAPER_MIN_PEAK, SPLITS, prepare_ixi
from ..data.slices import parse_slice_range
from .common import OneLineParser, fail, parse_and_run

__all__ = ["build_parser", "run", "main"]

DESCRIPTION = """\
Prepare IXI brain T1 volumes as the Noise2Noise paper does (Lehtinen et al. 2018, MRI
experiment) and write them as HDF5 for `mri-n2n train --dataset ixi --data-dir OUTPUT`.

Protocol (defaults = the paper): the 50 train and 10 validation subjects that the authors'
reference implementation lists (NVlabs/noise2noise dataset_tool_mri.py; IXI002..IXI063 train,
IXI064..IXI073 validate; pinned in the package), the rest unused; every listed subject must be
in INPUT. --split sorted instead sorts the subjects found by ID (file stem, e.g.
IXI002-Guys-0828): the first --train-subjects train and the next --valid-subjects validate
(with fewer subjects than train + valid, the sorted list is split proportionally, keeping at
least one validation subject: e.g. 6 subjects -> 5 train + 1 valid). Each volume is divided by
its own maximum; axial slices 25..124 (array[:, :, k], k in 25:125) are centre zero-padded (or
cropped) to 256x256; a slice is kept when its maximum exceeds 1/255 of the volume's maximum
(the reference's threshold; --min-peak 0 keeps every slice that is not all black).
"""

EPILOG = """\
getting the data (cannot be downloaded automatically; ~4.5 GB, 581 T1 volumes,
licence CC BY-SA 3.0, https://brain-development.org/ixi-dataset/):

  mkdir -p data/ixi
  wget -P data/ixi http://biomedic.doc.ic.ac.uk/brain-development/downloads/IXI/IXI-T1.tar
  # either use the tarball as is:
  mri-n2n prepare-ixi data/ixi/IXI-T1.tar data/ixi-prepared
  # or unpack it first (files IXI???-<site>-????-T1.nii.gz, site = Guys, HH or IOP):
  mkdir -p data/ixi/IXI-T1 && tar -xf data/ixi/IXI-T1.tar -C data/ixi/IXI-T1
  mri-n2n prepare-ixi data/ixi/IXI-T1 data/ixi-prepared

output (all files written atomically; manifest.json is written last and marks completion):
  OUTPUT/train.h5, OUTPUT/valid.h5
      slices       float32 (N, SIZE, SIZE), gzip-compressed, one chunk per slice
      subject      subject ID string per slice, e.g. "IXI002-Guys-0828"
      slice_index  index of the slice along the slicing axis
      ident        stable 62-bit integer per slice (seed of its fixed validation mask)
  OUTPUT/manifest.json
      options, split rule, subjects of each split with their slice counts, unused subjects

exit status: 0 success, 2 bad arguments or unusable input (a one-line error message)
"""


def build_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``prepare-ixi`` parser: standalone, or registered as ``mri-n2n prepare-ixi``."""
    kw = {
        "description": DESCRIPTION,
        "epilog": EPILOG,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    if subparsers is None:
        p = OneLineParser(prog="python -m mri_n2n.cli.prepare_ixi", **kw)
    else:
        p = subparsers.add_parser("prepare-ixi", help="prepare IXI T1 volumes as the paper does", **kw)
    p.add_argument(
        "input",
        help="IXI-T1.tar as distributed, or a folder of IXI???-<site>-????-T1.nii.gz files "
        "(searched recursively)",
    )
    p.add_argument(
        "output",
        help="output folder for train.h5, valid.h5 and manifest.json (created; existing files are replaced)",
    )
    p.add_argument(
        "--slices",
        default="25:125",
        metavar="START:STOP",
        help="half-open slice range along --axis (default: 25:125, i.e. slices 25..124 as in the paper)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=256,
        help="output side in pixels; slices are centre zero-padded or cropped (default: 256)",
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="paper",
        help="paper: the reference implementation's 50 + 10 subjects (all must be present); "
        "sorted: the first subjects by ID, counts from --train-subjects/--valid-subjects "
        "(default: paper)",
    )
    p.add_argument(
        "--train-subjects",
        type=int,
        default=None,
        metavar="N",
        help="with --split sorted: number of training subjects, taken first in sorted ID order "
        "(default: 50)",
    )
    p.add_argument(
        "--valid-subjects",
        type=int,
        default=None,
        metavar="N",
        help="with --split sorted: number of validation subjects, the next ones in sorted ID order "
        "(default: 10)",
    )
    p.add_argument(
        "--normalize",
        default="max",
        metavar="MODE",
        help="per-volume normalisation: max (divide by the volume maximum, the paper; default), "
        "percentile (99.5th percentile of non-zero voxels), pNN (NN-th percentile, e.g. p99), "
        "or none",
    )
    p.add_argument(
        "--axis",
        type=int,
        default=2,
        choices=(0, 1, 2),
        help="array axis to slice along (default: 2, axial for IXI T1)",
    )
    p.add_argument(
        "--min-peak",
        type=float,
        default=PAPER_MIN_PEAK,
        metavar="X",
        help="keep a slice only if its maximum, in units of the normalised volume (with --normalize "
        "max: a fraction of the volume's maximum), exceeds X (default: 1/255, the reference's "
        "threshold; 0 keeps every slice with a positive pixel)",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the preparation; returns the exit status (0 success, 2 bad arguments or input)."""
    try:
        slices = parse_slice_range(args.slices)
        manifest = prepare_ixi(
            args.input,
            args.output,
            slices=slices,
            size=args.size,
            split=args.split,
            train_subjects=args.train_subjects,
            valid_subjects=args.valid_subjects,
            normalize=args.normalize,
            axis=args.axis,
            min_peak=args.min_peak,
            progress=not args.no_progress,
        )
    except ValueError as exc:  # VolumeError and DataDirError are ValueErrors
        return fail(exc, 2)
    tr, va = manifest["train"], manifest["valid"]
    print(
        f"wrote {args.output}: train {tr['n_subjects']} subjects / {tr['n_slices']} slices, "
        f"valid {va['n_subjects']} subjects / {va['n_slices']} slices, "
        f"{len(manifest['unused_subjects'])} subjects unused"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``mri-n2n prepare-ixi`` as a function; returns the exit status."""
    return parse_and_run(build_parser(), argv)
