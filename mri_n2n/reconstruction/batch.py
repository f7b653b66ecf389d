"""Batch reconstruction: discover the inputs (files and folders), plan the outputs, reconstruct
each one (a bad input is reported and the others go on) and write ``report.csv``/``report.json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from ..checkpoint import DEFAULT_NAME, default_pretrained, pretrained
from ..data.multicoil import is_multicoil
from ..errors import one_line
from ..io import (
    KSPACE_SUFFIXES,
    atomic_write_json,
    atomic_write_text,
    is_dicom_file,
    is_nifti_path,
    load_dicom_series,
    load_volume,
    output_name_safe,
    read_kspace_input,
    write_dicom_series,
    write_nifti,
)
from ..io.dicom import DICOMDIR_CLASS
from ..io.kspace import MASK_SIDECAR
from ..io.mrd_format import has_trajectories
from ..io.noncartesian import NonCartesianKSpace
from ..io.raw import read_raw
from ..plots import radiological_view, reconstruction_panel
from .api import Reconstructor
from .engine import ReconstructionError
from .multicoil import multicoil_affine

#: Raw scanner files read by :func:`mri_n2n.io.raw.read_raw` (Siemens twix, ISMRMRD ``.mrd``).
RAW_SUFFIXES = (".dat", ".mrd")

__all__ = ["InputItem", "BatchResult", "collect_inputs", "plan_outputs", "check_out", "run_batch"]

_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


@dataclass
class BatchResult:
    """What a batch did: one report row per input, the failure count, and whether it was
    interrupted (Ctrl-C; the report lists the inputs done so far)."""

    rows: list[dict[str, Any]]
    failures: int
    interrupted: bool


@dataclass
class InputItem:
    """One input of a batch (a file, or a DICOM series found in a folder)."""

    label: str
    kind: str  # "nifti", "dicom", "kspace" or "bad"
    paths: tuple[str, ...] = ()
    series_uid: str | None = None
    name: str = ""
    error: str | None = None
    output: Path | None = None


def _stem(name: str) -> str:
    low = name.lower()
    for suf in (".nii.gz", ".nii", *KSPACE_SUFFIXES, *_DICOM_SUFFIXES):
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def _is_sidecar(path: Path) -> bool:
    return (
        path.name.lower().endswith(MASK_SIDECAR)
        and path.with_name(path.name[: -len(MASK_SIDECAR)] + ".npy").is_file()
    )


def _is_multicoil_file(path: Path) -> bool:
    """Raw scanner files (twix ``.dat``, ``.mrd``) and multi-coil HDF5 (fastMRI, ISMRMRD)."""
    low = path.name.lower()
    if low.endswith(RAW_SUFFIXES):
        return True
    return low.endswith((".h5", ".hdf5")) and is_multicoil(path)


def _classify_file(path: Path, *, walked: bool) -> InputItem | None:
    """The item for one file, or ``None`` for a file a folder walk skips quietly."""
    name = path.name
    low = name.lower()
    if is_nifti_path(name):
        return InputItem(str(path), "nifti", (str(path),), name=_stem(name))
    if low.endswith(KSPACE_SUFFIXES + RAW_SUFFIXES):
        if walked and _is_sidecar(path):
            return None
        return InputItem(str(path), "kspace", (str(path),), name=_stem(name))
    if is_dicom_file(path):
        return InputItem(str(path), "dicom", (str(path),), name=_stem(name))
    if low.endswith(_DICOM_SUFFIXES):
        return InputItem(
            str(path),
            "bad",
            error=f"{path}: not a DICOM file (no 'DICM' marker at byte 128: truncated, or not DICOM)",
        )
    if walked:
        return None
    return InputItem(
        str(path),
        "bad",
        error=f"{path}: unknown input type (expected .nii, .nii.gz, DICOM, .h5, .hdf5, .npy or .npz)",
    )


def _dicom_series_items(files: list[Path]) -> list[InputItem]:
    """Group DICOM files by SeriesInstanceUID; unreadable files become bad items."""
    items: list[InputItem] = []
    series: dict[str, list[tuple[Path, Any]]] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception as e:
            why = f"{f}: cannot read DICOM header (truncated or corrupt?) ({one_line(e, 160)})"
            items.append(InputItem(str(f), "bad", error=why))
            continue
        sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        if sop_class == DICOMDIR_CLASS or ds.get("Rows") is None:
            continue  # DICOMDIR, reports and other non-image objects
        series.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((f, ds))
    by_parent: dict[Path, int] = {}
    for members in series.values():
        parent = members[0][0].parent
        by_parent[parent] = by_parent.get(parent, 0) + 1
    for uid, members in sorted(series.items()):
        paths = tuple(sorted(str(f) for f, _ in members))
        parent = members[0][0].parent
        name = parent.name or "series"
        ds = members[0][1]
        label = str(parent)
        if by_parent[parent] > 1:
            number = ds.get("SeriesNumber")
            tail = str(number) if number not in (None, "") else (uid[-8:] or "series")
            name = f"{name}_{tail}"
            label = f"{parent} [series {uid}]"
        items.append(InputItem(label, "dicom", paths, series_uid=uid or None, name=output_name_safe(name)))
    return items


def collect_inputs(inputs: Sequence[str]) -> list[InputItem]:
    """Expand files and folders into items (sorted within each folder)."""
    items: list[InputItem] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            items.append(InputItem(str(p), "bad", error=f"{p}: not found"))
        elif p.is_dir():
            dicoms: list[Path] = []
            found: list[InputItem] = []
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for fn in sorted(files):
                    if fn.startswith("."):
                        continue
                    f = Path(root) / fn
                    kspace = fn.lower().endswith(KSPACE_SUFFIXES)
                    if not is_nifti_path(fn) and not kspace and is_dicom_file(f):
                        dicoms.append(f)
                        continue
                    item = _classify_file(f, walked=True)
                    if item is not None:
                        found.append(item)
            found += _dicom_series_items(dicoms)
            if not found:
                found.append(InputItem(str(p), "bad", error=f"{p}: no NIfTI, DICOM or k-space files found"))
            items += found
        else:
            item = _classify_file(p, walked=False)
            if item is not None:
                items.append(item)
    return items


def _output_format(item: InputItem, fmt: str) -> str:
    if fmt != "same":
        return fmt
    return "dicom" if item.kind == "dicom" else "nifti"


def plan_outputs(items: list[InputItem], out: Path, fmt: str) -> None:
    """Assign each item its output path; names that collide within the run get ``_2``, ``_3``..."""
    used: set[str] = set()
    for item in items:
        if item.kind == "bad":
            continue
        base = output_name_safe(item.name) + "_recon"
        kind = _output_format(item, fmt)
        name, n = base, 1
        while name.lower() in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name.lower())
        item.output = out / (name + (".nii.gz" if kind == "nifti" else ""))


def check_out(out: Path, inputs: Sequence[str], force: bool) -> str | None:
    """Why ``--out`` is refused, or ``None``."""
    if out.exists() and not out.is_dir():
        return f"--out {out} exists and is not a folder"
    if force:
        return None
    o = out.resolve()
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            continue
        r = p.resolve()
        if p.is_dir() and (o == r or r in o.parents):
            return f"--out {out} is inside the input folder {p}; choose another folder (or --force)"
        if p.is_file() and o == r.parent:
            return f"--out {out} is the folder of the input {p}; choose another folder (or --force)"
    return None


_CSV_FIELDS = [
    "input",
    "kind",
    "mode",
    "output",
    "status",
    "error",
    "seconds",
    "shape",
    "sampled_fraction",
    "psnr_zero_filled",
    "ssim_zero_filled",
    "nmse_zero_filled",
    "psnr",
    "ssim",
    "nmse",
    "data_range",
]


def _write_reports(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        flat = {k: v for k, v in r.items() if k != "metrics"}
        flat.update(r.get("metrics") or {})
        flat["shape"] = "x".join(str(s) for s in r["shape"]) if r.get("shape") else ""
        w.writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v)) for k, v in flat.items()}
        )
    atomic_write_text(out / "report.csv", buf.getvalue())
    atomic_write_json(out / "report.json", {**meta, "inputs": rows})


def _json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def _process(
    item: InputItem, rec: Reconstructor, args: argparse.Namespace, inputs: set[Path]
) -> dict[str, Any]:
    """Reconstruct one item and write its output; returns the report row (raises on failure)."""
    assert item.output is not None
    fmt = _output_format(item, args.format)
    dest = item.output
    if dest.resolve() in inputs or (fmt == "dicom" and any(dest.resolve() in p.parents for p in inputs)):
        raise ReconstructionError(f"{item.label}: output {dest} would replace an input; refusing")
    if dest.exists() and not args.force:
        raise ReconstructionError(f"{item.label}: output {dest} exists (pass --force to replace it)")
    simulate = args.simulate
    row: dict[str, Any] = {"kind": item.kind}
    template = None
    positions = None
    header = None
    if item.kind in ("nifti", "dicom"):
        if simulate is None:
            raise ReconstructionError(
                f"{item.label}: an image volume has no undersampling to undo; pass --simulate DENSITY "
                "for a retrospective study, or give k-space data (.h5, .npy, .npz)"
            )
        if item.kind == "dicom":
            vol = load_dicom_series(list(item.paths), series_uid=item.series_uid)
        else:
            vol = load_volume(item.paths[0])
        ax = rec.axis
        if vol.array.shape[ax] < 1 or min(s for a, s in enumerate(vol.array.shape) if a != ax) < 2:
            raise ReconstructionError(
                f"{item.label}: volume of shape {vol.array.shape} has no 2-D slices along axis {ax}"
            )
        result = rec.simulate(vol.array, simulate, seed=args.seed or 0)
        affine = vol.affine
        view_axis = ax
        row["mode"] = "simulate"
        if vol.meta.get("format") == "nifti":
            header = vol.meta.get("header")
        if vol.meta.get("format") == "dicom":
            template = vol.meta.get("dataset")
            positions = vol.meta.get("positions")
        description = f"N2N recon (simulated {simulate:g})"
    elif _is_multicoil_file(Path(item.paths[0])):
        mc = read_raw(item.paths[0])
        if isinstance(mc, NonCartesianKSpace) and simulate is not None:
            raise ReconstructionError(f"{item.label}: --simulate takes image volumes, not trajectory files")
        result = rec.multicoil(
            mc, simulate=simulate, seed=args.seed or 0, virtual_coils=getattr(args, "virtual_coils", None),
            cg_iters=getattr(args, "cg_iters", None),
        )
        affine = multicoil_affine(mc, result.image.shape)
        view_axis = None
        row["mode"] = "simulate" if simulate is not None else "kspace"
        row["coils"] = int(mc.kspace.shape[1])
        row["mask_law"] = result.mask_law
        for note in result.warnings:
            print(f"warning: {item.label}: {note}", file=sys.stderr)
        if result.warnings:
            row["warnings"] = list(result.warnings)
        description = "N2N recon" + (f" (simulated {simulate:g})" if simulate is not None else "")
    else:
        kin = read_kspace_input(item.paths[0])
        affine = kin.affine
        view_axis = None  # k-space slices are shown in their own (row, column) order
        if simulate is not None:
            if not kin.fully_sampled():
                frac = float(kin.sampled().mean())
                raise ReconstructionError(
                    f"{item.label}: undersampled k-space (keeps {frac:.0%}): --simulate needs fully sampled "
                    "data; run without --simulate to reconstruct it"
                )
            result = rec.simulate_kspace_input(kin, simulate, seed=args.seed or 0)
            row["mode"] = "simulate"
            description = f"N2N recon (simulated {simulate:g})"
        else:
            result = rec.kspace_input(kin)
            row["mode"] = "kspace"
            row["mask_law"] = result.mask_law
            for note in result.warnings:
                print(f"warning: {item.label}: {note}", file=sys.stderr)
            if result.warnings:
                row["warnings"] = list(result.warnings)
            description = "N2N recon"
    comments = (
        f"mri_n2n Noise2Noise reconstruction of {item.label}; checkpoint {Path(str(rec.checkpoint)).name}"
    )
    if fmt == "nifti":
        write_nifti(dest, result.image, affine, header=header, description=description, overwrite=args.force)
    else:
        orig = str(template.get("SeriesDescription", "") or "") if template is not None else ""
        write_dicom_series(
            dest,
            result.image,
            affine,
            template=template,
            positions=positions,
            series_description=f"{orig} {description}".strip(),
            comments=comments,
            overwrite=args.force,
        )
    if args.figures and result.preview:
        pv = result.preview
        if view_axis is not None:  # image volumes: show the slice as a radiologist would
            pv = {k: v if k == "slice" else radiological_view(v, affine, view_axis) for k, v in pv.items()}
        m = result.metrics
        psnrs = {"zero-filled": m["psnr_zero_filled"], "reconstruction": m["psnr"]} if m else None
        reconstruction_panel(
            Path(args.out) / "figures" / f"{dest.name.replace('.nii.gz', '')}.png",
            mask=pv["mask"],
            zero_filled=pv["zero_filled"],
            reconstruction=pv["reconstruction"],
            reference=pv.get("reference"),
            psnrs=psnrs,
            title=f"{Path(item.label).name} slice {pv['slice']}" + (" (volume PSNR)" if m else ""),
        )
    row.update(
        shape=list(result.image.shape),
        sampled_fraction=result.sampled_fraction,
        metrics=_json_safe(result.metrics),
    )
    return row


def input_data(item: InputItem) -> str:
    """What the shipped model for ``item`` must serve (:data:`~mri_n2n.checkpoint.DEFAULT_INPUTS`):
    ``noncartesian`` (ISMRMRD files whose readouts carry trajectories), ``multicoil`` (multi-coil
    HDF5, ISMRMRD, twix), ``complex`` (single-coil k-space files) or ``magnitude`` (image volumes,
    studied with ``--simulate``)."""
    if item.kind == "kspace":
        path = Path(item.paths[0])
        if path.name.lower().endswith((".h5", ".hdf5", ".mrd")) and has_trajectories(path):
            return "noncartesian"
        return "multicoil" if _is_multicoil_file(path) else "complex"
    return "magnitude"


class DefaultChooser:
    """``--checkpoint default`` per input: the shipped model made for the input's data
    (:func:`~mri_n2n.checkpoint.default_pretrained`), loaded once with ``rec``'s settings (device,
    precision, batch size, ensemble, adaptation, multi-coil output). Calling it with an item
    returns ``(reconstructor, name, why)``."""

    def __init__(self, rec: Reconstructor) -> None:
        self.rec = rec
        # ``rec`` is what ``--checkpoint default`` loaded: the magnitude default, not loaded again
        self._loaded: dict[str, Reconstructor] = {default_pretrained("magnitude"): rec}

    def __call__(self, item: InputItem) -> tuple[Reconstructor, str, str]:
        data = input_data(item)
        name = default_pretrained(data)
        if name not in self._loaded:
            r = Reconstructor.from_pretrained(
                name, device=self.rec.device, amp=self.rec.amp, batch_size=self.rec.batch_size,
                ensemble=self.rec.ensemble, adapt=self.rec.adapt_steps,
            )  # fmt: skip
            r.multicoil_output = self.rec.multicoil_output
            r.maps = self.rec.maps
            if self.rec.adapt_pixels is None:  # --adapt-whole
                r.adapt_pixels = None
            self._loaded[name] = r
        made = data in pretrained()[name].get("default_for", ()) or data == "magnitude"
        why = f"{data} data" + ("" if made else f": no shipped model is made for {data} data yet")
        return self._loaded[name], name, why


def run_batch(rec: Reconstructor, args: argparse.Namespace) -> BatchResult:
    """Reconstruct every input of ``args`` (the ``reconstruct`` command's options) with ``rec``.

    Inputs are discovered (:func:`collect_inputs`), their outputs planned, each one
    reconstructed and written (a bad input is reported and the others go on), and
    ``report.csv``/``report.json`` written in ``args.out``.

    Raises:
        OSError: ``args.out`` cannot be created, or the report cannot be written.
    """
    out = Path(args.out)
    items = collect_inputs(args.inputs)
    plan_outputs(items, out, args.format)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"--out {out}: cannot create the folder ({one_line(e)})") from None
    input_files = {Path(p).resolve() for it in items for p in it.paths}
    choose = DefaultChooser(rec) if str(getattr(args, "checkpoint", "")) == DEFAULT_NAME else None
    rows: list[dict[str, Any]] = []
    failures = 0
    interrupted = False
    try:
        for n, item in enumerate(items, 1):
            t0 = time.perf_counter()
            row: dict[str, Any] = {
                "input": item.label,
                "kind": item.kind,
                "mode": None,
                "output": str(item.output) if item.output else None,
                "status": "ok",
                "error": None,
                "seconds": 0.0,
                "shape": None,
                "sampled_fraction": None,
                "metrics": {},
            }
            try:
                if item.kind == "bad":
                    raise ReconstructionError(item.error or f"{item.label}: unusable input")
                use = rec
                if choose is not None:  # --checkpoint default: the shipped model made for this input
                    use, row["checkpoint"], why = choose(item)
                    if not args.quiet:
                        print(f"{item.label}: --checkpoint default -> {row['checkpoint']} ({why})",
                              flush=True)
                row.update(_process(item, use, args, input_files))
            except Exception as e:  # one bad input must not stop the batch
                failures += 1
                msg = one_line(e)
                if item.label not in msg:
                    msg = f"{item.label}: {msg}"
                if not isinstance(e, (ValueError, OSError)):
                    msg = f"{msg} ({type(e).__name__})"
                row.update(status="failed", error=msg, output=None)
                print(f"error: {msg}", file=sys.stderr, flush=True)
            row["seconds"] = round(time.perf_counter() - t0, 3)
            rows.append(row)
            if row["status"] == "ok" and not args.quiet:
                m = row.get("metrics") or {}
                extra = ""
                if m.get("psnr") is not None and m.get("psnr_zero_filled") is not None:
                    extra = f"; PSNR zero-filled {m['psnr_zero_filled']:.2f} -> {m['psnr']:.2f} dB"
                    if m.get("psnr_zero_filled_plain") is not None:
                        extra += f" (zero-filled without 1/p: {m['psnr_zero_filled_plain']:.2f} dB)"
                print(
                    f"[{n}/{len(items)}] {item.label} -> {row['output']} ({row['seconds']:.1f} s{extra})",
                    flush=True,
                )
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: the report lists the inputs done so far", file=sys.stderr, flush=True)
    meta = {
        "checkpoint": str(args.checkpoint),
        "device": str(rec.device),
        "format": args.format,
        "simulate": args.simulate,
        "seed": (args.seed or 0) if args.simulate is not None else None,
        "batch_size": args.batch_size,
        "ensemble": rec.ensemble,
        "adapt_steps": rec.adapt_steps,
        "failed": failures,
        "interrupted": interrupted,
    }
    try:
        _write_reports(out, rows, meta)
    except OSError as e:
        raise OSError(f"cannot write the report in {out}: {one_line(e)}") from None
    return BatchResult(rows, failures, interrupted)
