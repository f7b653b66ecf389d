"""Where every image the project trains, tunes or evaluates on comes from, and a check that no
training or tuning source shares pixels with an evaluation volume.

Each :class:`DataSource` names one volume (or image set) that installs offline, its role, its
licence and its lineage (the file it is read from and what that file was made from), and loads
it as a float32 ``(rows, cols, slices)`` array. :data:`SOURCES` is the registry;
:func:`sources` lists it by role.

Names alone cannot prove that two sets are disjoint: nibabel's ``example_nifti2.nii.gz`` is an
exact crop of its ``example4d.nii.gz`` with another file name. :func:`pixel_overlap` compares the
pixels themselves: it fingerprints every run of :data:`RUN` consecutive voxels along every axis
(z-scored, so an intensity rescaling keeps the fingerprint; reversed too, so flips do) and
reports the share of one volume's *distinctive* runs (runs that a parabola does not fit, that
take at least six different values and that span more than a few of the volume's quantisation
steps: texture and noise, not flat background, ramps, smooth curves, step edges or the integer
noise of a background, which any two images share) that also occur in the other. A crop,
flip, transpose or rescaled copy scores about 1; unrelated scans about 0.
:func:`check_disjoint` applies it to every pair of two groups of sources and raises
:class:`SourceOverlapError` above :data:`OVERLAP_LIMIT`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .synth import PHOTO_NAMES

__all__ = [
    "ROLES",
    "RUN",
    "OVERLAP_LIMIT",
    "DataSource",
    "SourceOverlapError",
    "SOURCES",
    "sources",
    "get_source",
    "pixel_overlap",
    "check_disjoint",
]

#: The roles a source plays. ``evaluation`` volumes are never trained or tuned on.
ROLES = ("training", "tuning", "evaluation")
#: Length of the voxel runs :func:`pixel_overlap` fingerprints.
RUN = 8
#: Share of distinctive runs above which two sources count as sharing pixels.
OVERLAP_LIMIT = 0.01
#: A run is distinctive when the residual of a parabola fit keeps at least this share of its
#: variance: noise and texture, not flat, linear or smoothly curved stretches.
_MIN_RESIDUAL = 0.1
#: A distinctive run also takes at least this many different values (a step edge takes two).
_MIN_DISTINCT = 6
#: z-scores are rounded to this step before hashing.
_QUANT = 1.0 / 32
#: A distinctive run's standard deviation is at least this many quantisation steps of its volume
#: (the smallest difference between two of its values; 1 for integer images): the background
#: noise of integer-valued scans spans a few steps and, z-scored, repeats the same few patterns
#: in any other large integer-valued volume (4.1 % of the abdomen's runs "occurred" in MNI152
#: through runs of about 2 steps at 1 % of its maximum; 0.04 % of its runs of 8 steps or more).
_MIN_STEPS = 4.0


@dataclass(frozen=True)
class DataSource:
    """One offline source of images.

    Attributes:
        name: short unique name (used in tables and checks).
        role: ``"training"``, ``"tuning"`` or ``"evaluation"`` (:data:`ROLES`).
        description: contrast, anatomy and matrix, for tables.
        licence: the licence it is distributed under.
        lineage: the file it is read from and what that file was made from.
        load: returns the images as float32 ``(rows, cols, slices)``.
    """

    name: str
    role: str
    description: str
    licence: str
    lineage: str
    load: Callable[[], np.ndarray]

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"source {self.name}: role must be one of {ROLES}, got {self.role!r}")


class SourceOverlapError(ValueError):
    """Two sources that must be disjoint share pixels."""


# -- loaders --------------------------------------------------------------------------------
def _nibabel_data(name: str) -> Path:
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data" / name


def _nifti(name: str, frame: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import nibabel

        img = nibabel.load(str(_nibabel_data(name)))
        arr = np.asarray(img.dataobj if frame is None else img.dataobj[..., frame], dtype=np.float32)
        return arr if arr.ndim == 3 else arr[..., None]

    return load


def _pydicom_file(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import pydicom
        import pydicom.data

        ds = pydicom.dcmread(pydicom.data.get_testdata_file(name))
        arr = ds.pixel_array.astype(np.float32)
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        arr = arr * slope + float(getattr(ds, "RescaleIntercept", 0) or 0)
        return arr[..., None] if arr.ndim == 2 else np.moveaxis(arr, 0, -1)

    return load


def _parrec(name: str, dynamic: int = 0) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import nibabel

        img = nibabel.load(str(_nibabel_data(name)))
        return np.asarray(img.dataobj[..., dynamic], dtype=np.float32)

    return load


def _mni152_t1() -> np.ndarray:
    from .mni152 import load_mni152_volume

    return load_mni152_volume()[0]


def _mni152_tissue() -> np.ndarray:
    """The grey- and white-matter probability maps side by side along the slice axis."""
    from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template

    gm = np.asarray(load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32), np.float32)
    wm = np.asarray(load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32), np.float32)
    return np.concatenate([gm, wm], axis=2)


def _skimage(names: Sequence[str], size: int = 512) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.color
        import skimage.data
        import skimage.transform

        out = []
        for n in names:
            im = np.asarray(getattr(skimage.data, n)(), dtype=np.float32)
            if im.ndim == 3:
                im = skimage.color.rgb2gray(im[..., :3] / 255.0).astype(np.float32)
            im = skimage.transform.resize(im, (size, size), anti_aliasing=True).astype(np.float32)
            out.append(im / max(float(im.max()), 1e-12))
        return np.stack(out, axis=-1)

    return load


def _training_photos() -> np.ndarray:
    import skimage.transform

    from .synth import load_photos

    out = [skimage.transform.resize(im, (512, 512), anti_aliasing=True) for _, im in load_photos()]
    return np.stack(out, axis=-1).astype(np.float32)


def _synthetic_tuning() -> np.ndarray:
    from .synth import tuning_volume

    return tuning_volume()


#: Photographs the image module validates on: not used as MRI training texture.
PHOTO_VALIDATION = ("camera", "coffee", "chelsea")
#: Photographs that may serve as training texture (``--synth-photos``; grey or made grey).
PHOTO_TRAINING = PHOTO_NAMES
#: Photographs kept for tuning only (never trained on).
PHOTO_TUNING = ("shepp_logan_phantom", "microaneurysms")

_NIBABEL = "nibabel test data (MIT)"
_PYDICOM = "pydicom test files (MIT)"

#: The registry.
SOURCES: dict[str, DataSource] = {
    s.name: s
    for s in (
        # evaluation: real scans never trained or tuned on
        DataSource("epi-bold", "evaluation", "T2* EPI (BOLD), 128x96x24, first frame", _NIBABEL,
                   "nibabel tests/data/example4d.nii.gz, frame 0; example_nifti2.nii.gz is a crop of it",
                   _nifti("example4d.nii.gz", 0)),
        DataSource("t1-small", "evaluation", "T1 brain, 33x41x25", _NIBABEL,
                   "nibabel tests/data/anatomical.nii; reoriented_anat_moved.nii and the AFNI "
                   "example4d+orig are made from the same scan", _nifti("anatomical.nii")),
        DataSource("mr-dicom", "evaluation", "T2 spin echo (TR 4000, TE 240 ms), 64x64x1, Toshiba", _PYDICOM,
                   "pydicom test_files/MR_small.dcm (and its re-encodings MR_small_*.dcm)",
                   _pydicom_file("MR_small.dcm")),
        DataSource("abdomen-mr", "evaluation", "abdomen MR, 300x484x1, Siemens", _PYDICOM,
                   "pydicom test_files/examples_overlay.dcm (its overlay plane is not read)",
                   _pydicom_file("examples_overlay.dcm")),
        DataSource("phantom-epi", "evaluation", "EPI of a phantom, 64x64x9, Philips", _NIBABEL,
                   "nibabel tests/data/phantom_EPI_asc_CLEAR_2_1.PAR/.REC, dynamic 0",
                   _parrec("phantom_EPI_asc_CLEAR_2_1.PAR")),
        # training
        DataSource("mni152-t1", "training", "MNI152 2009a T1 template, 197x233x189 at 1 mm",
                   "nilearn (BSD); the ICBM 2009a template's own licence", "nilearn load_mni152_template",
                   _mni152_t1),
        DataSource("mni152-tissue", "training",
                   "MNI152 grey- and white-matter probability maps (--dataset synth)",
                   "nilearn (BSD); the ICBM 2009a template's own licence",
                   "nilearn load_mni152_gm_template / load_mni152_wm_template", _mni152_tissue),
        DataSource("photos", "training", "scikit-image photographs made grey, 512x512 (--synth-photos)",
                   "scikit-image data (public domain / CC0 / BSD, per image)",
                   "skimage.data " + ", ".join(PHOTO_TRAINING), _training_photos),
        # tuning: never trained on, never evaluated on
        DataSource("tuning-photos", "tuning", "Shepp-Logan phantom and a photograph, 256x256",
                   "scikit-image data (public domain)", "skimage.data " + ", ".join(PHOTO_TUNING),
                   _skimage(PHOTO_TUNING, 256)),
        DataSource("tuning-synth", "tuning",
                   "contrast-randomised brains from the MNI152 tissue maps, validation slices",
                   "nilearn (BSD); the ICBM 2009a template's own licence",
                   "mri_n2n.data.synth.tuning_volume (MNI152 validation slices, seeded contrasts)",
                   _synthetic_tuning),
    )
}


def sources(role: str | None = None) -> list[DataSource]:
    """The registered sources, all or of one role."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return [s for s in SOURCES.values() if role is None or s.role == role]


def get_source(name: str) -> DataSource:
    """A source by name (a one-line error lists the names)."""
    if name not in SOURCES:
        raise KeyError(f"no data source '{name}' (have: {', '.join(SOURCES)})")
    return SOURCES[name]


# -- pixel overlap ---------------------------------------------------------------------------
def _runs(vol: np.ndarray, *, both_directions: bool) -> np.ndarray:
    """Fingerprints (int64, unique) of the distinctive runs of :data:`RUN` voxels along every axis."""
    v = np.asarray(vol, dtype=np.float64)
    v = v[..., None] if v.ndim == 2 else v
    levels = np.unique(v)
    quantum = float(np.diff(levels).min()) if levels.size > 1 else 0.0
    x = np.arange(RUN, dtype=np.float64) - (RUN - 1) / 2
    basis, _ = np.linalg.qr(np.stack([np.ones(RUN), x, x**2 - (x**2).mean()], axis=1))
    smooth = basis[:, 1:]  # orthonormal linear and quadratic shapes (the mean is removed anyway)
    rng = np.random.default_rng(12345)
    weights = rng.integers(1, 2**62, size=RUN, dtype=np.int64) | 1
    out = []
    for ax in range(v.ndim):
        if v.shape[ax] < RUN:
            continue
        moved = np.ascontiguousarray(np.moveaxis(v, ax, -1))
        lines = moved.reshape(-1, moved.shape[-1])
        peak = max(float(np.abs(v).max()) ** 2, 1e-30)
        step = max(1, 2_000_000 // lines.shape[1])  # bound the memory: ~2M runs at a time
        for start in range(0, lines.shape[0], step):
            w = np.lib.stride_tricks.sliding_window_view(lines[start : start + step], RUN, axis=-1)
            w = w.reshape(-1, RUN)
            c = w - w.mean(1, keepdims=True)
            var = (c**2).sum(1)
            ok = (var > 1e-12 * peak) & (var >= RUN * (_MIN_STEPS * quantum) ** 2)
            c, var = c[ok], var[ok]
            fit = ((c @ smooth) ** 2).sum(1)
            resid = 1.0 - fit / np.maximum(var, 1e-300)  # the share a parabola leaves
            keep = resid > _MIN_RESIDUAL
            if not keep.any():
                continue
            z = c[keep] / np.sqrt(var[keep] / RUN)[:, None]
            q = np.round(z / _QUANT).astype(np.int64)
            distinct = 1 + (np.diff(np.sort(q, axis=1), axis=1) != 0).sum(1)
            q = q[distinct >= _MIN_DISTINCT]  # steps and plateaus are in every image
            if not len(q):
                continue
            out.append(np.unique(q @ weights))
            if both_directions:
                out.append(np.unique(q[:, ::-1] @ weights))
    if not out:
        return np.zeros(0, np.int64)
    return np.unique(np.concatenate(out))


@functools.lru_cache(maxsize=16)
def _source_runs(name: str, both: bool) -> np.ndarray:
    return _runs(get_source(name).load(), both_directions=both)


def pixel_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Share of ``a``'s distinctive voxel runs that also occur in ``b`` (module docstring).

    Both are 2-D or 3-D arrays in any units. About 1 when ``a`` is a crop, flip, transpose or
    intensity rescaling of part of ``b``; about 0 for unrelated images. ``a`` without any
    distinctive run (a flat or linear image) gives 0.
    """
    ra = _runs(a, both_directions=False)
    if ra.size == 0:
        return 0.0
    rb = _runs(b, both_directions=True)
    return float(np.isin(ra, rb).mean())


def check_disjoint(
    group_a: Iterable[str | DataSource], group_b: Iterable[str | DataSource], *, limit: float = OVERLAP_LIMIT
) -> dict[tuple[str, str], float]:
    """Pixel overlap of every source of ``group_a`` with every source of ``group_b``, both ways.

    Returns:
        ``{(a, b): overlap}`` with the larger of the two directions.

    Raises:
        SourceOverlapError: a pair above ``limit`` (names the pair and its overlap).
    """
    names_a = [s.name if isinstance(s, DataSource) else str(s) for s in group_a]
    names_b = [s.name if isinstance(s, DataSource) else str(s) for s in group_b]
    out: dict[tuple[str, str], float] = {}
    for a in names_a:
        for b in names_b:
            ra, rb = _source_runs(a, False), _source_runs(b, True)
            rb1, ra2 = _source_runs(b, False), _source_runs(a, True)
            ab = float(np.isin(ra, rb).mean()) if ra.size else 0.0
            ba = float(np.isin(rb1, ra2).mean()) if rb1.size else 0.0
            out[(a, b)] = max(ab, ba)
            if out[(a, b)] > limit:
                raise SourceOverlapError(
                    f"sources '{a}' and '{b}' share pixels: {out[(a, b)]:.1%} of the distinctive voxel "
                    f"runs of one occur in the other (limit {limit:.0%})"
                )
    return out

