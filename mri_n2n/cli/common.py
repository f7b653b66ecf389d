"""What every command shares: an argument parser whose errors are one line, and the way a
failure is reported (one ``error:`` line on stderr and an exit status, never a traceback)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..errors import one_line

__all__ = [
    "OneLineParser", "fail", "one_line", "register", "parse_and_run", "optional_counts", "OPTIONAL_COUNTS",
]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``error: ...``) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def fail(message: str | BaseException, code: int = 1) -> int:
    """Print ``error: <message>`` on one line to stderr and return ``code``."""
    text = one_line(message) if isinstance(message, BaseException) else " ".join(str(message).split())
    print(f"error: {text}", file=sys.stderr)
    return code


def register(subparsers: argparse._SubParsersAction, name: str, help: str, description: str) -> OneLineParser:  # noqa: A002
    """Add the subcommand ``name`` to ``mri-n2n`` (or make the parser of ``python -m`` when
    ``subparsers`` is ``None``)."""
    if subparsers is None:
        return OneLineParser(prog=f"python -m mri_n2n.{name.replace('-', '_')}", description=description)
    return subparsers.add_parser(name, help=help, description=description)


def parse_and_run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the subcommand's ``func``; returns the exit status (argparse's
    own ``--help`` gives 0 and a usage error 2, its one line already printed)."""
    argv = optional_counts(sys.argv[1:] if argv is None else list(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    func: Callable[[argparse.Namespace], int] = args.func
    return int(func(args))


#: Options whose value is optional and a count (``--adapt [STEPS]``): a following word that is not
#: an integer is an input file, not their value (:func:`optional_counts`).
OPTIONAL_COUNTS = ("--adapt",)


def optional_counts(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--adapt FILE`` read as the flag alone followed by the input ``FILE``: an
    optional count (:data:`OPTIONAL_COUNTS`) followed by a word that is not an integer gets its
    default written out (``--adapt=<default>``), so argparse does not take the file for it."""
    from ..reconstruction.adapt import ADAPT_STEPS

    out: list[str] = []
    args = list(argv)
    for i, a in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if a in OPTIONAL_COUNTS and nxt is not None and not nxt.startswith("-"):
            try:
                int(nxt)
            except ValueError:
                out.append(f"{a}={ADAPT_STEPS}")
                continue
        out.append(a)
    return out


def add_adapt_argument(p: argparse.ArgumentParser, what: str) -> None:
    """``--adapt [STEPS]``: scan-specific self-supervised adaptation (0, the default, is off;
    the flag alone gives :data:`~mri_n2n.reconstruction.adapt.ADAPT_STEPS`). ``what`` ends the
    help text (what it applies to)."""
    from ..reconstruction.adapt import ADAPT_STEPS

    p.add_argument(
        "--adapt",
        type=int,
        nargs="?",
        const=ADAPT_STEPS,
        default=0,
        metavar="STEPS",
        help=f"adapt the network to each scan's own measurements (self-supervised, no reference; "
        f"default {ADAPT_STEPS} steps, at the learning rate tuned for a shipped model; large scans learn "
        f"from readout windows or take fewer steps, so the cost grows no faster than the pixels); {what}",
    )
