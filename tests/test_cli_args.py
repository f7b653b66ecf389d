"""Command-line arguments that argparse alone reads wrongly."""

from __future__ import annotations

from mri_n2n.cli import build_parser
from mri_n2n.cli.common import optional_counts
from mri_n2n.reconstruction.adapt import ADAPT_STEPS


def _parse(*argv: str):
    return build_parser().parse_args(optional_counts(list(argv)))


def test_adapt_before_an_input_file_is_the_flag_alone() -> None:
    args = _parse("reconstruct", "--checkpoint", "default", "--adapt", "scan.h5", "--out", "o")
    assert args.adapt == ADAPT_STEPS and args.inputs == ["scan.h5"]


def test_adapt_with_a_count_and_at_the_end_keep_their_meaning() -> None:
    args = _parse("reconstruct", "--checkpoint", "default", "--adapt", "7", "scan.h5", "--out", "o")
    assert args.adapt == 7 and args.inputs == ["scan.h5"]
    args = _parse("reconstruct", "--checkpoint", "default", "scan.h5", "--out", "o", "--adapt")
    assert args.adapt == ADAPT_STEPS
    args = _parse("evaluate", "--checkpoint", "c.pt", "--adapt", "--limit", "2", "--out", "o")
    assert args.adapt == ADAPT_STEPS
