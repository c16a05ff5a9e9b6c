"""Neutralise untrusted text for each output format: Markdown, HTML, LaTeX, CSV and the terminal.

Text that comes from a checkpoint (run name), a dataset folder (path, class folder names), a record (model name,
dataset, protocol name, figure names) or a protocol file is untrusted: a hostile or careless author can put markup,
spreadsheet formulas, terminal control sequences or newlines in it. Every renderer passes such text through the
function of its format here, and only here, so the rules live in one place:

* :func:`one_line` — the base of all of them: C0/C1 control characters (ESC, NUL, BEL, CSI U+009B, ...) become a
  visible ``\\xNN`` escape, line and paragraph breaks (``\\n``, ``\\r``, U+2028, ...) a space, and the Unicode
  bidi overrides ("Trojan Source", U+202A–U+202E, U+2066–U+2069) a visible ``\\u202e`` (and so do lone surrogates,
  the undecodable bytes of a file name, ``\\udcff``, which no terminal encoding can print); so a cell stays one line
  and nothing can move the cursor, recolour the screen or reorder what a reader sees.
* :func:`markdown` — for GitHub-flavoured Markdown table cells and headings: ``<``, ``>`` and ``&`` become HTML
  entities (Markdown renderers pass inline HTML through, so ``<img onerror=...>`` would execute), the inline
  markup characters (``\\ ` * _ [ ] ~ |``) are backslash-escaped (CommonMark: any ASCII punctuation may be), so a
  name can neither make a link, an image, emphasis nor a new table column.
* :func:`html` — :func:`html.escape` (quotes too: safe in attributes) on the one-line text.
* :func:`latex` — the LaTeX specials escaped (``\\`` ``{`` ``}`` ``$`` ``&`` ``#`` ``^`` ``_`` ``~`` ``%``; so
  neither ``\\input`` nor TeX's ``^^5c`` notation reaches TeX), and the few Unicode symbols the tables use
  mapped to math-mode commands.
* :func:`csv_cell` — OWASP's CSV-injection rule: a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or
  carriage return is prefixed with ``'``, so a spreadsheet shows it as text instead of evaluating a formula
  (numbers are written as numbers and are not touched).
* :func:`terminal` — for text printed to a console: :func:`one_line` per line, line breaks kept.
  :class:`TerminalSafeStream` applies it to everything the CLI prints (stdout and stderr), keeping only ``\\n``,
  ``\\r`` and ``\\t``, so a run name with ``ESC ]0;...`` cannot retitle or clear the user's terminal.

Legitimate text stays readable: ``CIFAR-10 (JPEG q75 copy)``, ``max_y p(y|x)``, ``ε=8/255 ↑`` or ``Tiny
ImageNet 32 (CIFAR-100 stand-in)`` render exactly as written in every format (tested in
``tests/test_hostile_inputs.py``).

Hand-written on purpose: markupsafe / bleach cover HTML only; no maintained library covers the Markdown-cell,
LaTeX, CSV-formula and terminal cases together, and each rule here is a few lines that the tests pin down.
"""

from __future__ import annotations

import html as _html
import io
import re
from typing import Any, Callable, TextIO

# C0 controls except tab/newline/CR (handled separately), DEL, C1 controls (U+0080-U+009F: CSI U+009B, OSC U+009D
# ... are interpreted by some terminals).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BREAKS = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069\ud800-\udfff]")  # and lone surrogates (undecodable file names)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _controls(text: str) -> str:
    """Control characters and bidi overrides shown as visible escapes (``\\x1b``, ``\\u202e``)."""
    return _BIDI.sub(_visible, _CONTROL.sub(_visible, text))


def one_line(text: Any) -> str:
    """``text`` as one inert line: line breaks → a space, tabs → a space, controls → visible escapes."""
    return _controls(_BREAKS.sub(" ", str(text)).replace("\t", " "))


# ``_`` between two letters or digits (``jem_digits``, ``max_y``) cannot open or close emphasis (CommonMark's
# flanking rules; python-markdown agrees), so it stays as written there and is escaped everywhere else.
_MD_SPECIALS = re.compile(r"([\\`*\[\]~|]|(?<![^\W_])_|_(?![^\W_]))")


def markdown(text: Any) -> str:
    """``text`` for a Markdown table cell, heading or list item: one line, no HTML, no inline markup."""
    s = one_line(text)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIALS.sub(r"\\\1", s)


def html(text: Any) -> str:
    """``text`` for HTML element content or a quoted attribute value: one line, every markup character escaped."""
    return _html.escape(one_line(text), quote=True)


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}"}
_LATEX_SYMBOLS = {"↑": r"$\uparrow$", "↓": r"$\downarrow$", "∞": r"$_\infty$", "ε": r"$\epsilon$",
                  "α": r"$\alpha$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "§": r"\S{}", "¶": r"\P{}",
                  "°": r"$^\circ$", "ᵉ": r"$^{e}$", "ⁱ": r"$^{i}$", "·": r"$\cdot$", "|": r"$|$", "−": r"$-$",
                  "—": "---", "–": "--", "∂": r"$\partial$", "×": r"$\times$", "±": r"$\pm$",
                  "≈": r"$\approx$", "⚠": r"$^{!}$"}


def latex(text: Any) -> str:
    """``text`` for LaTeX body text: one line (a blank line would end a ``\\caption``), specials escaped, the
    tables' Unicode symbols as math-mode commands."""
    return "".join(_LATEX_ESCAPES.get(ch) or _LATEX_SYMBOLS.get(ch) or ch for ch in one_line(text))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # + full-width forms


def csv_cell(value: Any) -> Any:
    """A CSV cell: text made one line and, when a spreadsheet would read it as a formula, prefixed with ``'``;
    numbers, booleans and None unchanged."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        value = "'" + value
    return one_line(value)


def terminal(text: Any) -> str:
    """``text`` for a console: line breaks kept (as ``\\n``), every other control character visible."""
    return "\n".join(one_line(line) for line in _BREAKS.split(str(text)))


def deep(obj: Any, fn: Callable[[str], str]) -> Any:
    """A copy of a JSON-like structure with ``fn`` applied to every string (keys included)."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {deep(k, fn): deep(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(deep(v, fn) for v in obj)
    return obj


_STREAM_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class TerminalSafeStream(io.TextIOBase):
    """A text stream wrapper that shows every control character except ``\\n``, ``\\r`` and ``\\t`` as a
    visible escape before it reaches the wrapped stream (the CLI's stdout and stderr). ``\\r`` stays for the
    progress bars (tqdm redraws a single bar with it; it needs no escape sequences)."""

    def __init__(self, stream: TextIO):
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_STREAM_CONTROL.sub(_visible, text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def fileno(self) -> int:
        return int(self._stream.fileno())

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str | None:  # type: ignore[override]  # io.TextIOBase declares it a plain str attribute
        return getattr(self._stream, "encoding", "utf-8")  # the wrapped stream's, None included (a pipe's may be)

    @property
    def errors(self) -> str | None:  # type: ignore[override]  # io.TextIOBase declares it a plain attribute
        return getattr(self._stream, "errors", "strict")

    @property
    def wrapped(self) -> TextIO:
        return self._stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
