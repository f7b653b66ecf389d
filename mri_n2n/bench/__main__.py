"""``python -m mri_n2n.bench``: the same command as ``mri-n2n bench`` (see :mod:`mri_n2n.cli.bench`)."""

import sys

from ..cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
