"""One way to declare and check configuration: typed dataclasses whose fields say what is allowed.

Every configuration of the package (the node's parameters, training and ablation YAML, rig files)
is a dataclass. `setting()` gives a field its description and limits (bounds, choices, number of
items, a check of its own); `build()` walks a parsed mapping against the class through
`typing.get_type_hints` (real types, never annotation strings): unknown keys (with the nearest
known name), missing keys, wrong types (a bool is not an int; an int is a float), limits, Optional,
lists, mappings and nested sections. It collects every problem with its key path
(`optimizer.lr: ...`) and raises one `SchemaError` listing them all, so that a file is fixed in one
go. A rule over several fields is a classmethod `cross_check(values)` of the class: it gets the
fields that passed their own checks (defaults filled in) and yields `(key, message)` pairs, so it
still reports while an unrelated field is wrong. `changed()` applies a change at run time (a node
parameter set while it runs) through the same checks, refusing fields not declared `live`. The same
declarations feed generated documentation (`entries()`, `Rule.limits()`, `Rule.run_time()`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_RULE = "surround_depth_ros.base.schema.rule"
_BAD = object()  # the value of a field that has problems
_SIZED = list | tuple | dict


class SchemaError(ValueError):
    """Configuration that does not match its declaration; `problems` holds one sentence per mistake (none: the
    whole message is `source`)."""

    def __init__(self, source: str, problems: Sequence[str] = ()) -> None:
        self.source, self.problems = source, list(problems)
        if not self.problems:
            super().__init__(source)
        elif len(self.problems) == 1:
            super().__init__(f"{source}: {self.problems[0]}")
        else:
            super().__init__(f"{source}:\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class Rule:
    """What a field allows besides its type. Bounds are inclusive unless `low_open`/`high_open`; `check` returns
    sentences about a value that passed everything else; `heading` starts a group in generated documentation.
    `live`: the value may change while the program runs (`changed`); `read_only`: why it may not, and what to do."""

    description: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    min_items: int = 0
    max_items: int | None = None
    check: Callable[[Any], list[str]] | None = None
    heading: str = ""
    live: bool = False
    read_only: str = ""

    def __post_init__(self) -> None:
        if self.live and self.read_only:
            raise TypeError(f"a field is live or read-only ({self.read_only!r}), not both")

    def run_time(self) -> str:
        """ "live" or "read-only: <why>", as messages and generated documentation say it."""
        if self.live:
            return "live"
        return f"read-only: {self.read_only}" if self.read_only else "read-only"

    def limits(self) -> str:
        """The limits as a user reads them: "[0.05, 60]", "(0, 1]", ">= 0" or "one of [...]"; "" when none."""
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.low is not None and self.high is not None:
            return f"{'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return ""

    def problems(self, value: Any) -> list[str]:  # noqa: ANN401 - any configuration value
        """Sentences about a value of the right type that breaks these limits."""
        if self.choices is not None and value not in self.choices:
            return [f"{value!r} is not one of {list(self.choices)}"]
        if isinstance(value, int | float) and not isinstance(value, bool):
            below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
            if below or above:
                if self.low is not None and self.high is not None:
                    return [f"{value} is outside the allowed range {self.limits()}"]
                return [f"must be {self.limits()}, got {value}"]
        if isinstance(value, _SIZED):
            if self.max_items is not None and self.max_items == self.min_items and len(value) != self.min_items:
                return [f"expected exactly {self.min_items} entries, got {len(value)}"]
            if len(value) < self.min_items:
                return [f"needs at least {self.min_items} entries, got {len(value)}"]
            if self.max_items is not None and len(value) > self.max_items:
                return [f"takes at most {self.max_items} entries, got {len(value)}"]
        return self.check(value) if self.check is not None else []


def setting(
    default: Any = MISSING,  # noqa: ANN401 - any configuration value
    *,
    default_factory: Callable[[], Any] | Any = MISSING,  # noqa: ANN401 - dataclasses' sentinel
    **rule: Any,  # noqa: ANN401 - the fields of Rule
) -> Any:  # noqa: ANN401 - a dataclass field
    """A dataclass field with a `Rule` (description=..., low=..., choices=..., check=...)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_RULE: Rule(**rule)})


@dataclass(frozen=True)
class Entry:
    """A declared field, for generated documentation and ROS descriptors: its resolved type, default and rule."""

    name: str
    kind: Any
    default: Any
    rule: Rule

    @property
    def required(self) -> bool:
        return self.default is MISSING


def entries(cls: type) -> tuple[Entry, ...]:
    """The fields of a configuration dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    result = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        result.append(Entry(f.name, hints[f.name], default, f.metadata.get(_RULE, Rule())))
    return tuple(result)


def type_name(kind: Any) -> str:  # noqa: ANN401 - a type annotation
    """How a type reads in a message or a table: "float", "a list of str", "int or null", "a mapping"."""
    options = _optional(kind)
    if options is not None:
        return f"{type_name(options)} or null"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (list, tuple):
        return f"a list of {type_name(args[0])}"
    if origin is dict or dataclasses.is_dataclass(kind):
        return "a mapping"
    return "any value" if kind is Any else kind.__name__


def suggestion(name: str, known: Iterable[str]) -> str:
    """ "did you mean 'x'?" for the nearest known name, else the known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"known: {known}"


def problems(cls: type, data: Any, *, unknown_keys: bool = True) -> list[str]:  # noqa: ANN401 - parsed YAML
    """Every problem of `data` for the dataclass `cls`, each as "key.path: sentence"; [] when it is valid."""
    found: list[str] = []
    _section(cls, data, "", found, unknown_keys)
    return found


def build(cls: type[T], data: Any, source: str, error: type[SchemaError] = SchemaError) -> T:  # noqa: ANN401
    """An instance of `cls` from parsed YAML (ints become floats, lists tuples where declared); raises `error`
    naming `source` and listing every problem."""
    found: list[str] = []
    value = _section(cls, data, "", found, True)
    if found:
        raise error(source, found)
    return value


def changed(instance: T, changes: Mapping[str, Any], source: str, error: type[SchemaError] = SchemaError) -> T:
    """`instance` with `changes` (values by field name) applied, validated as `build` validates (cross_check
    included); a field that is not `live` keeps its value and is a problem ("x is read-only: why"). Raises `error`
    naming `source` and listing every problem."""
    cls = type(instance)
    rules = {entry.name: entry.rule for entry in entries(cls)}
    fixed = [name for name in changes if name in rules and not rules[name].live]
    found = [f"{name} is {rules[name].run_time()}" for name in fixed]
    values = {f.name: getattr(instance, f.name) for f in dataclasses.fields(cls)}
    values.update((name, value) for name, value in changes.items() if name not in fixed)
    value = _section(cls, values, "", found, True)
    if found:
        raise error(source, found)
    return value


def _optional(kind: Any) -> Any:  # noqa: ANN401 - a type annotation
    """X of `X | None`, else None."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"schema: only `X | None` unions are supported, got {kind}")
        return options[0]
    return None


def _at(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _item_path(path: str, index: int, item: Any) -> str:  # noqa: ANN401 - parsed YAML
    """`cameras[1]`, or `cameras[1] (CAM_FRONT_LEFT)` for an item that has a name."""
    name = item.get("name") if isinstance(item, Mapping) else getattr(item, "name", None)
    return f"{path}[{index}]" + (f" ({name})" if isinstance(name, str) else "")


def _wrong(kind: Any, value: Any, path: str, found: list[str], nullable: bool) -> object:  # noqa: ANN401
    got = "null" if value is None else f"{type(value).__name__} {value!r}"
    found.append(_at(path, f"expected {type_name(kind)}{' or null' if nullable else ''}, got {got}"))
    return _BAD


def _value(kind: Any, value: Any, path: str, rule: Rule, found: list[str], nullable: bool = False) -> Any:  # noqa: ANN401
    """`value` checked against `kind` and `rule` and converted; `_BAD` after adding its problems to `found`."""
    inner = _optional(kind)
    if inner is not None:
        return None if value is None else _value(inner, value, path, rule, found, nullable=True)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        result = value
    elif dataclasses.is_dataclass(kind):
        result = _section(kind, value, path, found, True)
    elif origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return _wrong(kind, value, path, found, nullable)
        items = [_value(args[0], v, _item_path(path, i, v), Rule(), found) for i, v in enumerate(value)]
        result = _BAD if any(v is _BAD for v in items) else origin(items)
    elif origin is dict:
        if not isinstance(value, Mapping):
            return _wrong(kind, value, path, found, nullable)
        items = {}
        for key, item in value.items():
            if not isinstance(key, str):
                found.append(_at(_join(path, key), f"a key must be a string, got {type(key).__name__} {key!r}"))
                items[key] = _BAD
            else:
                items[key] = _value(args[1], item, _join(path, key), Rule(), found)
        result = _BAD if any(v is _BAD for v in items.values()) else items
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _wrong(kind, value, path, found, nullable)
        result = float(value)
        if not math.isfinite(result):
            found.append(_at(path, f"must be finite, got {result}"))
            return _BAD
    elif kind in (bool, int, str):
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return _wrong(kind, value, path, found, nullable)
        result = value
    else:
        raise TypeError(f"schema: unsupported type {kind} at {path or 'the top level'}")
    if result is _BAD:
        return _BAD
    broken = rule.problems(result)
    found += [_at(path, p) for p in broken]
    return _BAD if broken else result


def _section(cls: type, data: Any, path: str, found: list[str], unknown_keys: bool) -> Any:  # noqa: ANN401
    """A dataclass instance from a mapping or an instance (every field, then the class's cross_check), or `_BAD`."""
    if isinstance(data, cls):
        data = {f.name: getattr(data, f.name) for f in dataclasses.fields(cls)}
    if not isinstance(data, Mapping):
        got = "null" if data is None else f"{type(data).__name__} {data!r}"
        found.append(_at(path, f"expected a mapping, got {got}"))
        return _BAD
    declared = {e.name: e for e in entries(cls)}
    if unknown_keys:
        for key in data:
            if key not in declared:
                found.append(_at(_join(path, key), f"unknown key ({suggestion(str(key), declared)})"))
    before = len(found)
    values = {}
    for name, entry in declared.items():
        if name in data:
            value = _value(entry.kind, data[name], _join(path, name), entry.rule, found)
            if value is not _BAD:
                values[name] = value
        elif entry.required:
            found.append(_at(path, f"missing key {name!r}"))
        else:
            values[name] = entry.default
    cross_check = getattr(cls, "cross_check", None)
    if cross_check is not None:
        found += [_at(_join(path, key) if key else path, message) for key, message in cross_check(values)]
    if len(found) > before or len(values) < len(declared):
        return _BAD
    return cls(**values)
