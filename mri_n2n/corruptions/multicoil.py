"""Noise2Noise on multi-coil k-space: :class:`MultiCoilUndersampling`, the one MRI corruption
(:class:`~mri_n2n.corruptions.mri.MRIUndersampling`) of coil data.

A multi-coil batch is an :class:`~mri_n2n.physics.Acquisition` with coil maps ``S``
(normalised so that ``sum_c |S_c|^2 = 1``) and the coils' fully sampled k-space
(:class:`~mri_n2n.data.multicoil.MultiCoilSliceDataset`'s items, stacked by
:func:`mri_n2n.data.collate`). The model sees the coil-combined complex image (two channels):

- input: the SENSE-1 zero-filled image ``sum_c conj(S_c) F^-1(M y_c / p)`` of one mask;
- Noise2Noise target: the same under an independent mask (and, for the k-space loss, that
  mask's per-coil measurements, compared with ``F S_c f``); Noise2Clean: the combined clean
  image ``sum_c conj(S_c) F^-1 y_c``; SSDU / Noisier2Noise: each slice acquired once, split afresh
  at every step into the input and the held-out coils' samples (:mod:`mri_n2n.splits`);
- data consistency, after the network (:meth:`~MRIUndersampling.data_consistency`) and inside
  every cascade of the unrolled network (which gets the maps with the measurements): per-coil
  replacement of the measured entries, then the SENSE-1 combination (E2E-VarNet's choice).
  Every coil's k-space is exactly the measurements on the measured entries before the
  combination; with several coils the combined image is one gradient step
  ``x + A^H (y - A x)`` towards ``{z : A z = y}``, not its projection (it never increases the
  residual). It costs two FFTs per coil. Networks built with ``--dc prox`` instead end every
  cascade with MoDL's learned proximal CG-SENSE step (:mod:`mri_n2n.models.unrolled`); their
  output is final and no data consistency is applied to it: noisy multi-coil data overdetermine
  the image, and forcing them exactly keeps all their noise.

Masks come from the run's family (complex data: drawn as they are), shared by the coils; k-space
noise is added per coil; a random circular shift moves the coil images and the maps together.
"""

from .mri import MRIUndersampling, MultiCoilUndersampling

__all__ = ["MultiCoilUndersampling", "MRIUndersampling"]
