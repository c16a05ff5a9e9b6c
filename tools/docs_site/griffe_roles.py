"""Griffe extension of the documentation site: jembench's reST-flavoured docstrings as Markdown.

jembench's docstrings are written for ``help()`` and Sphinx-style readers: Python objects are named with roles
(``:class:`jembench.errors.JembenchError```, ``:func:`parse```, ``:mod:`jembench.untrusted```) and free text
names placeholders in angle brackets (``runs/<method>-<dataset>``). Rendered as Markdown by mkdocstrings, a role
would print its ``:class:`` prefix and a placeholder would vanish as an unknown HTML tag. This extension rewrites
each docstring once, after griffe has built the object tree and before mkdocstrings parses it:

* a ``<`` that would open an HTML tag, outside code, becomes ``&lt;`` (a placeholder stays text);
* a docstring that is a template the module fills at import time (``evaluate`` and ``train`` list their keywords
  from the option declarations: a line ``{keywords}``) is read from the imported object instead, so the site shows
  what ``help()`` shows;
* doctest lines (``>>> ...`` and their ``... `` continuations) become a fenced ``pycon`` block;
* a reST literal-block marker (``text::`` before an indented block) becomes ``text:``;
* a role becomes an *optional* cross-reference of mkdocs-autorefs: a link when the site documents that object
  and plain code otherwise, so a role naming an internal helper never breaks the strict build
  (``~a.b.C`` shows ``C``; a name without a dot is looked up in the docstring's own module first).

No library does this: mkdocstrings' docstring parsers (Google, NumPy, Sphinx) read field lists such as
``:param x:``, not inline roles, and griffe-sphinx reads ``#:`` comments. Hence these few lines.
"""

from __future__ import annotations

import html
import importlib
import inspect
import re
from typing import Any

try:
    from griffe import Extension, Object
except ImportError:  # the `docs` extra is not installed: the text functions stay importable (tests/test_docs.py)
    Extension, Object = object, Any

#: a Sphinx role naming a Python object; the target may start with ``~`` (show the last component only)
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const):`(?P<target>[^`]+)`")
#: an inline code span of Markdown / reST (double backticks first, so ``a`b`` stays one span)
CODE = re.compile(r"``.+?``|`[^`\n]+`", re.S)


#: a docstring template's placeholder line, filled when its module is imported
PLACEHOLDER = re.compile(r"^\s*\{\w+\}\s*$", re.M)


def _runtime_docstring(module: str, qualname: str) -> str:
    """The docstring of the imported object (for templates filled at import time)."""
    value = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return inspect.getdoc(value) or ""


#: ``<`` opening something a Markdown renderer would take for an HTML tag (``<suite>``, ``</x>``, ``<!--``)
TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


def _escape_inline(line: str) -> str:
    """``<`` that would open an HTML tag, as ``&lt;``, outside code spans and roles."""
    out, last = [], 0
    for m in re.finditer(rf"{ROLE.pattern}|{CODE.pattern}", line):
        out.append(TAG_START.sub("&lt;", line[last:m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(TAG_START.sub("&lt;", line[last:]))
    return "".join(out)


def _escape_text(text: str) -> str:
    """Placeholders in angle brackets kept as text, except in code blocks (fenced, or indented by four spaces
    after a blank line), where Markdown shows them as they are."""
    out, fenced, indented, blank = [], False, False, True
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            starts_block = line.startswith("    ") and (blank or indented)
            indented = starts_block or (indented and not line.strip())
            if not indented:
                line = _escape_inline(line)
        out.append(line)
        blank = not line.strip()
    return "\n".join(out)


def _reference(target: str, module: str) -> str:
    """An optional autorefs cross-reference to ``target``: a link if the site documents it, else its code."""
    target = target.strip()
    shown = target
    if target.startswith("~"):
        target = target[1:]
        shown = target.rsplit(".", 1)[-1]
    if target.endswith("()"):
        target = target[:-2]
    identifier = target if "." in target else f"{module}.{target}"
    return (f'<autoref identifier="{html.escape(identifier)}" optional>'
            f"<code>{html.escape(shown)}</code></autoref>")


#: a run of doctest lines (with their indentation)
DOCTEST = re.compile(r"^(?P<indent>[ \t]*)>>> .*(?:\n(?P=indent)(?:>>>|\.\.\.) .*)*", re.M)


def markdown_docstring(text: str, module: str) -> str:
    """A docstring's text ready for Markdown (see the module docstring)."""
    text = DOCTEST.sub(lambda m: f"\n{m['indent']}```pycon\n{m[0]}\n{m['indent']}```\n", text)
    text = re.sub(r"(\S)::$", r"\1:", text, flags=re.M)
    return ROLE.sub(lambda m: _reference(m.group("target"), module), _escape_text(text))


class RolesToMarkdown(Extension):
    """Rewrite every docstring of the loaded packages with :func:`markdown_docstring`."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is None or obj.is_alias:
            return
        if PLACEHOLDER.search(obj.docstring.value):
            qualname = obj.path[len(obj.module.path) + 1:]
            obj.docstring.value = _runtime_docstring(obj.module.path, qualname)
        obj.docstring.value = markdown_docstring(obj.docstring.value, obj.module.path)
