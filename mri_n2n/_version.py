"""The package version (one place, read by ``mri_n2n.__version__`` and ``mri-n2n --version``)."""

__version__ = "0.1.0"
