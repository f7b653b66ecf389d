"""``python -m mri_n2n.train``: the same command as ``mri-n2n train`` (see :mod:`mri_n2n.cli.train`)."""

import sys

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main())
