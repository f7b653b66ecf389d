"""The notebooks under ``notebooks/`` execute without error, and are committed without outputs.

Each notebook runs top to bottom in a fresh kernel with ``MRI_N2N_QUICK=1`` (tiny sizes and
step counts) and ``MPLBACKEND=Agg``, from a temporary working directory, so nothing is written
into the repository. The kernel is this interpreter's own ipykernel (a ``python3`` kernelspec
registered elsewhere on the machine is not used). Executing needs ``nbclient`` and ``ipykernel``
(the ``dev`` extra); without them those tests are skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = (
    "01_quickstart.ipynb",
    "02_noise2noise_vs_noise2clean.ipynb",
    "03_photographic_noise.ipynb",
    "04_batch_reconstruction.ipynb",
    "05_multicoil_raw.ipynb",
    "06_single_acquisition.ipynb",
    "07_noncartesian.ipynb",
)
QUICK_FLAG = 'QUICK = os.environ.get("MRI_N2N_QUICK", "0") == "1"'
#: Seconds a cell may run before the test fails (QUICK runs take seconds per notebook).
CELL_TIMEOUT = 300


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


_MISSING = [m for m in ("nbclient", "nbformat", "ipykernel", "jupyter_client") if _missing(m)]
needs_kernel = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"executing notebooks needs {', '.join(_MISSING)} (pip install -e '.[dev]')",
)


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _code_cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def test_all_notebooks_present():
    assert [p.name for p in NOTEBOOKS] == list(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_committed_without_outputs(path):
    cells = _code_cells(path)
    assert cells, f"{path.name}: no code cells"
    dirty = [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs or execution counts (strip them)"
    assert QUICK_FLAG in _source(cells[0]), f"{path.name}: the first code cell must read the QUICK flag"


@needs_kernel
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes(path, tmp_path, monkeypatch):
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    # the kernel inherits this environment when it starts
    monkeypatch.setenv("MRI_N2N_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("MRI_N2N_NOTEBOOK_OUT", raising=False)
    monkeypatch.delenv("MRI_N2N_CHECKPOINT", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary folders land here too

    nb = nbformat.read(path, as_version=4)
    # an empty kernel folder: "python3" resolves to ipykernel's native spec, i.e. sys.executable
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    km = KernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )
    assert km.kernel_spec.argv[0] == sys.executable
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    before = sorted(NOTEBOOK_DIR.iterdir())
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - start
    print(f"{path.name}: executed in {seconds:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    assert sorted(NOTEBOOK_DIR.iterdir()) == before, f"{path.name} wrote into {NOTEBOOK_DIR}"
