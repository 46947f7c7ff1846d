"""Typed configs: frozen dataclasses built from defaults < a TOML file < ``--set key=value``.

An unknown key is an error naming the key and the valid ones; a value is converted to the
field's declared type or rejected with the field's name and the expected type.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from recbench.errors import ConfigError

C = TypeVar("C")


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b.c=x"]`` -> ``{"a": "1", "b.c": "x"}``; the value stays a string until typed."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r} (for example --set epochs=5).")
        out[key.strip()] = value.strip()
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist.")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid {path.suffix[1:].upper() or 'TOML'}: {exc}") from exc


def build_config(cls: type[C], *layers: dict[str, Any], owner: str = "config") -> C:
    """Instantiate dataclass ``cls`` from layered dicts, later layers winning."""
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"{owner}: Config must be a dataclass, got {cls!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, raw in layer.items():
            if key not in fields:
                import difflib

                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{owner}: unknown key {key!r}.{hint} Valid keys: {', '.join(sorted(fields)) or '(none)'}."
                )
            values[key] = coerce(raw, hints[key], f"{owner}.{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{owner}: {exc}") from exc


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert ``value`` (often a CLI string) to ``annotation`` or raise :class:`ConfigError`."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = get_args(annotation)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and type(None) in options):
            if type(None) in options:
                return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, where)
            except ConfigError:
                continue
        names = [getattr(o, "__name__", str(o)) if o is not type(None) else "none" for o in options]
        raise ConfigError(f"{where}: expected {' or '.join(names)}, got {value!r}.")
    if origin is Literal:
        allowed = get_args(annotation)
        for option in allowed:
            if value == option or (isinstance(value, str) and str(option) == value):
                return option
        raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}.")
    if origin in (tuple, list):
        (inner, *_rest) = get_args(annotation) or (Any,)
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ConfigError(f"{where}: expected a list, got {value!r}.")
        converted = [coerce(v, inner, where) for v in items]
        return tuple(converted) if origin is tuple else converted
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}.")
    if annotation in (int, float, str):
        if isinstance(value, bool) and annotation is not str:
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}.")
        try:
            converted = annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}.") from None
        if annotation is int and isinstance(value, float) and value != converted:
            raise ConfigError(f"{where}: expected a whole number, got {value!r}.")
        return converted
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def describe_fields(cls: type) -> list[tuple[str, str, Any, str]]:
    """``(name, type, default, doc)`` per field; docs come from ``Annotated``-free field metadata."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        out.append((f.name, getattr(hints[f.name], "__name__", str(hints[f.name])), default, f.metadata.get("doc", "")))
    return out


def option(default: Any, doc: str) -> Any:
    """A dataclass field with a default and a one-line doc (shown by ``recbench list methods -v``)."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})
