"""``python -m mri_n2n``: the same program as ``mri-n2n``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
