"""The checkpoint-bound reconstruction API: :class:`Reconstructor`."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..checkpoint import (
    DEFAULT_NAME,
    CheckpointError,
    checkpoint_acquisition,
    default_pretrained,
    load_checkpoint,
    model_from_checkpoint,
    pretrained,
    resolve_checkpoint,
    tuned_adaptation,
)
from ..config import Config
from ..corruptions import MRIUndersampling
from ..data.measured import (
    CenteringError,
    check_centred,
    crop_readout,
    file_mask_law,
    law_mismatch,
    unidentified_note,
)
from ..devices import resolve_device
from ..io.kspace import KSpaceInput, as_kspace, expand_mask
from ..io.multicoil import MultiCoilKSpace
from ..io.noncartesian import NonCartesianKSpace
from ..losses import adaptation_weighting
from ..masks import MaskFamily, SampleLaw, family_for, family_from_description
from ..models.ensemble import SelfEnsemble
from ..physics import Acquisition, acquisition_kind
from .adapt import (
    ADAPT_BATCH_SIZE,
    ADAPT_CHECK_EVERY,
    ADAPT_LR,
    ADAPT_MAX_SHIFT,
    ADAPT_PATIENCE,
    ADAPT_PIXELS,
    ADAPT_VALIDATION,
    AdaptReport,
)
from .adapt import adapt as adapt_to_scan
from .engine import (
    AdaptFn,
    Reconstruction,
    ReconstructionError,
    check_batch,
    kspace_normalize,
)
from .inputs import reconstruct_kspace, reconstruct_volume, simulate_kspace
from .multicoil import reconstruct_multicoil
from .noncartesian import NONCARTESIAN_KIND, reconstruct_noncartesian

__all__ = ["Reconstructor"]


def _mask_family(
    config: Config, shape: tuple[int, int], fraction: float | None = None, *, complex_data: bool | None = None
) -> MaskFamily:
    """The mask family of a run's config for k-space of ``shape``, at mean density ``fraction``
    when given (line families: acceleration ``1 / fraction``), Hermitian draws for real data
    (``complex_data``, default the config's): the family
    :meth:`~mri_n2n.corruptions.MRIUndersampling.from_config` draws from, without the rest of a
    training corruption.

    Raises:
        ValueError: a ``fraction`` outside ``(0, 1]`` or a family that cannot be built.
    """
    real = not (bool(config.complex) if complex_data is None else complex_data)
    return family_for(config, shape, fraction=fraction, hermitian=real)


#: Adaptation settings a shipped model's registry entry may set (its ``"adapt"`` mapping, chosen on
#: the tuning sources for that model; ``data_prep/tune_adaptation.py``), as ``adapt_<key>``.
ADAPT_SETTINGS = ("lr", "batch_size", "max_shift", "validation", "pixels")


class Reconstructor:
    """A trained MRI checkpoint ready for reconstruction (the API behind the CLI).

    Example::

        rec = Reconstructor.from_checkpoint("runs/mni152/checkpoints/best.pt")
        out = rec.kspace(kspace, mask)                      # k-space -> magnitude volume
        study = rec.simulate(volume.array, fraction=0.1)    # retrospective, with metrics

    Args:
        model: the network (moved to ``device``, eval mode).
        config: the run's :class:`~mri_n2n.config.Config` (density, fraction, edge, normalize,
            axis, ...), or its dict as stored in a checkpoint.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a :class:`torch.device`.
        amp: mixed precision in the device's dtype (:func:`~mri_n2n.devices.amp_dtype`);
            default off: float32, as evaluate runs.
        batch_size: slices per network call.
        ensemble: run the network as a geometric self-ensemble
            (:class:`~mri_n2n.models.ensemble.SelfEnsemble`: the mean over flips, and transposes
            where the masks allow them; 4 to 8 network passes per slice, measurements exact).
        adapt: scan-specific self-supervised adaptation before each scan (:meth:`simulate`,
            :meth:`kspace`, :meth:`simulate_kspace`, :meth:`multicoil` and the file methods built
            on them): this many fine-tuning steps on the scan's own measurements
            (:func:`~mri_n2n.reconstruction.adapt.adapt`, for every kind); 0 (default)
            uses the weights as trained.
        acquisition: what the model was trained for (a checkpoint's ``acquisition`` block,
            :func:`~mri_n2n.checkpoint.checkpoint_acquisition`: kind, complex, coils, channels,
            law); default: derived from ``config`` and the model's spec.

    Attributes:
        acquisition: the model's acquisition record (read, never guessed from the weights).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: Config | dict,
        *,
        device: str | torch.device = "auto",
        amp: bool | None = None,
        batch_size: int = 8,
        ensemble: bool = False,
        adapt: int = 0,
        acquisition: dict | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.ensemble = bool(ensemble)
        if int(adapt) < 0:
            raise ValueError(f"adaptation steps must be >= 0, got {adapt}")
        self.adapt_steps = int(adapt)
        #: circular shifts of the adaptation (``None``: a quarter of the smaller side, as trained)
        self.adapt_max_shift: int | None = ADAPT_MAX_SHIFT
        #: the adaptation's learning rate and self-validated early stopping (share of the
        #: measurements held out, steps between checks, checks without progress before stopping)
        self.adapt_lr: float = ADAPT_LR
        self.adapt_validation: float = ADAPT_VALIDATION
        self.adapt_check_every: int = ADAPT_CHECK_EVERY
        self.adapt_patience: int = ADAPT_PATIENCE
        #: slices per adaptation step, and image pixels per step (larger slices learn from exact
        #: readout windows; ``None``: whole slices)
        self.adapt_batch_size: int = ADAPT_BATCH_SIZE
        self.adapt_pixels: int | None = ADAPT_PIXELS
        #: what the last adaptation did (steps, kept step, seconds, validation losses)
        self.last_adaptation: AdaptReport | None = None
        if self.ensemble and not isinstance(model, SelfEnsemble):
            model = SelfEnsemble(model)
        self.model = model.to(self.device).eval()
        if not isinstance(config, Config):
            config = Config.from_dict(config, where="checkpoint config")
        self.config = config
        #: the adaptation loss's weighting: the one the model trained with (a ``kspace_density``
        #: model adapts with the density-compensated weights, every other with ``1 / p``)
        self.adapt_weighting: str = adaptation_weighting(config.loss)
        if acquisition is None:  # a model built here: its config and spec say what it is
            inner = model.module if isinstance(model, SelfEnsemble) else model
            spec = getattr(inner, "spec", None)
            acquisition = checkpoint_acquisition(
                {"config": config.to_dict(), "model_spec": spec if isinstance(spec, dict) else {}}
            )
        self.acquisition: dict = dict(acquisition)
        self.amp = amp
        self.batch_size = check_batch(batch_size)
        self.checkpoint: str | None = None
        #: the law of the undersampled files a checkpoint trained on (``None``: the config's family)
        self.trained_law: MaskFamily | None = None
        #: multi-coil files' output convention when :meth:`multicoil` is given none: ``"rss"``
        #: (fastMRI's) or ``"sense"`` (:func:`~mri_n2n.reconstruction.multicoil.multicoil_output`)
        self.multicoil_output = "rss"
        #: how :meth:`multicoil` and :meth:`noncartesian` estimate coil maps (``{"method": ...,
        #: **keywords}`` of :func:`~mri_n2n.coils.estimate_maps`); ``None``: the library's choice
        #: for each (:data:`~mri_n2n.reconstruction.multicoil.MAPS`,
        #: :data:`~mri_n2n.reconstruction.noncartesian.NONCARTESIAN_MAPS`)
        self.maps: dict | None = None
        self._keep_probs: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def from_pretrained(
        cls,
        name: str | None = None,
        *,
        device: str | torch.device = "auto",
        amp: bool | None = None,
        batch_size: int = 8,
        ensemble: bool = False,
        adapt: int = 0,
        data: str = "magnitude",
    ) -> Reconstructor:
        """A shipped checkpoint by name (:func:`mri_n2n.checkpoint.pretrained` lists them);
        ``None`` or ``"default"``: the shipped model made for ``data`` (``"magnitude"`` images,
        single-coil ``"complex"`` k-space or ``"multicoil"`` k-space,
        :func:`~mri_n2n.checkpoint.default_pretrained`).

        Raises:
            CheckpointError: no shipped checkpoint of that name.
            ValueError: ``data`` is not one of those.
        """
        if name is None or name == DEFAULT_NAME:
            name = default_pretrained(data)
        if name not in pretrained():
            names = ", ".join(pretrained()) or "none"
            raise CheckpointError(f"{name}: no shipped checkpoint of that name (have: {names})")
        return cls.from_checkpoint(
            name, device=device, amp=amp, batch_size=batch_size, ensemble=ensemble, adapt=adapt
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        amp: bool | None = None,
        batch_size: int = 8,
        ensemble: bool = False,
        adapt: int = 0,
    ) -> Reconstructor:
        """Load an MRI checkpoint (``weights_only=True``).

        Raises:
            CheckpointError: not a checkpoint, a pickle that would run code, another task's
                checkpoint, or an unusable model/config.
            ValueError: a bad device.
        """
        dev = resolve_device(device)
        ckpt = load_checkpoint(path, map_location="cpu", task="mri")
        if not isinstance(ckpt.get("config"), dict):
            raise CheckpointError(f"{path}: checkpoint has no run configuration")
        try:
            acquisition = checkpoint_acquisition(ckpt)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        try:
            kind = acquisition_kind(acquisition["kind"])
        except ValueError as e:
            msg = f"trained for an acquisition kind not registered here ({e})"
            raise CheckpointError(f"{path}: {msg}") from None
        try:
            config = Config.from_dict(ckpt["config"], where="config")
            model = model_from_checkpoint(ckpt, device=dev)
            kind.law(config, (32, 32), hermitian=not acquisition["complex"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            msg = " ".join(str(e).split())[:200]
            raise CheckpointError(f"{path}: cannot build the model or its sampling law ({msg})") from None
        rec = cls(
            model, config, device=dev, amp=amp, batch_size=batch_size, ensemble=ensemble, adapt=adapt,
            acquisition=acquisition,
        )  # fmt: skip
        rec.checkpoint = str(resolve_checkpoint(path))
        for key, value in tuned_adaptation(path).items():  # the settings tuned for a shipped model
            if key in ADAPT_SETTINGS:
                setattr(rec, f"adapt_{key}", value)
        law = acquisition["measured_law"]
        if law:  # trained on undersampled files: their law, not the config's family
            try:
                rec.trained_law = family_from_description(law)
            except ValueError as e:
                raise CheckpointError(f"{path}: unreadable training mask law ({e})") from None
        return rec

    @property
    def complex_model(self) -> bool:
        """True for models of complex images (two channels: real, imaginary), as the checkpoint
        records (:attr:`acquisition`)."""
        return bool(self.acquisition["complex"])

    @property
    def channels(self) -> int:
        """The model's input channels (1 or 2), as the checkpoint records."""
        return int(self.acquisition["channels"])

    @property
    def kind(self) -> type[Acquisition]:
        """The acquisition kind the model was trained for (:func:`~mri_n2n.physics.acquisition_kind`)."""
        return acquisition_kind(self.acquisition["kind"])

    def law(self, shape: tuple[int, int], fraction: float | None = None) -> SampleLaw:
        """The law of the checkpoint's kind and settings for images of ``shape``, at mean density
        ``fraction`` when given (Hermitian draws for real images): what a retrospective study
        draws its sampled sets from."""
        return self.kind.law(self.config, shape, fraction=fraction, hermitian=not self.complex_model)

    def _cartesian(self, where: str) -> None:
        """Refuse k-space files (Cartesian grids) for a model trained for another kind."""
        if self.acquisition["kind"] != "cartesian":
            raise ReconstructionError(
                f"{where}: k-space files are Cartesian; this checkpoint was trained for "
                f"'{self.acquisition['kind']}' acquisitions (reconstruct image volumes with --simulate)"
            )

    @property
    def normalize(self) -> str:
        """The checkpoint's per-volume normalisation."""
        return self.config.normalize

    @property
    def axis(self) -> int:
        """The checkpoint's slicing axis."""
        return self.config.axis

    def keep_prob(self, shape: tuple[int, int]) -> torch.Tensor:
        """The keep probability (the ``1 / p`` compensation) of the checkpoint's own mask family
        for k-space of ``shape``, of the masks the network works with (real data: their
        Hermitian completion); what its training used; measured k-space uses the file's law."""
        key = (int(shape[0]), int(shape[1]))
        if key not in self._keep_probs:
            fam = self.family(key)
            p = fam.keep_probability() if self.config.complex else fam.real_keep_probability()
            self._keep_probs[key] = p.float()
        return self._keep_probs[key]

    def family(self, shape: tuple[int, int]) -> MaskFamily:
        """The checkpoint's mask family for k-space of ``shape``."""
        return _mask_family(self.config, shape)

    def corruption(self, shape: tuple[int, int], fraction: float | None = None) -> MRIUndersampling:
        """The checkpoint's corruption for ``shape``, at mean density ``fraction`` when given."""
        return MRIUndersampling.from_config(self.config, shape, fraction=fraction)

    def kspace(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None = None,
        *,
        law: MaskFamily | str | dict | None = None,
        reference: np.ndarray | None = None,
        data_range: float | None = None,
        output_shape: tuple[int, int] | None = None,
        keep_complex: bool = False,
        where: str = "kspace",
    ) -> Reconstruction:
        """Reconstruct measured undersampled k-space (see :func:`reconstruct_kspace`).

        The ``1 / p`` compensation uses the law the mask was drawn from: ``law`` when given (a
        :class:`~mri_n2n.masks.MaskFamily` or its description), else an estimate from the mask
        (:func:`~mri_n2n.data.measured.file_mask_law`). Non-centred k-space is refused;
        a law unlike the checkpoint's training masks adds a warning to the result.

        Raises:
            ReconstructionError: non-centred k-space, or a law that does not fit (names ``where``).
        """
        self._cartesian(where)
        k = as_kspace(kspace, where)
        try:
            m = None if mask is None else expand_mask(mask, k.shape, where)
            check_centred(k, m, where=where)
            if law is None:
                fam, source = file_mask_law(k, m, None, where=where)
            else:
                fam = law if isinstance(law, MaskFamily) else family_from_description(law)
                source = "given"
                if fam.shape != tuple(k.shape[1:]):
                    raise ValueError(
                        f"{where}: the mask law is for {fam.shape}, the k-space is {k.shape[1:]}"
                    )
        except (CenteringError, ValueError) as e:
            raise ReconstructionError(str(e)) from None
        notes = [note] if (note := unidentified_note(source)) else []
        if fam is not None:
            note = law_mismatch(self.trained_law or self.family(k.shape[1:]), fam)
            if note:
                notes.append(note)
        result = reconstruct_kspace(
            self.model,
            k,
            mask,
            None if fam is None else fam.keep_probability(),
            real_keep_prob=None if fam is None else fam.real_keep_probability(),
            normalize=kspace_normalize(self.normalize),
            batch_size=self.batch_size,
            amp=self.amp,
            keep_complex=keep_complex,
            reference=reference,
            data_range=data_range,
            output_shape=output_shape,
            adapt=self._adapt_hook(fam, where) if self.adapt_steps else None,
            channels=self.channels,
        )
        if fam is None:
            result.mask_law = {"source": source}
        elif fam.name in ("bernoulli", "lines"):  # an estimate: its summary, not every probability
            result.mask_law = {"source": source, "family": fam.name, "fraction": round(fam.fraction, 6)}
            result.mask_law["hermitian"] = fam.hermitian
        else:
            result.mask_law = {"source": source, **fam.describe()}
        result.warnings = notes
        return result

    def kspace_input(self, kin: KSpaceInput, *, keep_complex: bool = False) -> Reconstruction:
        """Reconstruct a k-space file as :func:`~mri_n2n.io.kspace.read_kspace_input` read it.

        The file's recorded mask law (or an estimate from its mask) drives the compensation; a
        file with a smaller reconstruction matrix (fastMRI: 640 x 368 k-space, 320 x 320 images)
        has its readout oversampling removed in image space first (exact for a 1-D mask) and its
        outputs cropped to that matrix; a reference (``reconstruction_esc``) gives fastMRI volume
        metrics with the file's ``max`` as data range.
        """
        k, mask, law = kin.kspace, kin.recorded_mask, kin.mask_law
        where = kin.path
        self._cartesian(where)
        try:
            fam, source = file_mask_law(k, mask, law, where=where)
        except ValueError as e:
            raise ReconstructionError(str(e)) from None
        rows = kin.recon_shape[0] if kin.recon_shape else k.shape[1]
        columns = mask is None or bool((np.asarray(mask) == np.asarray(mask)[:, :1, :]).all())
        if rows < k.shape[1] and columns:
            try:
                check_centred(k, mask, where=where)
            except CenteringError as e:
                raise ReconstructionError(str(e)) from None
            k, mask = crop_readout(k, mask, rows)
            if fam is not None:
                desc = fam.describe()
                desc["shape"] = [rows, k.shape[2]]
                fam = family_from_description(desc)
        out_shape = kin.recon_shape if kin.recon_shape else None
        result = self.kspace(
            k,
            mask,
            law=fam,
            reference=kin.reference,
            data_range=kin.max_value,
            output_shape=out_shape,
            keep_complex=keep_complex,
            where=where,
        )
        result.mask_law["source"] = source
        if note := unidentified_note(source):
            result.warnings = [note, *result.warnings]
        return result

    def simulate(
        self,
        array: np.ndarray,
        fraction: float,
        *,
        seed: int = 0,
        axis: int | None = None,
        keep_complex: bool = False,
    ) -> Reconstruction:
        """Retrospective study of an image volume (see :func:`reconstruct_volume`); with
        :attr:`adapt_steps` the network is first adapted to the study's own measurements."""
        ax = self.axis if axis is None else axis
        arr = np.asarray(array)
        if arr.ndim != 3:
            raise ReconstructionError(f"expected a 3-D image volume, got shape {arr.shape}")
        shape = tuple(s for a, s in enumerate(arr.shape) if a != ax)
        law = self.law(shape, fraction)  # type: ignore[arg-type]
        return reconstruct_volume(
            self.model,
            law,
            arr,
            adapt=self._adapt_hook(law, "volume", seed) if self.adapt_steps else None,
            axis=ax,
            seed=seed,
            normalize=self.normalize,
            batch_size=self.batch_size,
            amp=self.amp,
            keep_complex=keep_complex,
            kind=self.kind,
            channels=self.channels,
        )

    def adapted(self, law: SampleLaw, acq: Acquisition, *, seed: int = 0) -> torch.nn.Module:
        """The network adapted to one scan's measurements by :attr:`adapt_steps` self-supervised
        steps (:func:`~mri_n2n.reconstruction.adapt.adapt`, every kind); a copy (the
        loaded weights do not change). ``acq`` is the scan's acquisition normalised as in
        training (single coil: images ``(N, 1, H, W)``; coil data with their maps), ``law`` the
        law its sampled sets were drawn from. Raises :class:`ReconstructionError` when it fails."""
        try:
            net, report = adapt_to_scan(
                self.model,
                acq,
                law,
                real=not self.complex_model,
                steps=self.adapt_steps,
                lr=self.adapt_lr,
                batch_size=self.adapt_batch_size,
                seed=seed,
                validation=self.adapt_validation,
                check_every=self.adapt_check_every,
                patience=self.adapt_patience,
                max_shift=self.adapt_max_shift,
                pixels=self.adapt_pixels,
                weighting=self.adapt_weighting,
            )
        except ValueError as e:
            raise ReconstructionError(str(e)) from None
        self.last_adaptation = report
        return net

    def _adapt_hook(self, law: SampleLaw | None, where: str, seed: int = 0) -> AdaptFn:
        """The engine's adaptation hook for a scan from ``law`` (``where`` names it)."""

        def hook(acq: Acquisition) -> torch.nn.Module:
            if law is None:
                raise ReconstructionError(f"{where}: adaptation needs the law of the mask (none given)")
            if not acq.multicoil and not self.complex_model:
                if not acq.real_data():
                    raise ReconstructionError(
                        f"{where}: a one-channel (real-image) model adapts only to the measurements of "
                        "real images; these are complex (adapt a --complex checkpoint, or reconstruct "
                        "without --adapt)"
                    )
            return self.adapted(law, acq, seed=seed)

        return hook

    def simulate_kspace(
        self,
        kspace: np.ndarray,
        fraction: float,
        *,
        seed: int = 0,
        reference: np.ndarray | None = None,
        data_range: float | None = None,
        output_shape: tuple[int, int] | None = None,
    ) -> Reconstruction:
        """Retrospective study of fully sampled k-space (see :func:`simulate_kspace`)."""
        self._cartesian("kspace")
        k = as_kspace(kspace, "kspace")
        law = self.law(k.shape[1:], fraction)
        return simulate_kspace(
            self.model,
            law,
            k,
            adapt=self._adapt_hook(law, "kspace", seed) if self.adapt_steps else None,
            channels=self.channels,
            seed=seed,
            normalize=self.normalize,
            batch_size=self.batch_size,
            amp=self.amp,
            reference=reference,
            data_range=data_range,
            output_shape=output_shape,
        )

    def noncartesian(self, scan: NonCartesianKSpace) -> Reconstruction:
        """Reconstruct a trajectory file (:class:`~mri_n2n.io.noncartesian.NonCartesianKSpace`,
        ISMRMRD with trajectories) at its encoded matrix with a checkpoint trained on the
        non-Cartesian kind (``--trajectory``; :mod:`mri_n2n.reconstruction.noncartesian`).

        Raises:
            ReconstructionError: a checkpoint of another kind (one line: what to train), or data
                the kind refuses.
        """
        if self.kind.kind != NONCARTESIAN_KIND:
            s, c, r, n = scan.shape
            raise ReconstructionError(
                f"{scan.path}: non-Cartesian k-space ({scan.trajectory_type} trajectory, {r} readouts x {n} "
                f"samples, {c} coil{'s' if c != 1 else ''}) needs a checkpoint trained on the non-Cartesian "
                f"kind (python -m mri_n2n.train --trajectory golden-radial ...); this one was trained on "
                f"{self.kind.kind} data"
            )
        return reconstruct_noncartesian(
            self.model, scan, batch_size=min(self.batch_size, 4), amp=bool(self.amp),
            adapt=self.adapted if self.adapt_steps else None, maps_settings=self.maps,
        )

    def multicoil(
        self,
        mc: MultiCoilKSpace,
        *,
        simulate: float | None = None,
        seed: int = 0,
        virtual_coils: int | None = None,
        output: str | None = None,
        cg_iters: int | None = None,
        maps: dict | None = None,
    ) -> Reconstruction:
        """Reconstruct a multi-coil file as :func:`~mri_n2n.io.raw.read_raw` read it (fastMRI
        multi-coil, ISMRMRD, twix; :func:`~mri_n2n.reconstruction.multicoil.reconstruct_multicoil`),
        or with ``simulate`` a retrospective study of a fully sampled one with the checkpoint's
        mask family at mean density ``simulate``, masks seeded per slice by ``seed``;
        ``virtual_coils`` compresses the coils first (SVD, off by default). ``output``: the
        output convention, ``"rss"`` (fastMRI's: the root-sum-of-squares of the data-consistent
        coil images, exactly the data's on a fully sampled file) or ``"sense"`` (the network's
        SENSE image on the maps' support), both in the input's units; ``None``:
        :attr:`multicoil_output` (default ``"rss"``). ``cg_iters``: CG iterations of a ``--dc
        prox`` network's data consistency for this call (fewer: faster, a stated quality cost;
        ``None``: the trained count). ``maps``: how the coil maps are estimated for this call
        (``{"method": "walsh"}`` is the fast estimator); ``None``: :attr:`maps`."""
        if isinstance(mc, NonCartesianKSpace):  # a trajectory file: the non-Cartesian kind's
            return self.noncartesian(mc)
        self._cartesian(mc.path)
        s, c, h, w = mc.kspace.shape
        rows = min(mc.recon_shape[0], h) if mc.recon_shape else h
        family = _mask_family(self.config, (rows, w), simulate, complex_data=True)  # coil data: complex
        result = reconstruct_multicoil(
            self.model,
            None,  # the acquisition's per-coil projection
            mc,
            family=family,
            simulate=simulate,
            seed=seed,
            batch_size=self.batch_size,
            virtual_coils=virtual_coils,
            output=self.multicoil_output if output is None else output,
            adapt=self.adapted if self.adapt_steps else None,
            cg_iters=cg_iters,
            channels=self.channels,
            maps_settings=self.maps if maps is None else maps,
        )
        if note := unidentified_note(str(result.mask_law.get("source", ""))):
            result.warnings = [note, *result.warnings]
        return result

    def simulate_kspace_input(self, kin: KSpaceInput, fraction: float, *, seed: int = 0) -> Reconstruction:
        """Retrospective study of a fully sampled k-space file: readout oversampling removed and
        outputs cropped to the file's reconstruction matrix, scored against its reference and
        ``max`` when present (fastMRI's conventions), as :meth:`kspace_input` does."""
        k = kin.kspace
        if kin.recon_shape and kin.recon_shape[0] < k.shape[1]:
            try:
                check_centred(k, None, where=kin.path)
            except CenteringError as e:
                raise ReconstructionError(str(e)) from None
            k, _ = crop_readout(k, None, kin.recon_shape[0])
        return self.simulate_kspace(
            k,
            fraction,
            seed=seed,
            reference=kin.reference,
            data_range=kin.max_value,
            output_shape=kin.recon_shape,
        )


