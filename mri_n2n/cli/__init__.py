"""The ``mri-n2n`` command: one program whose subcommands each register their own parser.

``mri-n2n train|reconstruct|denoise|evaluate|bench|prepare-ixi ...``; the ``python -m
mri_n2n.train`` (``reconstruct``, ``denoise``, ``evaluate``, ``bench``) forms run the same code.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

from .._version import __version__
from . import bench, denoise, evaluate, prepare_ixi, reconstruct, train
from .common import OneLineParser, parse_and_run

__all__ = ["build_parser", "main"]

_COMMANDS = (train, reconstruct, denoise, evaluate, bench, prepare_ixi)


def build_parser() -> OneLineParser:
    """The ``mri-n2n`` parser with every subcommand registered."""
    p = OneLineParser(
        prog="mri-n2n",
        description="Noise2Noise MRI reconstruction and image restoration from corrupted data alone.",
    )
    p.add_argument("--version", action="version", version=f"mri-n2n {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.build_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mri-n2n``; returns the exit status of the subcommand (2 for bad arguments)."""
    with contextlib.suppress(BrokenPipeError):
        return parse_and_run(build_parser(), argv)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
