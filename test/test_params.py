"""The parameter table: the shipped YAML is valid and complete, and every mistake is named."""

from pathlib import Path

import pytest

from surround_depth_ros.params import NODE_PARAMETERS, defaults, load_params_file, spec, validate

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_params_file_sets_every_declared_parameter_validly():
    values = load_params_file(ROOT / "config" / "surround_depth.param.yaml")
    assert set(values) == {p.name for p in NODE_PARAMETERS}
    assert validate(values) == []


def test_defaults_are_valid_and_documented():
    assert validate(defaults()) == []
    for p in NODE_PARAMETERS:
        assert p.description.endswith("."), p.name


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("diagnostics_period_s", 0.0, "diagnostics_period_s: 0.0 is outside the allowed range [0.05, 60.0]"),
        ("diagnostics_period_s", float("nan"), "diagnostics_period_s: must be finite, got nan"),
        ("expected_rate_hz", True, "expected_rate_hz: expected float, got bool True"),
        ("cameras", [], "cameras: needs at least 1 entries, got 0"),
        ("cameras", ["A", ""], "cameras: expected a list of non-empty strings, got ['A', '']"),
        ("base_frame", 3, "base_frame: expected str, got int 3"),
        ("nonsense", 1, "nonsense: unknown parameter"),
    ],
)
def test_each_mistake_is_named(name, value, problem):
    problems = validate({name: value})
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_integer_is_accepted_for_float():
    assert spec("expected_rate_hz").problems(10) == []


def test_node_sections_and_wildcard_are_merged(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    base_frame: a\n"
        "/ns/surround_depth:\n  ros__parameters:\n    base_frame: b\n"
        "other_node:\n  ros__parameters:\n    base_frame: c\n"
    )
    assert load_params_file(path) == {"base_frame": "b"}
    path.write_text("/**:\n  base_frame: a\n")
    with pytest.raises(ValueError, match="has no 'ros__parameters' mapping"):
        load_params_file(path)


def test_readme_documents_every_parameter():
    readme = (ROOT / "README.md").read_text()
    for p in NODE_PARAMETERS:
        assert f"| `{p.name}` |" in readme, f"README parameter table lacks {p.name}"
