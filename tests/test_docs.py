"""The documentation site's structure, checked fast (``make docs`` builds the site itself with ``--strict``, which
takes longer; .ci/run runs it).

* every page under docs/ is in mkdocs.yml's nav, and every nav entry is a page;
* the README's links reach existing files, and its links into docs/ reach existing pages and headings;
* every name jembench exports is documented in the API reference, from the module that defines it;
* every repository file a page includes (``--8<--``) exists, and no list or table of a page follows a text line
  directly (a code host renders it; the site's Markdown would fold it into the paragraph);
* the README stays the short version: its first block is the two commands, and it stays short;
* the docstring rewriting of the API reference (tools/docs_site/griffe_roles.py) keeps placeholders and code.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import markdown
import pytest
import yaml

import jembench

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
README = REPO / "README.md"
#: Markdown links and images: ``[text](target)`` / ``![alt](target "title")``
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
#: the README's length limit (words): what it is, install, the two commands, one example per use, links
README_MAX_WORDS = 1200


class _IgnoreTags(yaml.SafeLoader):
    """mkdocs.yml's ``!relative`` (and any other) tags read as plain values."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def _mkdocs() -> dict:
    return yaml.load((REPO / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_IgnoreTags)


def _nav_pages(nav) -> list[str]:
    """The page paths in a nav tree (lists of ``{title: path or subtree}`` or bare paths)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


def _anchors(page: Path) -> set[str]:
    """The heading ids of a page as the site's ``toc`` extension makes them."""
    md = markdown.Markdown(extensions=["toc", "tables", "attr_list", "fenced_code"])
    return set(re.findall(r'<h[1-6] id="([^"]+)"', md.convert(page.read_text(encoding="utf-8"))))


def _links(text: str) -> list[str]:
    """Relative link targets of a Markdown text, outside fenced code."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return [m["target"] for m in LINK.finditer(text) if not re.match(r"[a-z]+:", m["target"])]


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    config = _mkdocs()
    assert config["docs_dir"] == "docs" and config["strict"] is True
    nav = _nav_pages(config["nav"])
    assert len(nav) == len(set(nav)), "a page is listed twice in mkdocs.yml's nav"
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages, (f"not in the nav: {sorted(set(pages) - set(nav))}; "
                                  f"in the nav but missing: {sorted(set(nav) - set(pages))}")
    assert "parity.md" in nav and "index.md" in nav


def test_readme_links_reach_files_and_docs_links_reach_pages_and_headings():
    links = _links(README.read_text(encoding="utf-8"))
    into_docs = [t for t in links if t.startswith("docs/")]
    assert len(into_docs) >= 5, "the README points to the documentation pages"
    for target in links:
        path, _, anchor = target.partition("#")
        file = REPO / path if path else README
        assert file.exists(), f"README links to {target}, which does not exist"
        if anchor:
            assert file.suffix == ".md" and anchor in _anchors(file), f"README links to {target}: no such heading"
    nav = set(_nav_pages(_mkdocs()["nav"]))
    for target in into_docs:
        page = target.partition("#")[0]
        if page.endswith(".md"):
            assert page.removeprefix("docs/") in nav, f"README links to {target}, which is not in the site's nav"


def test_docs_pages_link_to_existing_files_and_headings():
    """What ``--strict`` checks in the build, fast: relative links between pages and to repository files."""
    for page in DOCS.rglob("*.md"):
        for target in _links(page.read_text(encoding="utf-8")):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"
            if anchor and file.suffix == ".md" and file.is_relative_to(DOCS):
                assert anchor in _anchors(file) or anchor.startswith("jembench."), \
                    f"{page.relative_to(REPO)} links to {target}: no such heading"


def test_snippet_includes_name_existing_files():
    for page in DOCS.rglob("*.md"):
        for included in re.findall(r'^--8<-- "([^"]+)"', page.read_text(encoding="utf-8"), flags=re.M):
            assert (REPO / included).is_file(), f"{page.relative_to(REPO)} includes {included}, which does not exist"


def _glued_blocks(text: str) -> list[str]:
    """Lists and tables that start right below a text line (no blank line between), outside fenced code."""
    found, fenced, lines = [], False, text.split("\n")
    for prev, line in zip(lines, lines[1:]):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or not re.match(r"([-*+]|\d+\.) |\|", line) or not prev.strip():
            continue
        if not re.match(r"\s*([-*+]|\d+\.) |\||  |#|<!--|>", prev):
            found.append(line)
    return found


def test_lists_and_tables_of_the_pages_start_after_a_blank_line():
    assert _glued_blocks("text\n- item") == ["- item"] and _glued_blocks("text\n| a |") == ["| a |"]
    assert _glued_blocks("text\n\n- item\n- item\n  more\n\n| a |\n| - |") == []
    included = {REPO / p for page in DOCS.rglob("*.md")
                for p in re.findall(r'^--8<-- "([^"]+)"', page.read_text(encoding="utf-8"), flags=re.M)}
    for path in [*DOCS.rglob("*.md"), *included]:
        glued = _glued_blocks(path.read_text(encoding="utf-8"))
        assert not glued, f"{path.relative_to(REPO)}: add a blank line above {glued[0][:60]!r}"


def test_the_api_reference_documents_every_public_name_from_its_module():
    documented = set()
    for page in (DOCS / "api").rglob("*.md"):
        documented |= set(re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), flags=re.M))
    for name in jembench.__all__:
        module, attr = jembench._EXPORTS[name]
        assert f"{module}.{attr}" in documented, f"jembench.{name} ({module}.{attr}) is not in docs/api/"
    for target in documented:  # and every documented object exists (the build would fail; this names it)
        module, _, attr = target.rpartition(".")
        try:
            obj = importlib.import_module(target)
        except ImportError:
            obj = getattr(importlib.import_module(module), attr, None)
        assert obj is not None, f"docs/api documents {target}, which does not exist"


def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == ["make demo", "make test"]
    assert text.index("```bash") < text.index("\n## "), "the two commands come first"
    words = len(re.sub(r"[|`*#\-]+", " ", text).split())
    assert words <= README_MAX_WORDS, f"README.md has {words} words; the rest belongs in docs/ (the site)"


def _roles():
    spec = importlib.util.spec_from_file_location("griffe_roles", REPO / "tools" / "docs_site" / "griffe_roles.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.mark.parametrize("text,expected", [
    ("default runs/<method>-<dataset>", "default runs/&lt;method>-&lt;dataset>"),
    ("keys ``auroc/<set>/<score>`` stay", "keys ``auroc/<set>/<score>`` stay"),
    ("a -> b and 1 < 2", "a -> b and 1 < 2"),
    ("Shape::\n\n    {\"a\": <b>}  # code\n\nafter <c>", "Shape:\n\n    {\"a\": <b>}  # code\n\nafter &lt;c>"),
    ("see :class:`~jembench.errors.JembenchError`",
     'see <autoref identifier="jembench.errors.JembenchError" optional><code>JembenchError</code></autoref>'),
    ("use :func:`parse`", 'use <autoref identifier="jembench.metric_keys.parse" optional><code>parse</code></autoref>'),
    (">>> x = 1\n>>> x", "\n```pycon\n>>> x = 1\n>>> x\n```\n"),
])
def test_docstrings_become_markdown_that_keeps_placeholders_and_code(text, expected):
    assert _roles().markdown_docstring(text, "jembench.metric_keys") == expected
