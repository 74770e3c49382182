"""Configs as records: written next to a stage's outputs, read back, and built from recipe values with checked
types."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

from cosmos_synth.files import write_text_atomic


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (paths as strings)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return {f.name: convert(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def write_config(cfg: Any, out_dir: Path, stage: str) -> Path:
    """Write `<stage>_config.json` next to a stage's outputs."""
    return write_text_atomic(
        out_dir / f"{stage}_config.json", json.dumps(config_to_dict(cfg), indent=2, sort_keys=True)
    )


_KINDS = {
    int: ("a whole number", "32"),
    float: ("a number", "0.5"),
    bool: ("true or false", "true"),
    str: ("text", '"cuda"'),
    Path: ("a path", '"runs/demo"'),
}  # what a field takes, and an example


def _coerce_scalar(value: Any, kind: type, name: str, where: str, example: str | None) -> Any:
    """`value` as int, float, bool, str or Path; text such as "16" or "true" (CLI, --param) is parsed."""
    if kind is Path and isinstance(value, (str, Path)):
        return Path(value)
    if kind is bool and isinstance(value, bool) or kind is str and isinstance(value, str):
        return value
    if kind is bool and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if kind in (int, float) and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = kind(value.strip())
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    what, generic = _KINDS[kind]
    example = example or generic
    raise ValueError(
        f"{where}: {name}={value!r} is not {what}"
        + (" (it must be finite)" if kind is float and isinstance(value, float) else "")
        + f"; give {what}, e.g. {name}={example}."
    )


def _coerce(value: Any, annotation: Any, name: str, where: str = "config", example: str | None = None) -> Any:
    """Turn a JSON/CLI value into the field's type (Path, tuple, int from "16", ...), or raise a ValueError naming
    the field, the value and what it takes. Prefect parameters and --param overrides arrive as JSON or text."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        return _coerce(value, options[0], name, where, example) if len(options) == 1 else value
    if value is None:
        raise ValueError(f"{where}: {name} is null but has no 'none' setting; give a value or leave it out.")
    if origin is Literal:
        if value in args:
            return value
        raise ValueError(f"{where}: {name}={value!r} is not one of {list(args)}; pick one of them.")
    if origin is tuple or annotation is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: {name}={value!r} is not a list; give a list, e.g. {name}=[...].")
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args or [Any] * len(value))
        if len(kinds) != len(value):
            raise ValueError(f"{where}: {name}={value!r} has {len(value)} items; it takes {len(kinds)}.")
        return tuple(_coerce(v, k, f"{name}[{i}]", where) for i, (v, k) in enumerate(zip(value, kinds, strict=True)))
    if (origin is dict or annotation is dict) and not isinstance(value, dict):
        raise ValueError(f"{where}: {name}={value!r} is not a table; give one, e.g. {name}={{...}}.")
    if annotation in _KINDS:
        return _coerce_scalar(value, annotation, name, where, example)
    return value


def config_from_dict(cls: type, values: dict[str, Any], *, where: str = "config") -> Any:
    """Build `cls` from a dict (JSON, a recipe, CLI overrides, Prefect parameters), naming any unknown field and any
    value of the wrong type (`train: rank='abc' is not a whole number; ...`). Every error starts with `where`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; known fields: {sorted(names)}.")
    examples = {
        f.name: json.dumps(str(f.default) if isinstance(f.default, Path) else f.default)
        for f in dataclasses.fields(cls)
        if isinstance(f.default, (int, float, str, Path))
    }
    coerced = {k: _coerce(v, hints[k], k, where, examples.get(k)) for k, v in values.items()}
    try:
        return cls(**coerced)
    except ValueError as exc:  # the class's own checks (__post_init__): say where the values came from too
        raise ValueError(f"{where}: {exc}") from exc


def load_config(cls: type, path: Path) -> Any:
    """Read a config written by :func:`write_config`."""
    return config_from_dict(cls, json.loads(Path(path).read_text()), where=str(path))
