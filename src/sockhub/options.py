"""Settings declared once: a field's default, help and check, and all that derives from it.

A settings dataclass (:class:`~sockhub.limits.Limits`, the services'
settings, :class:`~sockhub.config.ServiceConfig`) declares each field with
:func:`option`; from those declarations come

* the command line: :func:`add_arguments` makes the flags, their help ending
  with the default the code really uses; :func:`given` reads back the values
  that were given;
* the config file: :func:`build` makes an instance from a mapping (a TOML
  table, or what the command line gave), refusing unknown keys and bad values
  with a :class:`~sockhub.errors.ConfigError` that names the key and where;
* the checks themselves: :func:`settle`, called from the dataclass's
  ``__post_init__``, so an instance made in code is checked the same way;
* the docs: :func:`markdown_table`, the tables in docs/config.md.

What a value may be follows from the field's annotation: ``int`` (a whole
number), ``float`` (a finite number above 0), ``bool``, ``str``, ``Path``,
``tuple[str, ...]`` (a list; a repeatable flag) and ``dict[str, str]`` (a
table; a repeatable ``NAME=VALUE`` flag). ``X | None`` lets the field hold
None, and ``off=True`` lets the word ``none`` say so (a limit turned off).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from sockhub.errors import ConfigError

T = TypeVar("T")

#: A check: gets the key and a value of the right kind, returns the value to
#: keep (normalised if need be), raises ValueError with a message naming the key.
Check = Callable[[str, Any], Any]

#: The words that turn an ``off=True`` option off, on the command line and in TOML.
OFF_WORDS = ("none", "off")


@dataclass(frozen=True)
class Option:
    """What a settings field declares besides its default (``field.metadata["option"]``).

    Attributes:
        help: what the option does, one phrase; the default is added to it.
        flag: the command line's name, if not ``--`` plus the key with dashes.
        key: the config file's name, if not the field's.
        metavar: the flag's value in ``--help`` (``N``, ``FILE``).
        unit: ``bytes``, ``seconds``, ``count``...: shown beside the default.
        off: the word ``none`` turns it off (the field then holds None).
        minimum, maximum: bounds of a whole number, inclusive.
        check: a further check or normaliser, run after the kind is settled.
        secret: never shown: not in ``--help``, the docs or the repr.
        cli: False for keys only a config file sets.
        default_text: the default in words, when it is computed at run time
            (a path under $HOME) or None means something (the service's port).
    """

    help: str
    flag: str | None = None
    key: str | None = None
    metavar: str | None = None
    unit: str | None = None
    off: bool = False
    minimum: int | None = None
    maximum: int | None = None
    check: Check | None = None
    secret: bool = False
    cli: bool = True
    default_text: str | None = None


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    flag: str | None = None,
    key: str | None = None,
    metavar: str | None = None,
    unit: str | None = None,
    off: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
    check: Check | None = None,
    secret: bool = False,
    cli: bool = True,
    default_text: str | None = None,
) -> Any:
    """A dataclass field with its default, help text and checks (see :class:`Option`).

    Args:
        default: the default value; omit it for a required key, or give
            ``factory`` for a mutable or computed one.
        help: what the option does.
    """
    meta = Option(help=help, flag=flag, key=key, metavar=metavar, unit=unit, off=off,
                  minimum=minimum, maximum=maximum, check=check, secret=secret, cli=cli,
                  default_text=default_text)
    metadata = {"option": meta}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata, repr=not secret)
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


@dataclass(frozen=True)
class Declared:
    """One option of a settings class: its field, its kind and what it declares."""

    name: str
    kind: Kind
    optional: bool  # None is a value it may hold
    field: dataclasses.Field[Any]
    meta: Option

    @property
    def key(self) -> str:
        return self.meta.key or self.name

    @property
    def flag(self) -> str:
        return self.meta.flag or "--" + self.key.replace("_", "-")

    @property
    def metavar(self) -> str:
        if self.meta.metavar:
            return self.meta.metavar
        if self.kind in ("int", "float"):
            return {"seconds": "S", "bytes": "BYTES"}.get(self.meta.unit or "", "N")
        return {"path": "PATH", "map": "NAME=VALUE"}.get(self.kind, "TEXT")

    @property
    def required(self) -> bool:
        return (self.field.default is dataclasses.MISSING
                and self.field.default_factory is dataclasses.MISSING)

    @property
    def default(self) -> Any:
        """The default value (a fresh one from the factory); MISSING if required."""
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return self.field.default


#: What a value may be, from the field's annotation (``any``: not checked).
Kind = Literal["bool", "int", "float", "str", "path", "list", "map", "any"]

_KINDS: dict[Any, Kind] = {bool: "bool", int: "int", float: "float", str: "str", Path: "path",
                          tuple[str, ...]: "list", dict[str, str]: "map"}


_declared: dict[type, tuple[Declared, ...]] = {}


def declared(cls: type) -> tuple[Declared, ...]:
    """The options of a settings dataclass, in declaration order (inherited ones first)."""
    if cls not in _declared:
        _declared[cls] = _declare(cls)
    return _declared[cls]


def _declare(cls: type) -> tuple[Declared, ...]:
    hints = typing.get_type_hints(cls)
    result = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("option")
        if not isinstance(meta, Option):
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
        if optional:
            rest = [a for a in args if a is not type(None)]
            hint = rest[0] if len(rest) == 1 else Any
        kind: Kind = _KINDS.get(hint, "any")
        if meta.off and not optional:
            raise TypeError(f"{cls.__name__}.{f.name}: off=True needs a type with None in it")
        result.append(Declared(f.name, kind, optional, f, meta))
    return tuple(result)


# --- Checking values ---------------------------------------------------------------


def settle(instance: Any) -> None:
    """Check every option of a (frozen) settings instance; store normalised values.

    Call it from ``__post_init__``.

    Raises:
        ValueError: a value of the wrong kind or out of bounds; the message
            starts with the key.
    """
    for d in declared(type(instance)):
        value = getattr(instance, d.name)
        settled = _settle(d, value)
        if settled is not value:
            object.__setattr__(instance, d.name, settled)


def _settle(d: Declared, value: Any) -> Any:
    name = d.key
    if value is None:
        if d.optional:
            return None
        if d.kind in ("int", "float"):
            raise ValueError(f"{name} must be {_NUMBER[d.kind]}, not None: "
                             f"{name} cannot be turned off")
        raise ValueError(f"{name} must be set")
    value = _of_kind(d, value)
    if d.meta.check is not None:
        value = d.meta.check(name, value)
    if d.kind == "int":
        low, high = d.meta.minimum, d.meta.maximum
        if low is not None and high is not None and not low <= value <= high:
            raise ValueError(f"{name} must be {low}-{high}, not {value!r}")
        if low is not None and value < low:
            raise ValueError(f"{name} must be at least {low}, not {value!r}")
        if high is not None and value > high:
            raise ValueError(f"{name} must be at most {high}, not {value!r}")
    elif d.kind == "float" and not (0 < value < math.inf):
        finite = "a finite number " if value == math.inf else ""
        raise ValueError(f"{name} must be {finite}more than 0, not {value!r}")
    return value


_NUMBER = {"int": "a whole number", "float": "a number"}


def _of_kind(d: Declared, value: Any) -> Any:
    """``value`` as the field's kind (a list as a tuple, a path as a Path), or ValueError."""
    name, kind = d.key, d.kind
    if kind in ("int", "float"):
        allowed = int if kind == "int" else int | float
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise ValueError(f"{name} must be {_NUMBER[kind]}, not {value!r}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, not {value!r}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be text, not {value!r}")
    elif kind == "path":
        if not isinstance(value, str | Path):
            raise ValueError(f"{name} must be a path, not {value!r}")
        return value if isinstance(value, Path) else Path(value)
    elif kind == "list":
        if isinstance(value, str) or not isinstance(value, list | tuple) or not all(
            isinstance(item, str) for item in value
        ):
            raise ValueError(f"{name} must be a list of strings, not {value!r}")
        return value if isinstance(value, tuple) else tuple(value)
    elif kind == "map":
        return _as_map(name, value)
    return value


def _as_map(name: str, value: Any) -> dict[str, str]:
    """A table of strings, or a list of ``NAME=VALUE`` strings, as a dict."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        items = []
        for item in value:
            k, sep, v = item.partition("=")
            if not sep:
                raise ValueError(f"{name} takes NAME=VALUE, not {item!r}")
            items.append((k, v))
    else:
        raise ValueError(f"{name} must be a table of strings, not {value!r}")
    for k, v in items:
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"{name} must be a table of strings, not {k!r} = {v!r}")
    return dict(items)


def port_number(name: str, value: int) -> int:
    """A check: a TCP/UDP port, 0 meaning a free one."""
    if not 0 <= value <= 65535:
        raise ValueError(f"{name} {value} is out of range 0-65535")
    return value


def from_words(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the word ``none`` (or ``off``) read as None where it turns an option off."""
    off = {d.key for d in declared(cls) if d.meta.off}
    return {k: None if k in off and isinstance(v, str) and v.lower() in OFF_WORDS else v
            for k, v in values.items()}


def build(cls: type[T], values: Mapping[str, Any], *, where: str) -> T:
    """An instance of settings class ``cls`` from a mapping of keys (a TOML table).

    Args:
        values: keys as a config file spells them; ``"none"`` turns an
            ``off`` option off.
        where: for messages: the service, the file.

    Raises:
        ConfigError: an unknown key, or a value that does not pass its checks.
    """
    by_key = {d.key: d for d in declared(cls)}
    unknown = sorted(set(values) - set(by_key))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s): {', '.join(unknown)}")
    kwargs = {by_key[k].name: v for k, v in from_words(cls, values).items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


# --- The command line ----------------------------------------------------------------


class _Off:
    """What ``none`` parses to on the command line: turned off, as opposed to not given."""

    def __repr__(self) -> str:
        return "none"


OFF = _Off()


def _number(off: bool) -> Callable[[str], float | _Off]:
    def parse(text: str) -> float | _Off:
        if off and text.lower() in OFF_WORDS:
            return OFF
        try:
            value = float(text)
        except ValueError:
            expected = "a number or 'none'" if off else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError("must not be negative")
        return value

    return parse


def cli_options(cls: type, names: Iterable[str] | None = None) -> list[Declared]:
    """The options of ``cls`` the command line has (those in ``names``, if given)."""
    wanted = None if names is None else set(names)
    return [d for d in declared(cls)
            if d.meta.cli and (wanted is None or d.name in wanted)]


def add_arguments(
    group: argparse._ActionsContainer,
    cls: type,
    *,
    prefix: str,
    names: Iterable[str] | None = None,
    also: Mapping[str, Sequence[str]] | None = None,
    off_note: bool = True,
) -> None:
    """Add a flag for each option of ``cls`` to an argparse group.

    Args:
        prefix: put before each field's name to make its ``dest`` (read back
            by :func:`given` with the same prefix).
        names: only these fields.
        also: more to show after a field's default (``chat 8192``).
        off_note: say ``none = off`` in the help of options that take it.
    """
    for d in cli_options(cls, names):
        kwargs: dict[str, Any] = {"dest": prefix + d.name, "default": None,
                                  "help": help_text(d, (also or {}).get(d.name, ()),
                                                    off_note=off_note)}
        if d.kind == "bool":
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = d.metavar
            if d.kind in ("list", "map"):
                kwargs["action"] = "append"
            if d.kind in ("int", "float"):
                kwargs["type"] = _number(d.meta.off)
        group.add_argument(d.flag, **kwargs)


def given(args: argparse.Namespace, cls: type, *, prefix: str,
          names: Iterable[str] | None = None) -> dict[str, Any]:
    """The options of ``cls`` given on the command line, by config key.

    An empty text for a text or path option counts as not given (its default).

    Raises:
        ConfigError: a fraction for a whole number; a malformed ``NAME=VALUE``.
    """
    values: dict[str, Any] = {}
    for d in cli_options(cls, names):
        raw = getattr(args, prefix + d.name, None)
        if raw is None or (raw == "" and d.kind in ("str", "path")):
            continue
        if raw is OFF:
            values[d.key] = None
        elif d.kind == "int":
            if not float(raw).is_integer():
                raise ConfigError(f"{d.flag} must be a whole number, not {raw:g}")
            values[d.key] = int(raw)
        elif d.kind == "map":
            values[d.key] = _pairs(raw, d.flag, d.metavar)
        else:
            values[d.key] = raw
    return values


def _pairs(items: list[str], flag: str, shape: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` → ``{"a": "1", "b": "2"}``."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} takes {shape}, not {item!r}")
        pairs[key] = value
    return pairs


def flags(cls: type, keys: Iterable[str]) -> list[str]:
    """The flags of these config keys, in declaration order."""
    wanted = set(keys)
    return [d.flag for d in declared(cls) if d.key in wanted]


# --- Showing defaults -------------------------------------------------------------------


def shown(value: Any, unit: str | None = None, *, human: bool = False) -> str:
    """A default as ``--help`` shows it (``65536``, ``300``) or the docs (``64 KiB``, ``300 s``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ", ".join(shown(item) for item in value)
    if not isinstance(value, int | float):
        return str(value)
    if not human:
        return f"{value:g}" if isinstance(value, float) else str(value)
    if unit == "bytes" and isinstance(value, int) and value >= 1024:
        for size, suffix in ((1024 * 1024, "MiB"), (1024, "KiB")):
            if value % size == 0:
                return f"{value // size:,} {suffix}"
    if unit == "seconds":
        return f"{value:g} s"
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def default_shown(d: Declared, *, human: bool = False) -> str | None:
    """The default in words, or None when there is nothing to show (a flag, a secret)."""
    if d.meta.default_text:
        return d.meta.default_text
    if d.required or d.meta.secret or d.kind == "bool":
        return None
    value = d.default
    if value is None or value == {} or value == ():
        return None
    return shown(value, d.meta.unit, human=human)


def help_text(d: Declared, also: Sequence[str] = (), *, off_note: bool = True) -> str:
    """The flag's help: what it does, then ``(unit; default X; ...)``."""
    parts = [d.meta.unit] if d.meta.unit else []
    if d.meta.default_text:
        parts.append(f"default: {d.meta.default_text}")
    elif (default := default_shown(d)) is not None:
        parts.append(f"default {default}")
    parts += also
    if d.meta.off and off_note:
        parts.append("none = off")
    if d.kind in ("list", "map"):
        parts.append("repeatable")
    return f"{d.meta.help} ({'; '.join(parts)})" if parts else d.meta.help


def markdown_table(
    cls: type,
    *,
    names: Iterable[str] | None = None,
    columns: Sequence[str] = ("key", "flag", "default"),
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """A Markdown table of the options of ``cls``: one row each, meaning last.

    Args:
        names: only these fields (declaration order is kept).
        columns: among ``key`` (the config key), ``flag`` (with its value),
            ``option`` (the bare flag) and ``default``.
        headers: column titles other than the column's name (``flag``:
            "command line").
        extra: more columns, each a mapping of field name → value (a
            service's own defaults); empty where a field is not in it.
    """
    wanted = None if names is None else set(names)
    rows = [d for d in declared(cls) if wanted is None or d.name in wanted]
    titles = [*columns, *(extra or {}), "meaning"]
    names_of = {**_TITLES, **(headers or {})}
    lines = ["| " + " | ".join(names_of.get(t, t) for t in titles) + " |",
             "|" + " --- |" * len(titles)]
    for d in rows:
        cells = [_cell(d, column) for column in columns]
        cells += [shown(values[d.name], d.meta.unit, human=True) if d.name in values else ""
                  for values in (extra or {}).values()]
        cells.append(_meaning(d))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


_TITLES = {"flag": "command line"}


def _cell(d: Declared, column: str) -> str:
    if column == "key":
        return f"`{d.key}`"
    if column == "option":
        return f"`{d.flag}`" if d.meta.cli else "—"
    if column == "flag":
        if not d.meta.cli:
            return "—"
        return f"`{d.flag}`" if d.kind == "bool" else f"`{d.flag} {d.metavar}`"
    if column == "default":
        if d.required:
            return "required"
        if d.kind == "bool":
            return shown(d.default)
        default = default_shown(d, human=True)
        return "—" if default is None else default
    raise ValueError(f"no column {column!r}")


def _meaning(d: Declared) -> str:
    notes = [d.meta.help]
    if d.meta.off:
        notes.append("`none` turns it off")
    if d.kind in ("list", "map") and d.meta.cli:
        notes.append("repeatable flag")
    return "; ".join(notes)
