"""``python -m mri_n2n.denoise``: the same command as ``mri-n2n denoise`` (see
:mod:`mri_n2n.cli.denoise`); the library is :mod:`mri_n2n.images.denoise`."""

import sys

from .cli.denoise import main

if __name__ == "__main__":
    sys.exit(main())
