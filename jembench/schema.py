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
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, TypeVar

from .errors import JembenchError

T = TypeVar("T")
_MISSING = dataclasses.MISSING


class Invalid(ValueError):
    """A value that passed the per-field checks but not a cross-field one (raised by ``validate``)."""


def setting(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            choices: tuple | None = None, nonempty: bool = False, omit: tuple[str, ...] = (),
            convert: Callable[[Any], Any] | None = None, help: str = "") -> Any:
    """A dataclass field with its default and checks: ``ge`` / ``gt`` / ``le`` bounds and ``choices`` (for a
    tuple field: of every item), ``nonempty`` (tuples), ``convert`` (item → value, raising ``ValueError("must
    be ...")``, e.g. ``"8/255"`` → 0.0314) and, for a nested settings field, ``omit``: keys of the nested class
    that this table does not take (they keep the default's value)."""
    meta = {"ge": ge, "gt": gt, "le": le, "choices": choices, "nonempty": nonempty, "omit": tuple(omit),
            "convert": convert, "help": help}
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


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return f"a list (each {_describe(typing.get_args(kind)[0])})"
    return "a table" if is_settings(kind) else _KIND_NAMES.get(kind, getattr(kind, "__name__", str(kind)))


def _scalar(value: Any, kind: Any, meta: dict, key: str, where: str) -> Any:
    given = value  # as written, for the messages
    if meta.get("convert") is not None:
        try:
            value = meta["convert"](value)
        except (ValueError, TypeError, ZeroDivisionError) as exc:
            raise JembenchError(f"{where}: {key} = {value!r} {exc}") from None
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JembenchError(f"{where}: {key} = {value!r} must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise JembenchError(f"{where}: {key} = {value!r} must be a finite number")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise JembenchError(f"{where}: {key} = {value!r} must be an integer")
    elif kind in (bool, str):
        if not isinstance(value, kind):
            raise JembenchError(f"{where}: {key} = {value!r} must be {_KIND_NAMES[kind]}")
    else:
        raise TypeError(f"settings field {key!r}: unsupported type {kind!r}")
    bounds = (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"), ("le", lambda v, b: v <= b, "<="))
    for name, ok, sign in bounds:
        bound = meta.get(name)
        if bound is not None and not ok(value, bound):
            shown = f"{bound:,}" if float(bound).is_integer() and abs(bound) >= 10_000 else f"{bound:g}"
            raise JembenchError(f"{where}: {key} = {given!r} must be {sign} {shown}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise JembenchError(f"{where}: {key} = {given!r} must be one of {', '.join(map(repr, choices))}")
    return value


def _value(value: Any, kind: Any, meta: dict, key: str, where: str, base: Any) -> Any:
    if is_settings(kind):
        if not isinstance(value, dict):
            raise JembenchError(f"{where}: {key} = {value!r} must be a table ([{key}])")
        return _resolve(kind, value, where, f"{key}.", base, meta.get("omit", ()))
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if not isinstance(value, (list, tuple)):
            raise JembenchError(f"{where}: {key} = {value!r} must be {_describe(kind)}")
        if meta.get("nonempty") and not value:
            raise JembenchError(f"{where}: {key} must be a non-empty list")
        return tuple(_scalar(v, item, meta, f"{key}[{i}]", where) for i, v in enumerate(value))
    return _scalar(value, kind, meta, key, where)


def _resolve(cls: type[T], table: dict[str, Any], where: str, prefix: str, base: Any, omit: tuple[str, ...]) -> T:
    fields = [f for f in dataclasses.fields(cls) if f.name not in omit]
    names = [f.name for f in fields]
    for key in table:
        if key not in names:
            raise JembenchError(f"{where}: unknown key '{prefix}{key}' (known: {', '.join(names)})")
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        default = getattr(base, f.name) if base is not None else _default(f)
        if f.name in table:
            values[f.name] = _value(table[f.name], hints[f.name], f.metadata, prefix + f.name, where, default)
        else:
            values[f.name] = default
    try:
        obj = cls(**values)
        validate = getattr(obj, "validate", None)
        if validate is not None:
            validate()
    except Invalid as exc:
        raise JembenchError(f"{where}: {exc}") from None
    return obj


def resolve(cls: type[T], table: dict[str, Any], where: str) -> T:
    """``table`` (a parsed TOML table) as an instance of the settings class ``cls``; every missing field takes
    its default. ``where`` starts every error message (e.g. ``"protocol suites/ood.toml"``)."""
    return _resolve(cls, table, where, "", None, ())


def to_dict(obj: Any, omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings as plain data (tuples → lists, nested settings → dicts), in field order."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.name in omit:
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value, f.metadata.get("omit", ()))
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def replace(obj: T, changes: dict[str, Any], where: str = "settings") -> T:
    """``obj`` with ``changes`` applied — keys may be dotted (``"sgld.n_steps"``) — and checked like a table."""
    table: dict[str, Any] = {}
    for key, value in changes.items():
        node = table
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return _resolve(type(obj), table, where, "", obj, ())
