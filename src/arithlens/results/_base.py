"""How every result is built and kept: a typed, frozen view of the JSON object it came from (`data`), with one
`to_dict` / `from_dict` (`to_json` / `from_json` for the indented text the CLI writes), checked on the way in."""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

from arithlens.errors import ArithLensError

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------
# Building typed views from JSON objects


def _convert(hint: Any, value: Any) -> Any:
    """A JSON value as the type `hint` names: dataclasses field by field, tuples for lists, dicts for maps."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return _from_dict(hint, value)
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_convert(item, v) for v in value)
    if origin in (dict, Mapping):
        _, item = typing.get_args(hint) or (str, Any)
        return {k: _convert(item, v) for k, v in value.items()}
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def _from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """`cls` (a dataclass) from a JSON object: a field reads the key of its name (absent keys keep the
    field's default); a custom `from_dict` classmethod takes over where a class defines one."""
    custom = cls.__dict__.get("from_dict")
    if custom is not None:
        return custom.__get__(None, cls)(data)
    return _build(cls, data)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """`typing.get_type_hints(cls)`, once per class: evaluating the annotations' strings was most of reading a
    search record back (12,166 objects, 1.4 of 1.8 s)."""
    return typing.get_type_hints(cls)


def _build(cls: type[T], data: Mapping[str, Any]) -> T:
    """The generic field-by-field construction; a value of the wrong JSON shape is a one-line error naming it."""
    if not isinstance(data, Mapping):
        raise ArithLensError(f"{cls.__name__}: expected a JSON object, not {type(data).__name__}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name == "data":
            kwargs["data"] = dict(data)
        elif f.name in data:
            try:
                kwargs[f.name] = _convert(hints[f.name], data[f.name])
            except ArithLensError:
                raise
            except (TypeError, AttributeError, ValueError) as exc:
                raise ArithLensError(f"{cls.__name__}: field '{f.name}' has the wrong shape "
                                     f"({type(exc).__name__}: {exc})") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ArithLensError(f"{cls.__name__}: the JSON object lacks a field ({exc})") from None


def _check_int(owner: str, data: Mapping, key: str, *, optional: bool = False) -> None:
    value = data.get(key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArithLensError(f"{owner}: '{key}' must be an integer >= 0, not {value!r}")


def _read_json(source: str | Path | Mapping) -> Any:
    """A JSON object from a JSON string, a path to a file, or an already-parsed object."""
    if isinstance(source, Mapping) or isinstance(source, list):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith(("{", "["))):
        path = Path(source)
        if not path.is_file():
            raise ArithLensError(f"no JSON file at {path}")
        source = path.read_text()
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise ArithLensError(f"not valid JSON: {exc}") from None


class _JsonResult:
    """`to_json` / `from_json` over the kept JSON object `data`."""

    data: dict

    def to_dict(self) -> dict:
        return self.data

    def to_json(self) -> str:
        """The JSON text, as the CLI writes it (indented, strict: no NaN)."""
        return json.dumps(self.data, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping):
        """From a parsed JSON object."""
        return _from_dict(cls, data)

    @classmethod
    def from_json(cls, source: str | Path | Mapping):
        """From JSON text, a path to a JSON file the CLI wrote, or a parsed object."""
        return _from_dict(cls, _read_json(source))

    def save(self, path: str | Path) -> Path:
        """Write `to_json()` to `path`, atomically."""
        from arithlens.io import write_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.to_json().encode())
        return path


def _hidden() -> Any:
    return field(default_factory=dict, repr=False, compare=False)
