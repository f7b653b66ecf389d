"""IXI brain T1 volumes: preparation to HDF5 and the ``ixi`` dataset.

Getting the data (it cannot be downloaded automatically; about 4.5 GB, 581 T1 volumes,
CC BY-SA 3.0, from https://brain-development.org/ixi-dataset/)::

    mkdir -p data/ixi
    wget -P data/ixi http://biomedic.doc.ic.ac.uk/brain-development/downloads/IXI/IXI-T1.tar
    # optional: unpack (the tarball can also be used as is)
    mkdir -p data/ixi/IXI-T1 && tar -xf data/ixi/IXI-T1.tar -C data/ixi/IXI-T1
    python data_prep/prepare_ixi.py data/ixi/IXI-T1.tar data/ixi-prepared

The tarball holds ``IXI<nnn>-<site>-<nnnn>-T1.nii.gz`` files (site = Guys, HH or IOP).

The paper's protocol, reproduced by :func:`prepare_ixi` (defaults) and the raw-folder reader:

- the subjects of the authors' reference implementation (NVlabs/noise2noise,
  ``dataset_tool_mri.py``), pinned as data in ``ixi_paper_subjects.json``
  (:func:`paper_subject_ids`): 50 train (IXI002 .. IXI063, 12 IDs in that range are not listed)
  and 10 validate (IXI064 .. IXI073); the rest are unused (``split="paper"``,
  :func:`paper_split`). ``split="sorted"`` keeps the earlier rule: the first 50 subjects by ID
  train and the next 10 validate, whatever the folder holds (:func:`split_subjects`
  documents the rule for fewer subjects);
- each volume divided by its own maximum;
- axial slices 25..124 (``array[:, :, k]``, ``slices=(25, 125)``), centre zero-padded (or
  cropped) to 256 x 256; a slice is kept when its maximum exceeds 1/255 of the volume's
  maximum (:data:`PAPER_MIN_PEAK`: the reference clips ``slice / volume max`` to [0, 1],
  scales it by 255 and keeps the slice when that float maximum is above 1.0, before it
  quantises to 8-bit PNG); ``min_peak=None`` keeps every slice with a non-zero pixel.

Prepared layout (``prepare_ixi`` output folder)::

    train.h5, valid.h5   slices        float32 (N, size, size), gzip, one chunk per slice
                         subject       UTF-8 strings (N,), e.g. "IXI002-Guys-0828"
                         slice_index   int32 (N,), index along the slicing axis
                         ident         int64 (N,), stable_ident("ixi", subject, slice)
                         affine        float64 (N, 4, 4), the slice's volume voxel-to-RAS+ matrix
                                       (for figures; absent in files prepared before it existed)
                         attrs: format, version, split, size, axis, slice_start, slice_stop, normalize,
                                min_peak (absent: no threshold; files before it existed)
    manifest.json        options (subject_split: paper or sorted; min_peak), split rule,
                         per-subject counts; written last (its presence marks a complete
                         preparation)
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
import tarfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from ..io import Volume, VolumeError, atomic_path, atomic_write_json, load_nifti
from ..seeding import stable_ident
from .base import DataDirError, H5SliceDataset, SliceDataset
from .slices import check_normalize, volume_to_slices

__all__ = [
    "IXI_T1_PATTERN",
    "PAPER_SLICES",
    "PAPER_SIZE",
    "PAPER_TRAIN_SUBJECTS",
    "PAPER_VALID_SUBJECTS",
    "PAPER_MIN_PEAK",
    "SPLITS",
    "MANIFEST_FORMAT",
    "IXISubject",
    "find_ixi_subjects",
    "paper_subject_ids",
    "paper_split",
    "split_subjects",
    "iter_ixi_volumes",
    "prepare_ixi",
    "is_prepared_ixi",
    "build_ixi_datasets",
]

#: File names of IXI T1 volumes; group 1 is the subject ID.
IXI_T1_PATTERN = re.compile(r"^(IXI\d{3}-[A-Za-z]+-\d{4})-T1\.nii(?:\.gz)?$")
PAPER_SLICES = (25, 125)
PAPER_SIZE = 256
PAPER_TRAIN_SUBJECTS = 50
PAPER_VALID_SUBJECTS = 10
#: The reference keeps a slice when its maximum exceeds this fraction of the volume's maximum.
PAPER_MIN_PEAK = 1.0 / 255.0
#: Subject splits: the reference's pinned lists, or the first subjects by ID.
SPLITS = ("paper", "sorted")
_PAPER_SUBJECTS_FILE = "ixi_paper_subjects.json"
MANIFEST_FORMAT = "mri_n2n-ixi-prepared"
_VERSION = 1

T = TypeVar("T")


@dataclass(frozen=True)
class IXISubject:
    """One IXI T1 volume: ``subject`` ID, the file or tarball ``source``, the tar ``member``."""

    subject: str
    source: str
    member: str | None = None

    @property
    def label(self) -> str:
        """``path`` or ``tarball::member``, for messages and provenance."""
        return self.source if self.member is None else f"{self.source}::{self.member}"


def find_ixi_subjects(source: str | os.PathLike) -> list[IXISubject]:
    """List the IXI T1 volumes of a folder (searched recursively) or a tarball, sorted by subject ID.

    Raises:
        DataDirError: missing source, unreadable tarball, no IXI T1 file, or one subject twice.
    """
    src = Path(source)
    if not src.exists():
        raise DataDirError(f"IXI source {src} does not exist")
    found: list[IXISubject] = []
    if src.is_file():
        try:
            with tarfile.open(src) as tf:
                for m in tf.getmembers():
                    mt = IXI_T1_PATTERN.match(os.path.basename(m.name))
                    if m.isfile() and mt:
                        found.append(IXISubject(mt.group(1), str(src), m.name))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataDirError(f"IXI source {src}: not a readable tar archive ({exc})") from None
    else:
        for root, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for fn in sorted(files):
                mt = IXI_T1_PATTERN.match(fn)
                if mt:
                    found.append(IXISubject(mt.group(1), os.path.join(root, fn)))
    if not found:
        raise DataDirError(f"IXI source {src} contains no IXI???-<site>-????-T1.nii.gz file")
    found.sort(key=lambda s: s.subject)
    dup = sorted({a.subject for a, b in zip(found, found[1:]) if a.subject == b.subject})
    if dup:
        raise DataDirError(f"IXI source {src}: subject(s) found more than once: {', '.join(dup[:5])}")
    return found


def split_subjects(
    subjects: Sequence[T], n_train: int = PAPER_TRAIN_SUBJECTS, n_valid: int = PAPER_VALID_SUBJECTS
) -> tuple[list[T], list[T], list[T]]:
    """Split subjects (already sorted by ID) into train, validation and unused.

    Rule: with at least ``n_train + n_valid`` subjects, the first ``n_train`` train, the next
    ``n_valid`` validate, the rest are unused (the paper: 50/10). With fewer, the sorted list
    is split proportionally: ``v = max(1, round(n * n_valid / (n_train + n_valid)))``
    validation subjects (the last ``v``, at most ``n - 1``) and the rest train; e.g. 6
    subjects give 5 train + 1 validation. ``n_valid = 0`` gives no validation.

    Raises:
        ValueError: bad counts, or fewer than 2 subjects when validation is wanted.
    """
    if n_train < 1 or n_valid < 0:
        raise ValueError(f"need train subjects >= 1 and valid subjects >= 0, got {n_train} and {n_valid}")
    s = list(subjects)
    n = len(s)
    if n >= n_train + n_valid:
        return s[:n_train], s[n_train : n_train + n_valid], s[n_train + n_valid :]
    if n_valid == 0:
        return s, [], []
    if n < 2:
        raise ValueError(f"{n} subject(s): at least 2 are needed for a train/validation split")
    v = min(n - 1, max(1, round(n * n_valid / (n_train + n_valid))))
    return s[: n - v], s[n - v :], []


@functools.lru_cache(maxsize=1)
def paper_subject_ids() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The paper's (train, validation) subject IDs, 50 and 10, as the reference implementation
    lists them (read from the package's ``ixi_paper_subjects.json``)."""
    data = json.loads(resources.files(__package__).joinpath(_PAPER_SUBJECTS_FILE).read_text())
    return tuple(data["train"]), tuple(data["valid"])


def _missing_paper_subjects(subjects: Sequence[IXISubject]) -> list[str]:
    """The paper's subject IDs that ``subjects`` lacks, sorted."""
    have = {s.subject for s in subjects}
    train, valid = paper_subject_ids()
    return sorted(set(train + valid) - have)


def _missing_message(source: str | os.PathLike, missing: Sequence[str]) -> str:
    total = sum(len(ids) for ids in paper_subject_ids())
    shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    return f"IXI source {source} lacks {len(missing)} of the paper's {total} subjects ({shown})"


def paper_split(
    subjects: Sequence[IXISubject], *, source: str | os.PathLike = "?"
) -> tuple[list[IXISubject], list[IXISubject], list[IXISubject]]:
    """Split into the paper's train and validation subjects (:func:`paper_subject_ids`, in that
    order) and the unused rest (sorted by ID).

    Raises:
        DataDirError: a listed subject is missing (one line naming ``source``, the count and the
            first missing IDs, and ``--split sorted`` as the way to use the subjects at hand).
    """
    missing = _missing_paper_subjects(subjects)
    if missing:
        raise DataDirError(
            _missing_message(source, missing) + "; --split sorted splits the subjects found by ID instead"
        )
    by_id = {s.subject: s for s in subjects}
    train_ids, valid_ids = paper_subject_ids()
    listed = set(train_ids + valid_ids)
    unused = sorted((s for s in subjects if s.subject not in listed), key=lambda s: s.subject)
    return [by_id[i] for i in train_ids], [by_id[i] for i in valid_ids], unused


def iter_ixi_volumes(subjects: Sequence[IXISubject]) -> Iterator[tuple[IXISubject, Volume]]:
    """Load the subjects' volumes in order (one tarball opened once)."""
    tars: dict[str, tarfile.TarFile] = {}
    try:
        for sub in subjects:
            if sub.member is None:
                yield sub, load_nifti(sub.source)
                continue
            tf = tars.get(sub.source)
            if tf is None:
                tf = tars[sub.source] = tarfile.open(sub.source)
            try:
                fh = tf.extractfile(tf.getmember(sub.member))
                data = fh.read() if fh is not None else b""
            except (tarfile.TarError, OSError, EOFError, KeyError) as exc:
                raise VolumeError(f"{sub.label}: cannot extract from tarball ({exc})") from None
            yield sub, load_nifti(data=data, name=sub.label)
    finally:
        for tf in tars.values():
            tf.close()


def _slices_of(
    vol: Volume, *, axis: int, slices: tuple[int, int], size: int, normalize: str, min_peak: float | None
) -> tuple[np.ndarray, list[int]]:
    return volume_to_slices(
        vol.array, axis=axis, slice_range=slices, size=size, normalize=normalize, min_peak=min_peak
    )


def _write_split(
    path: Path,
    subjects: Sequence[IXISubject],
    *,
    split: str,
    axis: int,
    slices: tuple[int, int],
    size: int,
    normalize: str,
    min_peak: float | None,
    bar: Any,
) -> dict[str, Any]:
    records = []
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            d_img = f.create_dataset(
                "slices",
                shape=(0, size, size),
                maxshape=(None, size, size),
                dtype="f4",
                chunks=(1, size, size),
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
            d_sub = f.create_dataset(
                "subject", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8")
            )
            d_idx = f.create_dataset("slice_index", shape=(0,), maxshape=(None,), dtype="i4")
            d_id = f.create_dataset("ident", shape=(0,), maxshape=(None,), dtype="i8")
            # each slice's volume affine (voxel -> RAS+ mm): figures show slices radiologically
            d_aff = f.create_dataset("affine", shape=(0, 4, 4), maxshape=(None, 4, 4), dtype="f8")
            for sub, vol in iter_ixi_volumes(subjects):
                stack, idx = _slices_of(
                    vol, axis=axis, slices=slices, size=size, normalize=normalize, min_peak=min_peak
                )
                n0, n = d_img.shape[0], len(idx)
                for d in (d_img, d_sub, d_idx, d_id, d_aff):
                    d.resize(n0 + n, axis=0)
                if n:
                    d_aff[n0:] = np.broadcast_to(np.asarray(vol.affine, np.float64), (n, 4, 4))
                    d_img[n0:] = stack
                    d_sub[n0:] = [sub.subject] * n
                    d_idx[n0:] = np.asarray(idx, dtype=np.int32)
                    d_id[n0:] = np.asarray([stable_ident("ixi", sub.subject, k) for k in idx], dtype=np.int64)
                wanted = max(0, min(slices[1], vol.shape[axis]) - min(slices[0], vol.shape[axis]))
                records.append(
                    {
                        "subject": sub.subject,
                        "file": sub.label,
                        "shape": list(vol.shape),
                        "n_slices": n,
                        "skipped_black": wanted - n,  # all-black or under min_peak
                        "first_slice": idx[0] if idx else None,
                        "last_slice": idx[-1] if idx else None,
                    }
                )
                bar.update(1)
            f.attrs.update(
                {
                    "format": MANIFEST_FORMAT,
                    "version": _VERSION,
                    "split": split,
                    "dataset": "ixi",
                    "size": size,
                    "axis": axis,
                    "slice_start": slices[0],
                    "slice_stop": slices[1],
                    "normalize": normalize,
                    **({"min_peak": min_peak} if min_peak is not None else {}),
                }
            )
            total = int(d_img.shape[0])
    return {"file": path.name, "n_slices": total, "n_subjects": len(subjects), "subjects": records}


def _choose_split(
    subjects: Sequence[IXISubject],
    split: str,
    train_subjects: int | None,
    valid_subjects: int | None,
    source: str | os.PathLike,
) -> tuple[list[IXISubject], list[IXISubject], list[IXISubject], str]:
    """(train, valid, unused, the rule in words) of :func:`prepare_ixi`'s ``split``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if split == "paper":
        if train_subjects is not None or valid_subjects is not None:
            raise ValueError(
                "--train-subjects/--valid-subjects apply to --split sorted; "
                "the paper split has its own 50 + 10 subjects"
            )
        train, valid, unused = paper_split(subjects, source=source)
        return train, valid, unused, "the reference implementation's 50 train and 10 validation subjects"
    n_train = PAPER_TRAIN_SUBJECTS if train_subjects is None else train_subjects
    n_valid = PAPER_VALID_SUBJECTS if valid_subjects is None else valid_subjects
    train, valid, unused = split_subjects(subjects, n_train, n_valid)
    rule = (
        f"subjects sorted by ID; first {n_train} train, next {n_valid} validate; "
        "with fewer subjects the sorted list is split proportionally, at least 1 validation subject"
    )
    return train, valid, unused, rule


def prepare_ixi(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    slices: tuple[int, int] = PAPER_SLICES,
    size: int = PAPER_SIZE,
    split: str = "paper",
    train_subjects: int | None = None,
    valid_subjects: int | None = None,
    normalize: str = "max",
    axis: int = 2,
    min_peak: float | None = PAPER_MIN_PEAK,
    progress: bool = True,
) -> dict[str, Any]:
    """Prepare IXI T1 volumes into ``train.h5``, ``valid.h5`` and ``manifest.json``.

    Args:
        source: ``IXI-T1.tar`` or a folder of ``IXI???-<site>-????-T1.nii.gz`` files.
        output: the output folder (created; existing outputs are replaced atomically).
        slices: ``(start, stop)`` half-open slice range (paper: 25..124).
        size: output side, centre pad/crop (paper: 256).
        split: ``"paper"`` (the reference's pinned subjects, :func:`paper_split`; every one must
            be in ``source``) or ``"sorted"`` (the first subjects by ID, :func:`split_subjects`).
        train_subjects, valid_subjects: subject counts of the ``"sorted"`` split (default
            50/10); not allowed with ``"paper"``.
        normalize: per-volume normalisation (paper: ``"max"``).
        axis: slicing axis (paper: 2).
        min_peak: keep a slice only if its normalised maximum exceeds this (paper: 1/255);
            ``None`` keeps every slice with a non-zero pixel.
        progress: show a tqdm progress bar.

    Returns:
        The manifest (also written to ``output/manifest.json``).

    Raises:
        DataDirError: no IXI volume in ``source``, or (``split="paper"``) a listed subject
            missing from it.
        VolumeError: a volume cannot be read (names it).
        ValueError: bad options.
    """
    slices = (int(slices[0]), int(slices[1]))
    if slices[0] < 0 or slices[1] <= slices[0]:
        raise ValueError(f"bad slice range {slices[0]}:{slices[1]} (need 0 <= start < stop)")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    check_normalize(normalize)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    subjects = find_ixi_subjects(source)
    train, valid, unused, rule = _choose_split(subjects, split, train_subjects, valid_subjects, source)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest_path.unlink()  # an interrupted re-run must not look complete
    opts = dict(axis=axis, slices=slices, size=size, normalize=normalize, min_peak=min_peak)
    with tqdm(total=len(train) + len(valid), desc="IXI", unit="subject", disable=not progress) as bar:
        train_info = _write_split(out / "train.h5", train, split="train", bar=bar, **opts)
        valid_info = _write_split(out / "valid.h5", valid, split="valid", bar=bar, **opts)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": _VERSION,
        "dataset": "ixi",
        "source": str(source),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "slices": list(slices),
        "size": size,
        "axis": axis,
        "normalize": normalize,
        "min_peak": min_peak,
        "subject_split": split,
        "train_subjects_requested": train_subjects,
        "valid_subjects_requested": valid_subjects,
        "split_rule": rule,
        "n_subjects_found": len(subjects),
        "train": train_info,
        "valid": valid_info,
        "unused_subjects": [s.subject for s in unused],
    }
    atomic_write_json(manifest_path, manifest)
    return manifest


def is_prepared_ixi(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a complete :func:`prepare_ixi` output."""
    p = Path(folder)
    return p.is_dir() and all((p / n).is_file() for n in ("manifest.json", "train.h5", "valid.h5"))


def _prepared_rows(path: Path, slices: tuple[int, int] | None) -> list[int] | None:
    if slices is None:
        return None
    with h5py.File(path, "r") as f:
        idx = np.asarray(f["slice_index"][...])
    return [int(r) for r in np.nonzero((idx >= slices[0]) & (idx < slices[1]))[0]]


def _build_prepared(
    folder: Path, *, size: int, slices: tuple[int, int] | None, axis: int, normalize: str
) -> tuple[H5SliceDataset, H5SliceDataset]:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataDirError(f"data dir {folder}: unreadable manifest.json ({exc})") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise DataDirError(
            f"data dir {folder}: manifest.json is not an IXI preparation (format {manifest.get('format')!r})"
        )
    for key, want in (("axis", axis), ("normalize", normalize)):
        if manifest.get(key) != want:
            raise ValueError(
                f"data dir {folder} was prepared with {key}={manifest.get(key)!r}, requested {want!r}; "
                f"re-run data_prep/prepare_ixi.py with --{key} {want}"
            )
    p0, p1 = manifest.get("slices", PAPER_SLICES)
    if slices is not None and (slices[0] < p0 or slices[1] > p1):
        raise ValueError(
            f"data dir {folder} holds slices {p0}:{p1}; requested {slices[0]}:{slices[1]} is not inside "
            f"(re-run data_prep/prepare_ixi.py with --slices {slices[0]}:{slices[1]})"
        )
    stored = int(manifest.get("size", PAPER_SIZE))
    if size < stored:
        warnings.warn(
            f"{folder} was prepared at {stored}x{stored}; slices are centre-cropped to {size}x{size}",
            stacklevel=3,
        )
    out = []
    for split in ("train", "valid"):
        path = folder / f"{split}.h5"
        out.append(H5SliceDataset(path, rows=_prepared_rows(path, slices), size=size, dataset="ixi"))
    return out[0], out[1]


def _raw_split(
    subjects: Sequence[IXISubject], split: str | None, source: Path
) -> tuple[list[IXISubject], list[IXISubject]]:
    """(train, valid) of the raw reader: ``None`` is the paper split when every listed subject is
    present, else the sorted split with a one-line warning."""
    if split is None:
        missing = _missing_paper_subjects(subjects)
        split = "sorted" if missing else "paper"
        if missing:
            warnings.warn(
                _missing_message(source, missing) + f": splitting its {len(subjects)} subjects by ID instead",
                stacklevel=4,
            )
    try:
        train, valid, _, _ = _choose_split(subjects, split, None, None, source)
    except ValueError as exc:
        if isinstance(exc, DataDirError):  # already names the source
            raise
        raise DataDirError(f"data dir {source}: {exc}") from None
    return train, valid


def _build_raw(
    source: Path,
    *,
    size: int,
    slices: tuple[int, int] | None,
    axis: int,
    normalize: str,
    split: str | None,
    min_peak: float | None,
) -> tuple[SliceDataset, SliceDataset]:
    train, valid = _raw_split(find_ixi_subjects(source), split, source)
    rng = slices if slices is not None else PAPER_SLICES

    def make(subs: Sequence[IXISubject]) -> SliceDataset:
        images, prov = [], []
        for sub, vol in iter_ixi_volumes(subs):
            stack, idx = _slices_of(
                vol, axis=axis, slices=rng, size=size, normalize=normalize, min_peak=min_peak
            )
            images.append(stack)
            affine = vol.affine.tolist()  # one list per volume, shared by its slices
            prov += [
                {
                    "dataset": "ixi",
                    "source": sub.subject,
                    "subject": sub.subject,
                    "slice": k,
                    "axis": axis,
                    "file": sub.label,
                    "affine": affine,
                }
                for k in idx
            ]
        arr = np.concatenate(images) if images else np.zeros((0, size, size), np.float32)
        return SliceDataset(arr, prov)

    return make(train), make(valid)


def build_ixi_datasets(
    data_dir: str | os.PathLike,
    *,
    size: int = PAPER_SIZE,
    slices: tuple[int, int] | None = None,
    axis: int = 2,
    normalize: str = "max",
    split: str | None = None,
    min_peak: float | None = PAPER_MIN_PEAK,
) -> tuple[Dataset, Dataset]:
    """The IXI (train, valid) datasets.

    ``data_dir`` may be a :func:`prepare_ixi` output folder (read lazily from HDF5; ``size``
    pads/crops on the fly and ``slices`` selects a sub-range of the prepared one; its split
    and slice threshold are the preparation's), or the raw IXI folder / ``IXI-T1.tar`` (split
    and slices computed on the fly and held in memory: about 1.5 GB for 60 subjects at
    256 x 256, so prefer preparing once). For a raw source, ``split`` is ``"paper"``,
    ``"sorted"`` (see :func:`prepare_ixi`) or ``None``: the paper's subjects when the source
    holds all of them, else the sorted split with a one-line warning naming the missing ones;
    ``min_peak`` is the slice threshold (default the paper's 1/255).
    """
    p = Path(data_dir)
    if is_prepared_ixi(p):
        return _build_prepared(p, size=size, slices=slices, axis=axis, normalize=normalize)
    if p.is_dir() and (p / "train.h5").exists() and not (p / "manifest.json").exists():
        raise DataDirError(
            f"data dir {p}: train.h5 without manifest.json (incomplete preparation? re-run "
            "data_prep/prepare_ixi.py)"
        )
    return _build_raw(
        p, size=size, slices=slices, axis=axis, normalize=normalize, split=split, min_peak=min_peak
    )
