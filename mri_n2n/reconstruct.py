"""``python -m mri_n2n.reconstruct``: the same command as ``mri-n2n reconstruct`` (see
:mod:`mri_n2n.cli.reconstruct`); the library is :mod:`mri_n2n.reconstruction`."""

import sys

from .cli.reconstruct import main

if __name__ == "__main__":
    sys.exit(main())
