"""One-line messages for bad settings: the key, what was expected and the value that came
(`describe_error`, used by `hdml_ext.engine.settings`)."""

import dataclasses
import re
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from omegaconf.errors import ConfigKeyError, OmegaConfBaseException


def _field_type(schema: type, path: list[str]) -> Any:
    """The declared type of the field at `path` of the dataclass `schema` (None: no such field)."""
    kind: Any = schema
    for name in path:
        fields = {f.name: f for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else {}
        if name not in fields:
            return None
        kind = get_type_hints(kind)[name]
    return kind


def _expected(kind: Any) -> str:
    """How an error message says what a value of type `kind` looks like."""
    if get_origin(kind) in (Union, getattr(types, "UnionType", Union)):
        options = [a for a in get_args(kind) if a is not type(None)]
        return f"{_expected(options[0])} or null" if len(options) == 1 else "one of the types " + str(kind)
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(kind))
    if get_origin(kind) is list:
        return "a list like [1, 2]"
    names = {bool: "true or false", int: "an int", float: "a number", str: "a string"}
    return names.get(kind, f"a {getattr(kind, '__name__', kind)}")


def describe_error(
    error: OmegaConfBaseException, schema: type, section: str = "", source: object = None
) -> str:
    """One line for an OmegaConf error: the key, what was expected and the value that came
    (`source`: the dataclass instance being checked, whose field holds the value)."""
    full_key = str(error.full_key or error.key or "").removeprefix(f"{section}." if section else "")
    path = [part for part in re.sub(r"\[\d+\]", "", full_key).split(".") if part]
    key = f"{section}.{full_key}" if section else full_key
    if isinstance(error, ConfigKeyError):
        parent = _field_type(schema, path[:-1]) if len(path) > 1 else schema
        known = ", ".join(f.name for f in dataclasses.fields(parent)) if parent is not None else ""
        where = ".".join(part for part in [section, *path[:-1]] if part) or "sections"
        return f"unknown setting {key!r}; known {where}: {known}"
    kind = _field_type(schema, path)
    if kind is not None and full_key.endswith("]"):
        kind = get_args(kind)[0]
    expected = _expected(kind) if kind is not None else "a valid value"
    value = getattr(error, "value", None)
    if source is not None and path:
        value = getattr(source, path[0])
        index = re.search(r"\[(\d+)\]$", full_key)
        value = value[int(index.group(1))] if index else value
    return f"{key} should be {expected}, got {value!r}"
