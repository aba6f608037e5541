"""JSON read back is checked for shape as well as syntax: valid JSON of the wrong shape (a list
where an object belongs, a string where a number does) is refused like a syntax error, so a
reader never fails later with an AttributeError or TypeError traceback."""

from __future__ import annotations

import json
import types
from typing import Any, Union, get_args, get_origin, get_type_hints


def json_object(text: str | bytes) -> dict[str, Any]:
    """The JSON object `text` holds; ValueError if it is not valid JSON or not an object."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a type annotation (str, int, float, bool, None, Any, unions,
    list[...] and dict[str, ...]): what a dataclass written as JSON declares for each field."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):  # JSON has one number type; an int is a valid float
        allowed = int if hint is int else (int, float)
        return isinstance(value, allowed) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            matches(k, args[0]) and matches(v, args[1]) for k, v in value.items()
        )
    raise TypeError(f"no JSON shape for the annotation {hint!r}")


def check_fields(cls: type, values: dict[str, Any]) -> None:
    """ValueError naming the first of `values` whose type is not what dataclass `cls` declares
    for that field."""
    hints = get_type_hints(cls)
    for name, value in values.items():
        if not matches(value, hints[name]):
            hint = hints[name]
            shown = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            raise ValueError(f"{name!r} is {json.dumps(value)[:40]}, expected {shown}")
