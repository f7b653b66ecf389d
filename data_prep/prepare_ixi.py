#!/usr/bin/env python
"""Prepare the IXI T1 volumes for the MRI experiment: the same command as ``mri-n2n prepare-ixi``
(see ``mri-n2n prepare-ixi --help``)."""

import sys
from pathlib import Path

try:
    import mri_n2n  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mri_n2n.cli.prepare_ixi import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
