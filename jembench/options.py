"""Command-line options and Python keywords generated from one settings class, so the CLI equals the API.

An option of ``jembench eval`` or ``jembench train`` is declared once, as a field of a settings class
(:mod:`jembench.schema`: :class:`jembench.eval_options.EvalOptions`,
:class:`jembench.reference_models.config.TrainConfig`) with its type, default, range, choices and help text. From
that one declaration:

* :func:`add_arguments` makes the argparse option — ``--batch-size`` for ``batch_size``; nested settings get
  their parent's name in front (``TrainConfig.sgld.n_steps`` → ``--sgld-steps``, via the field's ``flag``); the
  type, ``choices``, ``nargs`` and on/off form (``--compile``; ``--no-download`` for a default-True field;
  ``--augment/--no-augment`` when the default comes from a preset) follow from the field;
* :func:`keyword_changes` maps the Python keywords — the same names with ``_`` (``batch_size=``,
  ``sgld_steps=``) — to field paths, and :func:`argument_changes` does the same for parsed arguments;
* :func:`signature` and :func:`keyword_doc` give the API function its signature and keyword documentation.

Values are checked by :func:`jembench.schema.resolve` in both cases (type, range, choices), before torch is
imported, and a bad one is a one-line :class:`~jembench.errors.JembenchError` spelled as the user wrote it
(``--batch-size 0 must be >= 1`` on the command line, ``batch_size=0 must be >= 1`` from Python).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import schema
from .errors import JembenchError

#: the parser default of every option whose real default comes from elsewhere (a training preset)
FROM_PRESET = None


@dataclass(frozen=True)
class Option:
    """One option: the field at dotted ``path`` of a settings class, called ``name`` as a keyword."""

    path: str  # "sgld.n_steps"
    name: str  # "sgld_steps": the Python keyword; the flag is --sgld-steps
    kind: Any  # the field's type hint
    field: dataclasses.Field

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def cli_flag(self, from_preset: bool = False) -> str:
        """How the command line spells it: ``--x``, ``--no-x`` (an on/off option that is on by default) or
        ``--x/--no-x`` (on/off from a preset)."""
        kind, _ = schema.optional(self.kind)
        if kind is not bool or "action" in self.arg:
            return self.flag
        if from_preset:
            return f"{self.flag}/--no-{self.flag[2:]}"
        return f"--no-{self.flag[2:]}" if self.default else self.flag

    @property
    def default(self) -> Any:
        return schema._default(self.field)

    @property
    def help(self) -> str:
        return self.field.metadata.get("help", "")

    @property
    def arg(self) -> dict[str, Any]:
        return dict(self.field.metadata.get("arg") or {})


def options(cls: type, skip: tuple[str, ...] = ()) -> list[Option]:
    """Every option of the settings class ``cls`` in field order, nested settings flattened (their fields named
    ``<parent>_<field flag or name>``); fields named in ``skip`` and those a nested field ``omit`` s are left out."""
    return _options(cls, "", "", skip, ())


def _options(cls: type, path: str, name: str, skip: tuple[str, ...], omit: tuple[str, ...]) -> list[Option]:
    hints = typing.get_type_hints(cls)
    out: list[Option] = []
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name in omit:
            continue
        own = f.metadata.get("flag") or f.name
        kind, _ = schema.optional(hints[f.name])
        if schema.is_settings(kind):
            out += _options(kind, f"{path}{f.name}.", f"{name}{own}_", (), tuple(f.metadata.get("omit", ())))
        else:
            out.append(Option(path + f.name, name + own, hints[f.name], f))
    return out


# ------------------------------------------------------------------------------------------ the parser
def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                  skip: tuple[str, ...] = (), from_preset: bool = False,
                  groups: dict[str, argparse._ArgumentGroup] | None = None) -> list[Option]:
    """Add one argparse option per option of ``cls`` (see the module docstring); returns the options.

    ``from_preset``: every default is :data:`FROM_PRESET` (``None``, shown as "from the preset") and on/off
    fields get both ``--x`` and ``--no-x``. Otherwise the parser's defaults are the fields' own. A field's
    ``arg={"group": TITLE}`` puts it into that argument group (created once, kept in ``groups``)."""
    groups = {} if groups is None else groups
    made = options(cls, skip)
    for opt in made:
        kwargs = opt.arg
        title = kwargs.pop("group", None)
        target = parser
        if title is not None:
            if title not in groups:
                groups[title] = parser.add_argument_group(title)
            target = groups[title]
        flags, kwargs = _argparse_form(opt, kwargs, from_preset)
        target.add_argument(*flags, dest=opt.name, **kwargs)
    return made


def _argparse_form(opt: Option, given: dict[str, Any], from_preset: bool) -> tuple[list[str], dict[str, Any]]:
    kind, _ = schema.optional(opt.kind)
    default = FROM_PRESET if from_preset else opt.default
    kwargs: dict[str, Any] = {"help": opt.help, "default": default}
    flags = [opt.flag]
    if callable(given.get("choices")):
        given["choices"] = given["choices"]()
    if "action" in given or "type" in given or "nargs" in given:
        pass  # the field says how it is given on the command line
    elif kind is bool:
        if from_preset:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif opt.default:
            flags = ["--no-" + opt.flag[2:]]
            kwargs["action"] = "store_false"
        else:
            kwargs["action"] = "store_true"
    elif typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        kwargs["type"] = _parser_type(item)
        length = opt.field.metadata.get("length")
        kwargs["nargs"] = length if length else "+" if opt.field.metadata.get("nonempty") else "*"
    else:
        kwargs["type"] = _parser_type(kind)
        if opt.field.metadata.get("choices") is not None:
            kwargs["choices"] = opt.field.metadata["choices"]
    kwargs.update(given)
    return flags, kwargs


def _parser_type(kind: Any) -> Callable[[str], Any]:
    if kind in (int, float):
        return kind
    if kind in (str, Path):
        return str
    raise TypeError(f"no command-line form for {kind!r}: give the field arg={{'type': ...}}")


def cli_spelling(opts: list[Option]) -> Callable[[str, Any], str]:
    """How error messages spell a field path and its value on the command line: ``--sgld-steps -1``."""
    flags = {o.path: o.flag for o in opts}

    def spell(key: str, value: Any) -> str:
        base, _, index = key.partition("[")
        flag = flags.get(base)
        if flag is None:
            return schema.toml_spelling(key, value)
        shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        return f"{flag} {shown}" + (f" (value {int(index[:-1]) + 1})" if index else "")

    return spell


def api_spelling(opts: list[Option]) -> Callable[[str, Any], str]:
    """How error messages spell a field path and its value as a Python keyword: ``sgld_steps=-1``."""
    names = {o.path: o.name for o in opts}

    def spell(key: str, value: Any) -> str:
        base, sep, index = key.partition("[")
        name = names.get(base)
        return schema.toml_spelling(key, value) if name is None else f"{name}{sep}{index}={_short(value)}"

    return spell


def _short(value: Any) -> str:
    text = repr(value) if not hasattr(value, "shape") else f"<{type(value).__name__} of shape {tuple(value.shape)}>"
    return text if len(text) <= 80 else text[:77] + "..."


def argument_changes(args: argparse.Namespace, opts: list[Option]) -> dict[str, Any]:
    """``{field path: value}`` of the parsed options that were given (not None)."""
    return {o.path: getattr(args, o.name) for o in opts if getattr(args, o.name, None) is not None}


# ------------------------------------------------------------------------------------------ the API
def keyword_changes(keywords: dict[str, Any], opts: list[Option], where: str) -> dict[str, Any]:
    """``{field path: value}`` of API ``keywords``; an unknown keyword is a :class:`JembenchError` naming it, the
    closest known ones and where the full list is."""
    by_name = {o.name: o for o in opts}
    changes = {}
    for name, value in keywords.items():
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise JembenchError(f"{where}: unknown keyword {name!r}{hint} (see help({where}) for every keyword)")
        changes[by_name[name].path] = value
    return changes


def signature(opts: list[Option], leading: list[inspect.Parameter], from_preset: bool = False,
              returns: Any = inspect.Signature.empty) -> inspect.Signature:
    """The API function's signature: ``leading`` parameters, then one keyword-only parameter per option with its
    default (``None`` = from the preset when ``from_preset``)."""
    params = list(leading) + [
        inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=None if from_preset else o.default,
                          annotation=o.kind) for o in opts]
    return inspect.Signature(params, return_annotation=returns)


def keyword_doc(opts: list[Option], from_preset: bool = False) -> str:
    """One list item per keyword: its name, its command-line flag, its help text and default (a bulleted list, so
    the documentation site renders it as one too)."""
    lines = []
    for o in opts:
        default = "from the preset" if from_preset else f"``{o.default!r}``"
        lines.append(f"    * ``{o.name}`` (``{o.cli_flag(from_preset)}``): {o.help or o.path} (default {default})")
    return "\n".join(lines)
