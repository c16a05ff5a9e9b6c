"""Typed settings from TOML tables: a frozen dataclass whose fields carry their type, default and valid range.

A settings class (a suite's protocol, :class:`jembench.sampling.SGLDConfig`, ...) is a frozen dataclass whose
fields are declared with :func:`setting`::

    @dataclass(frozen=True)
    class CalibrationProtocol:
        n: int = setting(0, ge=0)                  # test images; 0 = all
        n_bins: int = setting(20, ge=1)
        input_noise: float = setting(0.0, ge=0)

:func:`resolve` turns a parsed TOML table into an instance, using the fields' type hints: ``bool``, ``int``,
``float`` (an integer is accepted), ``str``, ``tuple[T, ...]`` (a TOML list; the range applies to every item) and
nested settings dataclasses (a TOML sub-table, e.g. ``[sgld]``). Every field missing from the table takes its
default — the defaults live in the dataclass and nowhere else. Unknown keys, wrong types and out-of-range values
are one-line :class:`jembench.errors.JembenchError` s naming the key and the source::

    protocol suites/ood.toml: unknown key 'n_iin' (known: sets, scores, n_in, ...)
    protocol suites/ood.toml: n_in = -1 must be >= 0

A class may define ``validate(self)`` for checks across fields; it raises :class:`Invalid` with a message that
names the keys, and the message gets the same prefix. :func:`to_dict` is the inverse of :func:`resolve` (lists for
tuples, sub-tables for nested settings): the resolved settings as plain data, which is what a protocol's hash
covers.

The same fields are the options of the command line and the keywords of the Python API
(:mod:`jembench.options` generates both from them), so beyond TOML's types a field may also be ``X | None``
(``None`` = not given), a :class:`~pathlib.Path` (a string or path-like), or any value a ``convert`` callable
accepts; the messages then spell the key as the surface the value came from (``--batch-size 0``,
``batch_size=0``, ``batch_size = 0``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

from .errors import JembenchError

T = TypeVar("T")
_MISSING = dataclasses.MISSING


class Invalid(ValueError):
    """A value that passed the per-field checks but not a cross-field one (raised by ``validate``)."""


def setting(default: Any = _MISSING, *, factory: Callable[[], Any] | None = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None, choices: tuple | None = None,
            nonempty: bool = False, length: int | None = None, omit: tuple[str, ...] = (),
            convert: Callable[[Any], Any] | None = None, help: str = "", flag: str | None = None,
            arg: dict[str, Any] | None = None) -> Any:
    """A dataclass field with its default and checks: ``ge`` / ``gt`` / ``le`` / ``lt`` bounds and ``choices`` (for
    a tuple field: of every item), ``nonempty`` and ``length`` (tuples), ``convert`` (item → value, raising
    ``ValueError("must be ...")``, e.g. ``"8/255"`` → 0.0314) and, for a nested settings field, ``omit``: keys of
    the nested class that this table does not take (they keep the default's value). ``factory``: a default
    computed when an instance is made (e.g. read from the environment) instead of ``default``.

    For the command line (:mod:`jembench.options`): ``help`` is the option's help text, ``flag`` its spelling where
    it differs from the field's name (``n_steps`` → ``steps``; nested fields get their parent's name in front:
    ``--sgld-steps``) and ``arg`` extra :meth:`argparse.ArgumentParser.add_argument` keywords (``metavar``, or how
    a field of a type argparse cannot parse is given on the command line)."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "nonempty": nonempty, "length": length,
            "omit": tuple(omit), "convert": convert, "help": help, "flag": flag, "arg": dict(arg or {})}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def is_settings(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _default(field: dataclasses.Field) -> Any:
    if field.default is not _MISSING:
        return field.default
    if field.default_factory is not _MISSING:
        return field.default_factory()
    raise TypeError(f"settings field {field.name!r} needs a default")


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}


def optional(kind: Any) -> tuple[Any, bool]:
    """``(X, True)`` for a hint ``X | None``, else ``(kind, False)``."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) < len(typing.get_args(kind)):
            return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True
    return kind, False


def _describe(kind: Any) -> str:
    kind, _ = optional(kind)
    if typing.get_origin(kind) is tuple:
        return f"a list (each {_describe(typing.get_args(kind)[0])})"
    return "a table" if is_settings(kind) else _KIND_NAMES.get(kind, getattr(kind, "__name__", str(kind)))


def _number(bound: float) -> str:
    """A bound as people write it: 1, 0.5, 2**63."""
    if isinstance(bound, int) and bound >= 2**20 and bound & (bound - 1) == 0:
        return f"2**{bound.bit_length() - 1}"
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def _range_text(meta: Mapping[str, Any]) -> str | None:
    """``must be ...`` of the field's bounds: ``>= 0``, ``in [0, 1)``, ``> 0``."""
    def bound(inclusive: str, strict: str, closed: str, opened: str) -> tuple[str, float] | None:
        if meta.get(inclusive) is not None:
            return closed, meta[inclusive]
        return (opened, meta[strict]) if meta.get(strict) is not None else None

    low, high = bound("ge", "gt", "[", "("), bound("le", "lt", "]", ")")
    if low and high:
        return f"in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {_number(low[1])}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {_number(high[1])}"
    return None


def _in_range(value: Any, meta: Mapping[str, Any]) -> bool:
    checks = (("ge", lambda v, b: v >= b), ("gt", lambda v, b: v > b), ("le", lambda v, b: v <= b),
              ("lt", lambda v, b: v < b))
    return all(meta.get(name) is None or ok(value, meta[name]) for name, ok in checks)


def toml_spelling(key: str, value: Any) -> str:
    """How a TOML table (and :func:`resolve`'s messages by default) writes a key and its value."""
    return f"{key} = {value!r}"


class _Where:
    """What the messages start with (``where``) and how they spell a key and its value (``spell``)."""

    def __init__(self, where: str, spell: Callable[[str, Any], str] = toml_spelling):
        self.where, self.spell = where, spell

    def fail(self, key: str, value: Any, problem: str) -> JembenchError:
        return JembenchError(f"{self.where}: {self.spell(key, value)} {problem}")


def _scalar(value: Any, kind: Any, meta: Mapping[str, Any], key: str, at: _Where) -> Any:
    given = value  # as written, for the messages
    if meta.get("convert") is not None:
        try:
            value = meta["convert"](value)
        except (ValueError, TypeError, ZeroDivisionError) as exc:
            raise at.fail(key, given, str(exc)) from None
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise at.fail(key, given, "must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise at.fail(key, given, "must be a finite number")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise at.fail(key, given, "must be an integer")
    elif kind in (bool, str):
        if not isinstance(value, kind):
            raise at.fail(key, given, f"must be {_KIND_NAMES[kind]}")
    elif kind is Path:
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise at.fail(key, given, "must be a path (a non-empty string or path-like)")
        value = Path(os.fspath(value))
    else:
        raise TypeError(f"settings field {key!r}: unsupported type {kind!r}")
    if not _in_range(value, meta):
        raise at.fail(key, given, f"must be {_range_text(meta)}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise at.fail(key, given, f"must be one of {', '.join(map(repr, choices))}")
    return value


def _value(value: Any, kind: Any, meta: Mapping[str, Any], key: str, at: _Where, base: Any) -> Any:
    kind, may_be_none = optional(kind)
    if value is None and may_be_none:
        return None
    if is_settings(kind):
        if isinstance(value, kind):  # an instance is already resolved and checked
            return value
        if not isinstance(value, dict):
            raise at.fail(key, value, f"must be a table ([{key}])")
        return _resolve(kind, value, at, f"{key}.", base, meta.get("omit", ()))
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if not isinstance(value, (list, tuple)):
            raise at.fail(key, value, f"must be {_describe(kind)}")
        if meta.get("nonempty") and not value:
            raise JembenchError(f"{at.where}: {key} must be a non-empty list")
        if meta.get("length") is not None and len(value) != meta["length"]:
            raise at.fail(key, value, f"must be {meta['length']} values, not {len(value)}")
        return tuple(_scalar(v, item, meta, f"{key}[{i}]", at) for i, v in enumerate(value))
    return _scalar(value, kind, meta, key, at)


def _resolve(cls: type[T], table: dict[str, Any], at: _Where, prefix: str, base: Any, omit: tuple[str, ...]) -> T:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a settings dataclass")
    fields = [f for f in dataclasses.fields(cls) if f.name not in omit]
    names = [f.name for f in fields]
    for key in table:
        if key not in names:
            raise JembenchError(f"{at.where}: unknown key '{prefix}{key}' (known: {', '.join(names)})")
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        default = getattr(base, f.name) if base is not None else _default(f)
        if f.name in table:
            values[f.name] = _value(table[f.name], hints[f.name], f.metadata, prefix + f.name, at, default)
        else:
            values[f.name] = default
    try:
        obj = cls(**values)
        validate = getattr(obj, "validate", None)
        if validate is not None:
            validate()
    except Invalid as exc:
        raise JembenchError(f"{at.where}: {exc}") from None
    return obj


def resolve(cls: type[T], table: dict[str, Any], where: str, spell: Callable[[str, Any], str] = toml_spelling) -> T:
    """``table`` (a parsed TOML table) as an instance of the settings class ``cls``; every missing field takes
    its default. ``where`` starts every error message (e.g. ``"protocol suites/ood.toml"``); ``spell(key, value)``
    writes a key and its value in them (default ``key = value``)."""
    return _resolve(cls, table, _Where(where, spell), "", None, ())


def to_dict(obj: Any, omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings as plain data (tuples → lists, nested settings → dicts, paths → strings), in field order."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.name in omit:
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = to_dict(value, f.metadata.get("omit", ()))
        elif isinstance(value, tuple):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        elif isinstance(value, Path):
            value = str(value)
        out[f.name] = value
    return out


def nest(changes: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys (``{"sgld.n_steps": 40}``) as the nested table they stand for (``{"sgld": {"n_steps": 40}}``)."""
    table: dict[str, Any] = {}
    for key, value in changes.items():
        node = table
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return table


def replace(obj: T, changes: dict[str, Any], where: str = "settings",
            spell: Callable[[str, Any], str] = toml_spelling) -> T:
    """``obj`` with ``changes`` applied — keys may be dotted (``"sgld.n_steps"``) — and checked like a table."""
    return _resolve(type(obj), nest(changes), _Where(where, spell), "", obj, ())
