"""The package's shape: layers point one way, no import cycle, small modules, one command,
a documented public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mri_n2n

PKG = Path(mri_n2n.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Package modules that ``path`` imports (anywhere in the file, TYPE_CHECKING blocks too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target in modules:
                out.add(target)
            for a in node.names:
                if f"{target}.{a.name}" in modules:
                    out.add(f"{target}.{a.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    out.discard(name)
    return out


def _graph() -> dict[str, set[str]]:
    files = sorted(PKG.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, modules) for f in files}


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for d in graph[m]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_the_graph_sees_real_imports():
    g = _graph()
    assert "mri_n2n.training" in g["mri_n2n.cli.train"]
    assert "mri_n2n.fft" in g["mri_n2n.physics"]
    assert "mri_n2n.config" not in g["mri_n2n.corruptions.mri"]  # it reads a Protocol, not Config


def test_no_import_cycle():
    g = _graph()
    cycles = sorted(m for m in g if m in _closure(g, m))
    assert not cycles, f"modules on an import cycle: {cycles}"


@pytest.mark.parametrize(
    "module",
    [
        "mri_n2n.reconstruction",
        "mri_n2n.evaluation",
        "mri_n2n.config",
        "mri_n2n.corruptions",
        "mri_n2n.models",
        "mri_n2n.losses",
        "mri_n2n.data",
        "mri_n2n.io",
        "mri_n2n.physics",
    ],
)
def test_layers_point_one_way(module):
    """Reconstruction, evaluation and everything below them never import the trainer or a CLI."""
    deps = _closure(_graph(), module)
    top = ("mri_n2n.training", "mri_n2n.cli", "mri_n2n.bench")
    above = sorted(d for d in deps if d.startswith(top))
    assert not above, f"{module} imports {above}"
    assert "mri_n2n" not in deps  # the package's __init__ (which imports everything) is not a dependency


def test_physics_and_io_stay_at_the_bottom():
    g = _graph()
    bottom = (
        "mri_n2n.fft",
        "mri_n2n.solvers",
        "mri_n2n.sampling",
        "mri_n2n.physics",
        "mri_n2n.coils",
        "mri_n2n.coil_maps",
        "mri_n2n.splits",
    )
    for low in (*bottom, "mri_n2n.io"):
        deps = _closure(g, low)
        higher = ("mri_n2n.data", "mri_n2n.corruptions", "mri_n2n.models")
        assert not any(d.startswith(higher) for d in deps), low


#: Private names still imported across modules, each waiting for its module's owner (issue 31,
#: item 7): the importer, the module and the name. Nothing may be added here.
PRIVATE_IMPORTS_TO_FIX: set[tuple[str, str, str]] = set()


def _private_imports() -> set[tuple[str, str, str]]:
    """``(importer, module, name)`` of every ``from module import _name`` between package modules."""
    out = set()
    for path in sorted(PKG.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mri_n2n":
                continue
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    out.add((name, target, a.name))
    return out


def test_no_private_name_is_imported_from_another_module():
    """A helper two modules share is public (documented, in ``__all__``) or lives where both can
    import it; ``from .x import _helper`` hides a dependency the helper's owner cannot see."""
    found = _private_imports()
    new = sorted(found - PRIVATE_IMPORTS_TO_FIX)
    assert not new, f"private names imported across modules: {new}"


def test_no_module_over_800_lines():
    lines = {str(f.relative_to(PKG)): len(f.read_text().splitlines()) for f in PKG.rglob("*.py")}
    long = {k: n for k, n in lines.items() if n > 800}
    assert not long


def test_public_api():
    from mri_n2n import Config, MRIUndersampling, Reconstructor, SpectralSampling, load_volume  # noqa: F401

    assert len(set(mri_n2n.__all__)) == len(mri_n2n.__all__)
    for name in mri_n2n.__all__:
        obj = getattr(mri_n2n, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"mri_n2n.{name} has no docstring"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_one_command_lists_its_subcommands():
    r = _run("-m", "mri_n2n", "--help")
    assert r.returncode == 0
    for cmd in ("train", "reconstruct", "denoise", "evaluate", "bench", "prepare-ixi"):
        assert cmd in r.stdout


@pytest.mark.parametrize("module", ["train", "reconstruct", "denoise", "evaluate", "bench"])
def test_python_m_forms_still_work(module):
    r = _run("-m", f"mri_n2n.{module}", "--help")
    assert r.returncode == 0 and "usage:" in r.stdout


def test_every_train_flag_has_help():
    from mri_n2n.cli.train import build_parser

    p = build_parser()
    missing = [a.option_strings for a in p._actions if a.option_strings and not (a.help or "").strip()]
    assert not missing


def test_console_script_is_registered():
    text = (PKG.parent / "pyproject.toml").read_text()
    assert 'mri-n2n = "mri_n2n.cli:main"' in text
