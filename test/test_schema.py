"""The one validator of every configuration: typed dataclasses, every problem listed at once with its key path."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from surround_depth_ros.base import schema
from surround_depth_ros.base.schema import SchemaError, setting


@dataclass(frozen=True)
class Inner:
    name: str
    size: int = setting(1, low=1, high=8)


@dataclass(frozen=True)
class Outer:
    """A little of everything the configurations of the package use."""

    mode: str = setting("fast", choices=("fast", "slow"))
    ratio: float = setting(0.5, low=0, high=1, low_open=True)
    rate: float = setting(1.0, low=0, low_open=True)
    count: int = setting(2, low=0)
    enabled: bool = True
    limit: int | None = None
    names: tuple[str, ...] = setting(
        ("a",), min_items=1, check=lambda v: [f"{n!r} is upper case" for n in v if n.isupper()]
    )
    offsets: list[float] = field(default_factory=list)
    inner: Inner = field(default_factory=lambda: Inner("x"))
    items: tuple[Inner, ...] = ()
    table: dict[str, Inner] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    first: str = ""

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if "names" in values and values.get("first") and values["first"] not in values["names"]:
            yield "first", f"{values['first']!r} is not one of the names {list(values['names'])}"


@dataclass
class Required:
    key: int
    other: str = "o"


def _problems(data: Any) -> list[str]:
    return schema.problems(Outer, data)


def test_a_valid_mapping_builds_typed_values():
    built = schema.build(
        Outer,
        {"ratio": 1, "names": ["b"], "offsets": [1, 2.5], "items": [{"name": "i", "size": 8}], "limit": None},
        "cfg.yaml",
    )
    assert built.ratio == 1.0 and isinstance(built.ratio, float)
    assert built.names == ("b",) and built.offsets == [1.0, 2.5] and built.items == (Inner("i", 8),)
    assert built.limit is None and built.inner == Inner("x") and built == schema.build(Outer, built, "again")


def test_every_problem_is_listed_with_its_key_path():
    data = {
        "mode": "medium",
        "ratio": 0,
        "rate": -1,
        "count": True,
        "enabled": "yes",
        "limit": 2.0,
        "names": [],
        "offsets": [1, "two"],
        "inner": {"name": "n", "size": 9, "colour": "red"},
        "items": [{"size": 2}, {"name": "b", "size": "big"}],
        "table": {"k": {"name": 3}},
        "extra": [],
        "tpyo": 1,
    }
    assert _problems(data) == [
        "tpyo: unknown key (known: ['count', 'enabled', 'extra', 'first', 'inner', 'items', 'limit', 'mode', "
        "'names', 'offsets', 'rate', 'ratio', 'table'])",
        "mode: 'medium' is not one of ['fast', 'slow']",
        "ratio: 0.0 is outside the allowed range (0, 1]",
        "rate: must be > 0, got -1.0",
        "count: expected int, got bool True",
        "enabled: expected bool, got str 'yes'",
        "limit: expected int or null, got float 2.0",
        "names: needs at least 1 entries, got 0",
        "offsets[1]: expected float, got str 'two'",
        "inner.colour: unknown key (known: ['name', 'size'])",
        "inner.size: 9 is outside the allowed range [1, 8]",
        "items[0]: missing key 'name'",
        "items[1] (b).size: expected int, got str 'big'",
        "table.k.name: expected str, got int 3",
        "extra: expected a mapping, got list []",
    ]
    with pytest.raises(SchemaError) as info:
        schema.build(Outer, data, "cfg.yaml")
    assert str(info.value).startswith("cfg.yaml:\n  - tpyo: unknown key")
    assert len(info.value.problems) == 15


def test_one_problem_is_one_line_naming_the_source():
    with pytest.raises(SchemaError, match=r"^cfg.yaml: inner.size: 0 is outside the allowed range \[1, 8\]$"):
        schema.build(Outer, {"inner": {"name": "n", "size": 0}}, "cfg.yaml")


def test_unknown_keys_suggest_the_nearest_name():
    assert _problems({"ratoi": 0.5}) == ["ratoi: unknown key (did you mean 'ratio'?)"]
    assert schema.problems(Outer, {"ratoi": 0.5}, unknown_keys=False) == []
    assert schema.suggestion("sync_windows_s", ["sync_window_s", "sync_wait_s"]) == "did you mean 'sync_window_s'?"


def test_bool_is_not_an_int_but_an_int_is_a_float():
    assert _problems({"count": False}) == ["count: expected int, got bool False"]
    assert _problems({"rate": True}) == ["rate: expected float, got bool True"]
    assert _problems({"rate": 3}) == [] and _problems({"rate": float("inf")}) == ["rate: must be finite, got inf"]


def test_optional_and_null():
    assert _problems({"limit": None}) == [] and _problems({"limit": 3}) == []
    assert _problems({"mode": None}) == ["mode: expected str, got null"]
    assert _problems(None) == ["expected a mapping, got null"]
    assert _problems({"inner": None}) == ["inner: expected a mapping, got null"]


def test_missing_required_keys_are_named_at_their_section():
    assert schema.problems(Required, {}) == ["missing key 'key'"]
    assert _problems({"items": [{}]}) == ["items[0]: missing key 'name'"]


def test_field_checks_and_cross_checks_report_with_other_problems():
    assert _problems({"names": ["ok", "BAD"], "first": "zz", "mode": "x"}) == [
        "mode: 'x' is not one of ['fast', 'slow']",
        "names: 'BAD' is upper case",
    ]  # names is wrong: the cross-check, which needs it, says nothing
    assert _problems({"names": ["ok"], "first": "zz", "mode": "x"}) == [
        "mode: 'x' is not one of ['fast', 'slow']",
        "first: 'zz' is not one of the names ['ok']",
    ]


def test_limits_read_as_in_the_documentation():
    rules = {e.name: e.rule for e in schema.entries(Outer)}
    assert rules["ratio"].limits() == "(0, 1]" and rules["rate"].limits() == "> 0" and rules["count"].limits() == ">= 0"
    assert rules["mode"].limits() == "one of ['fast', 'slow']" and rules["enabled"].limits() == ""
    assert schema.type_name(tuple[str, ...]) == "a list of str" and schema.type_name(int | None) == "int or null"


def test_an_unsupported_annotation_is_a_programming_error():
    @dataclass
    class Odd:
        value: set[int] = field(default_factory=set)

    with pytest.raises(TypeError, match="unsupported type"):
        schema.problems(Odd, {"value": [1]})


@dataclass(frozen=True)
class Tunable:
    """A configuration of which some fields may change while the program runs."""

    gain: float = setting(1.0, low=0, high=10, live=True)
    mode: str = setting("a", choices=("a", "b"), live=True)
    model: str = setting("m.pt", read_only="loads the model: restart")
    names: tuple[str, ...] = ("x",)

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if values.get("mode") == "b" and values.get("gain", 0) > 5:
            yield "gain", "mode b takes a gain of at most 5"


def test_a_change_is_checked_as_at_start_and_read_only_fields_say_why():
    before = Tunable()
    after = schema.changed(before, {"gain": 3, "mode": "b"}, "change")
    assert after == Tunable(gain=3.0, mode="b") and isinstance(after.gain, float) and before == Tunable()
    with pytest.raises(SchemaError) as info:
        schema.changed(before, {"model": "other.pt", "names": ["y"], "gain": 11, "mode": "c", "gian": 1}, "change")
    assert info.value.problems == [
        "model is read-only: loads the model: restart",
        "names is read-only",
        "gian: unknown key (did you mean 'gain'?)",
        "gain: 11.0 is outside the allowed range [0, 10]",
        "mode: 'c' is not one of ['a', 'b']",
    ]
    with pytest.raises(SchemaError, match=r"^change: gain: mode b takes a gain of at most 5$"):
        schema.changed(before, {"gain": 6, "mode": "b"}, "change")


def test_run_time_reads_as_in_the_documentation():
    rules = {e.name: e.rule for e in schema.entries(Tunable)}
    assert rules["gain"].run_time() == "live" and rules["names"].run_time() == "read-only"
    assert rules["model"].run_time() == "read-only: loads the model: restart"
    with pytest.raises(TypeError, match="live or read-only"):
        schema.Rule(live=True, read_only="why")
