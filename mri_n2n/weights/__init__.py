"""Shipped checkpoints (package data): ``registry.json`` and the ``.pt`` files it names; load
them by name with :meth:`mri_n2n.Reconstructor.from_pretrained` or ``--checkpoint NAME``."""
