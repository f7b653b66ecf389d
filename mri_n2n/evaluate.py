"""``python -m mri_n2n.evaluate``: the same command as ``mri-n2n evaluate`` (see
:mod:`mri_n2n.cli.evaluate`); the library is :mod:`mri_n2n.evaluation`."""

import sys

from .cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
