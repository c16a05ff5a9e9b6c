"""MkDocs hooks of jembench's documentation site (``hooks:`` in mkdocs.yml).

The figures the pages show live in ``results/`` beside the records they were drawn from (``make figures`` redraws
them there and tests/test_figures.py checks them there), outside ``docs/``. A page links them by their path
relative to the page — ``../results/runs/demo/jem/calibration_reliability.png`` from ``docs/results.md`` — so the
same Markdown reads right on a code host and in the site. These hooks make that link work in the site too:

* ``on_files`` adds every repository file outside ``docs/`` that a page links to (images and other non-Markdown
  files; Markdown files outside ``docs/`` are included into pages with ``--8<--`` snippets instead) to the site
  at its repository path;
* ``on_page_markdown`` rewrites such links to that path, relative to the page.

A link to a repository file that does not exist is left as it is, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

#: a Markdown link or image target: ``](target)`` or ``](target "title")``
LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<rest>[^)]*)\)")


def _outside_targets(page_uri: str, markdown: str, docs: Path, repo: Path) -> dict[str, str]:
    """``{link target as written: repository path}`` for the page's relative links that leave ``docs/`` and name
    an existing non-Markdown file of the repository."""
    found = {}
    for m in LINK.finditer(markdown):
        target = m.group("target")
        if "://" in target or target.startswith(("/", "mailto:")) or target.endswith(".md"):
            continue
        path = (docs / posixpath.dirname(page_uri) / target).resolve()
        if path.is_file() and not path.is_relative_to(docs) and path.is_relative_to(repo):
            found[target] = path.relative_to(repo).as_posix()
    return found


def _roots(config: Any) -> tuple[Path, Path]:
    docs = Path(config["docs_dir"]).resolve()
    return docs, Path(config["config_file_path"]).resolve().parent


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    docs, repo = _roots(config)
    wanted: set[str] = set()
    for f in files.documentation_pages():
        wanted |= set(_outside_targets(f.src_uri, Path(f.abs_src_path).read_text(encoding="utf-8"), docs,
                                       repo).values())
    for uri in sorted(wanted):
        if files.get_file_from_path(uri) is None:
            files.append(File(uri, str(repo), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    docs, repo = _roots(config)
    targets = _outside_targets(page.file.src_uri, markdown, docs, repo)
    if not targets:
        return markdown
    here = posixpath.dirname(page.file.src_uri) or "."

    def relink(m: re.Match) -> str:
        uri = targets.get(m.group("target"))
        if uri is None:
            return m.group(0)
        return f"]({posixpath.relpath(uri, here)}{m.group('rest')})"

    return LINK.sub(relink, markdown)
