"""MkDocs hooks: serve the repository's ``notebooks/`` folder inside the documentation site.

The notebooks stay where they are (``notebooks/*.ipynb`` and ``notebooks/figures/``, outside
``docs/``); this hook adds them to the site under ``notebooks/`` so that ``mkdocs-jupyter``
renders them (stored outputs, never executed) and the pages can show the figures.

The pages under ``docs/`` link to them with paths relative to the repository
(``../notebooks/figures/x.png`` from ``docs/x.md``), which is what GitHub resolves; in the site
the folder sits one level lower (``docs/`` is the site's root), so those links are rewritten
to the site's layout before the Markdown is rendered. A link that points nowhere is left
alone and fails ``mkdocs build --strict`` as usual.

The docstrings cross-reference with Sphinx roles (``:func:`~mri_n2n.fft.fft2c```), which
Markdown shows as text followed by code; the API pages show them as code instead, linked to
the object's entry when the name is a full ``mri_n2n.`` path that the reference documents
(an optional autoref: a name it does not document stays plain code, never a warning).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

#: Folder of the repository (relative to ``mkdocs.yml``) that the site serves at the same path.
MOUNTED = "notebooks"
#: File kinds served from it: the notebooks and the figures they and the pages show.
SUFFIXES = {".ipynb", ".png", ".jpg", ".jpeg", ".svg", ".gif"}
_LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?\))")
_ROLE = re.compile(r":(?:mod|class|func|meth|data|attr|exc|obj):<code>(~?)([^<]+)</code>")


def _repo_root(config) -> Path:
    return Path(config["config_file_path"]).resolve().parent


@event_priority(100)  # before mkdocs-jupyter's on_files turns the notebooks into pages
def on_files(files: Files, config) -> Files:
    root = _repo_root(config)
    for path in sorted((root / MOUNTED).rglob("*")):
        if path.suffix.lower() not in SUFFIXES or ".ipynb_checkpoints" in path.parts:
            continue
        rel = path.relative_to(root).as_posix()
        if files.get_file_from_path(rel) is None:
            files.append(File(rel, str(root), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    page_dir = posixpath.dirname(page.file.src_uri)  # relative to docs/
    docs = Path(config["docs_dir"]).resolve().relative_to(_repo_root(config)).as_posix()

    def rewrite(m: re.Match) -> str:
        target = m.group(2)
        if "://" in target or target.startswith(("/", "mailto:")):
            return m.group(0)
        in_repo = posixpath.normpath(posixpath.join(docs, page_dir, target))
        if not in_repo.startswith(MOUNTED + "/") or files.get_file_from_path(in_repo) is None:
            return m.group(0)
        return m.group(1) + posixpath.relpath(in_repo, page_dir or ".") + m.group(3)

    return _LINK.sub(rewrite, markdown)


def on_page_content(html: str, page, config, files: Files) -> str:
    def role(m: re.Match) -> str:
        name = m.group(2)
        title = f"<code>{name.rsplit('.', 1)[-1] if m.group(1) else name}</code>"
        if not name.startswith("mri_n2n."):
            return title
        return f'<autoref identifier="{name}" optional>{title}</autoref>'

    return _ROLE.sub(role, html)
