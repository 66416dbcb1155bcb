"""Typed options: the config every registered source, task, featurizer, backbone and framework declares.

A config is a frozen dataclass whose fields are declared with :func:`option`: the default, one line of help, and
the bounds the value must keep. The annotation is the type (``int``, ``float``, ``bool``, ``str``, a ``Literal``
of choices, ``tuple[str, ...]``, or any of these ``| None``). :func:`validate`, called first in the config's
``__post_init__``, checks every field against its type, choices and bounds, so a config cannot be built
wrong from Python, from ``config.json`` or from the command line; cross-field rules stay in the config's own
``__post_init__`` after it.

Everything else reads the fields from here, so a default is written once: the CLI's flags and ``--help``
(:func:`options_of`), ``key=value`` options such as ``--backbone-arg`` (:func:`parse_assignments` +
:func:`make_config`, which name the field and the expected type in the error), ``medmodal list`` and the docs
tables (:func:`describe`), the benchmark's search spaces (``search_space`` on a framework's config).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Literal

from medmodal.common import MedmodalError

__all__ = [
    "Option",
    "OptionError",
    "config_for",
    "describe",
    "make_config",
    "option",
    "options_of",
    "parse_assignments",
    "parse_value",
    "validate",
]


class OptionError(MedmodalError, ValueError):
    """A config field with a bad value (a ValueError to Python callers); ``option`` names the field.
    :func:`make_config` adds where the value was given."""

    def __init__(self, message: str, *, option: str):
        super().__init__(message, field=option)
        self.option = option
        self.reason = message


def option(
    default: Any = MISSING,
    help: str = "",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    shared: bool = False,
) -> Any:
    """A config field: ``default``, one line of ``help``, inclusive ``minimum``/``maximum`` and exclusive
    ``above``/``below`` bounds for numbers (or for a tuple's length, never needed so far). ``shared``: a field
    with one meaning across featurizers (``device``), given once on ``featurize all``."""
    meta = {"help": help, "bounds": {"minimum": minimum, "maximum": maximum, "above": above, "below": below}}
    meta["shared"] = shared
    if isinstance(default, (list, dict, set)):
        raise TypeError("a mutable default must be a tuple")
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Option:
    """One field of a config, as the CLI, ``medmodal list`` and the docs show it."""

    name: str
    type: Any  # the resolved annotation
    default: Any  # MISSING when the field is required
    help: str
    bounds: Mapping[str, float | None]
    shared: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def base(self) -> Any:
        """The type without ``| None``."""
        return _strip_none(self.type)

    @property
    def optional(self) -> bool:
        return _strip_none(self.type) is not self.type

    @property
    def choices(self) -> tuple[Any, ...] | None:
        return typing.get_args(self.base) if typing.get_origin(self.base) is Literal else None

    def type_name(self) -> str:
        """``int``, ``float >= 0``, ``mean | latest``, ``comma list``, ... (``| none`` when None is allowed)."""
        if self.choices is not None:
            text = " | ".join(str(c) for c in self.choices)
        else:
            text = _TYPE_NAMES.get(self.base, getattr(self.base, "__name__", str(self.base)))
            if _is_str_tuple(self.base):
                text = "comma list"
            text += _bounds_text(self.bounds)
        return text + (" | none" if self.optional else "")

    def default_text(self) -> str:
        if self.required:
            return "(required)"
        if self.default is None:
            return "none"
        if isinstance(self.default, bool):
            return str(self.default).lower()
        if isinstance(self.default, tuple):
            return ",".join(str(v) for v in self.default) or "(empty)"
        return str(self.default)


_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "text", Path: "path"}


def _bounds_text(bounds: Mapping[str, float | None]) -> str:
    parts = []
    for key, sym in (("minimum", ">="), ("above", ">"), ("maximum", "<="), ("below", "<")):
        if bounds.get(key) is not None:
            parts.append(f"{sym} {bounds[key]:g}")
    return (" " + ", ".join(parts)) if parts else ""


def _strip_none(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return tp


def _is_str_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple and typing.get_args(tp) in ((str, Ellipsis),)


@functools.cache
def options_of(cls: type) -> tuple[Option, ...]:
    """The fields of config class ``cls`` in declaration order, with their resolved types."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a config dataclass")
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default
        if default is MISSING and f.default_factory is not MISSING:
            default = f.default_factory()
        meta = f.metadata
        out.append(
            Option(
                name=f.name,
                type=hints[f.name],
                default=default,
                help=meta.get("help", ""),
                bounds=meta.get("bounds", {}),
                shared=meta.get("shared", False),
            )
        )
    return tuple(out)


# ---------------------------------------------------------------------------------------------------- validation
def _check(opt: Option, value: Any) -> Any:
    """``value`` normalised to ``opt``'s type (int -> float, list -> tuple, path -> str), or OptionError."""
    if value is None:
        if opt.optional:
            return None
        raise OptionError(f"expected {opt.type_name()}, got none", option=opt.name)
    base = opt.base
    choices = opt.choices
    if choices is not None:
        if value not in choices:
            raise OptionError(f"expected one of {', '.join(map(str, choices))}; got {value!r}", option=opt.name)
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise OptionError(f"expected true or false, got {value!r}", option=opt.name)
        return value
    if base in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and base is int and isinstance(value, float):
            ok = value.is_integer()
            value = int(value) if ok else value
        if not ok or not math.isfinite(value):
            kind = "an integer" if base is int else "a finite number"
            raise OptionError(f"expected {kind}, got {value!r}", option=opt.name)
        value = base(value)
        b = opt.bounds
        bad = (
            (b.get("minimum") is not None and value < b["minimum"])
            or (b.get("maximum") is not None and value > b["maximum"])
            or (b.get("above") is not None and value <= b["above"])
            or (b.get("below") is not None and value >= b["below"])
        )
        if bad:
            raise OptionError(f"must be{_bounds_text(b).replace(',', ' and')} (got {value!r})", option=opt.name)
        return value
    if base is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str):
            raise OptionError(f"expected text, got {value!r}", option=opt.name)
        return value
    if base is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise OptionError(f"expected a path, got {value!r}", option=opt.name)
        return Path(value)
    if _is_str_tuple(base):
        if isinstance(value, str) or not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
            raise OptionError(f"expected a list of text, got {value!r}", option=opt.name)
        return tuple(value)
    raise TypeError(f"option {opt.name}: unsupported type {opt.type!r}")


def validate(config: Any) -> None:
    """Check (and normalise in place) every field of a frozen config; call first in its ``__post_init__``."""
    for opt in options_of(type(config)):
        value = _check(opt, getattr(config, opt.name))
        object.__setattr__(config, opt.name, value)


# ---------------------------------------------------------------------------------------------------- text input
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_value(opt: Option, text: str) -> Any:
    """The typed value of ``text`` given for field ``opt`` on the command line; OptionError names the type."""
    s = text.strip()
    if opt.optional and s.lower() in ("none", "null", ""):
        return None
    base = opt.base
    try:
        if opt.choices is not None:
            for c in opt.choices:
                if str(c) == s:
                    return c
            raise ValueError
        if base is bool:
            if s.lower() in _TRUE:
                return True
            if s.lower() in _FALSE:
                return False
            raise ValueError
        if base is int:
            return int(s)
        if base is float:
            return float(s)
        if _is_str_tuple(base):
            return tuple(v.strip() for v in s.split(",") if v.strip())
        if base is Path:
            return Path(s)
        return s
    except ValueError:
        raise OptionError(f"expected {opt.type_name()}, got {text!r}", option=opt.name) from None


def parse_assignments(items: Iterable[str] | None, flag: str) -> dict[str, str]:
    """``["q=0.7", "predict_from=both"]`` -> ``{"q": "0.7", "predict_from": "both"}``: the text of each value,
    typed later against the config it is for (:func:`make_config`)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MedmodalError(f"expected key=value, got '{item}'", field=flag)
        out[key.strip()] = value
    return out


def make_config(
    cls: type,
    values: Mapping[str, Any] | None = None,
    *,
    what: str,
    flag: str | None = None,
    text: bool = False,
    spelled: Mapping[str, str] | None = None,
) -> Any:
    """``cls(**values)`` with every error one line naming ``what`` (``backbone 'muse'``), the ``flag`` the values
    came from and the field: an unknown key lists the valid ones, a wrong type names the expected one.

    ``text``: the values are command-line text, typed by each field (``hidden=64`` -> 64). ``spelled``: how the
    user wrote a field, when it was its own flag (``{"lr": "--lr"}``); the error then names that instead.
    """
    opts = {o.name: o for o in options_of(cls)}
    spelled = dict(spelled or {})

    def name(key: str) -> str:
        return spelled.get(key) or (f"{flag} {key}" if flag else key)

    kwargs = {}
    for key, value in (values or {}).items():
        if key not in opts:
            known = ", ".join(opts) or "none"
            raise MedmodalError(f"{what} has no option '{key}' (its options: {known})", field=flag)
        try:
            kwargs[key] = parse_value(opts[key], value) if text and isinstance(value, str) else value
        except OptionError as err:
            raise MedmodalError(f"{what}: {name(key)}: {err.reason}") from None
    try:
        return cls(**kwargs)
    except OptionError as err:
        raise MedmodalError(f"{what}: {name(err.option)}: {err.reason}") from None
    except (TypeError, ValueError) as err:
        raise MedmodalError(f"{what}: {err}", field=flag) from None


def config_for(registry: Any, name: str, given: Any = None, *, flag: str | None = None, text: bool = False) -> Any:
    """The config of registry entry ``name``: ``given`` itself when it is one, else built from the mapping
    ``given`` (None: the entry's defaults) by :func:`make_config`."""
    cls = registry.get(name).config_class
    what = f"{registry.kind} '{name}'"
    if isinstance(given, cls):
        return given
    if dataclasses.is_dataclass(given):
        raise MedmodalError(f"{what} takes a {cls.__name__}, not a {type(given).__name__}", field=flag)
    return make_config(cls, given, what=what, flag=flag, text=text)


def describe(cls: type) -> list[dict[str, str]]:
    """One row per field: option, type, default, help (``medmodal list`` and the docs tables)."""
    return [
        {"option": o.name, "type": o.type_name(), "default": o.default_text(), "help": o.help} for o in options_of(cls)
    ]
