"""The README stays short and the documentation site stays whole (fast; no mkdocs run).

CI builds the site with ``mkdocs build --strict`` separately (``.ci/run``); these checks need
only the files: the README's length and its two commands, relative links in the README and in
``docs/`` (files and, for Markdown targets, heading anchors), and the navigation of
``mkdocs.yml`` covering every page and every notebook.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
NOTEBOOKS = ROOT / "notebooks"
QUICK_START = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[all]"'
    " && python -m mri_n2n.train --dataset mni152 --out runs/mni152"
)
TEST_COMMAND = "python -m pytest -q"

_FENCE = re.compile(r"^```.*?^```[^\n]*$", re.M | re.S)
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _markdown_files() -> list[Path]:
    return [README, *_pages()]


def _links(path: Path) -> list[str]:
    return _LINK.findall(_FENCE.sub("", path.read_text(encoding="utf-8")))


def _slugs(path: Path) -> set[str]:
    """Heading anchors as MkDocs (Python-Markdown's ``toc``) and GitHub write them."""
    out = set()
    for title in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        text = re.sub(r"`([^`]*)`", r"\1", title)
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).strip().lower()
        ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        out.add(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", ascii_text)).strip("-"))  # MkDocs
        out.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))  # GitHub
    return out


def _nav_entries() -> set[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, str):
            found.add(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(config["nav"])
    return found


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n < 150, f"README.md has {n} lines (limit 149): move detail into docs/"


def test_readme_has_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert QUICK_START in text, "README.md lost the quick-start command (--dataset mni152)"
    assert TEST_COMMAND in text, "README.md lost the test command CI runs"
    assert "mkdocs serve" in text, "README.md should say how to serve the documentation site"


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(path):
    broken = []
    for link in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I):  # http:, https:, mailto: ...
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in _slugs(file):
            broken.append(f"{link} (no heading #{anchor} in {file.relative_to(ROOT)})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"


def test_readme_links_to_the_docs():
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in _links(README)}
    for page in ("index.md", "getting-started.md", "results.md", "architecture.md", "api/index.md"):
        assert (DOCS / page).resolve() in linked, f"README.md does not link docs/{page}"


def test_every_docs_page_is_in_the_nav():
    nav = _nav_entries()
    missing = [p.relative_to(DOCS).as_posix() for p in _pages() if p.relative_to(DOCS).as_posix() not in nav]
    assert not missing, f"docs pages missing from mkdocs.yml nav: {missing}"


def test_every_notebook_is_in_the_nav():
    nav = _nav_entries()
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert notebooks
    missing = [p.name for p in notebooks if f"notebooks/{p.name}" not in nav]
    assert not missing, f"notebooks missing from mkdocs.yml nav: {missing}"


def test_nav_names_only_existing_files():
    for entry in _nav_entries():
        if re.match(r"^[a-z][a-z0-9+.-]*:", entry, re.I):
            continue
        # notebooks/ is served from the repository root by mkdocs_hooks.py, the rest from docs/
        base = ROOT if entry.startswith("notebooks/") else DOCS
        assert (base / entry).is_file(), f"mkdocs.yml nav names a missing file: {entry}"


def test_ci_builds_the_site_strictly():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "mkdocs build --strict" in ci, ".ci/run must build the documentation site with --strict"
    assert ci.index("mkdocs build --strict") < ci.index(TEST_COMMAND), "the site builds before the tests"


def test_docs_extra_is_in_all():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    names = {re.split(r"[<>=\[ ]", req, maxsplit=1)[0] for req in extras["docs"]}
    assert {"mkdocs", "mkdocs-material", "mkdocstrings", "mkdocs-jupyter"} <= names
    assert "docs" in extras["all"][0], "the all extra must include docs (CI installs .[all])"


def test_every_module_is_in_the_api_reference():
    """A new module gets its page in the API reference (mkdocstrings ``::: mri_n2n.x``)."""
    api = "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    listed = set(re.findall(r"^::: (mri_n2n[\w.]*)", api, flags=re.M))
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "mri_n2n").rglob("*.py")
        if not p.name.startswith("_") and p.parent.name != "__pycache__"
    }
    missing = sorted(m for m in modules if m not in listed)
    assert missing == [], f"not in docs/api: {missing}"
