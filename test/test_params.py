"""The parameter table: the shipped YAML is valid and complete, and every mistake is named."""

import re
from pathlib import Path

import pytest
import yaml

from surround_depth_ros.core.params import NODE_PARAMETERS, defaults, load_params_file, spec, topic_problem, validate

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_params_file_sets_every_declared_parameter_validly():
    values = load_params_file(ROOT / "config" / "surround_depth.param.yaml")
    assert set(values) == {p.name for p in NODE_PARAMETERS}
    assert validate(values) == []
    assert values == defaults(), "the shipped file and the declared defaults disagree"


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
        ("sync_windows_s", 0.1, "sync_windows_s: unknown parameter, ignored (did you mean 'sync_window_s'?)"),
        ("sync_anchor", "CAM_TOP", "sync_anchor: 'CAM_TOP' is not one of the cameras ['CAM_FRONT', "),
        ("radars", ["CAM_FRONT"], "radars: ['CAM_FRONT'] are also camera names"),
        ("image_topic", "{cam}/image_raw", "image_topic: '{cam}/image_raw' has the placeholder(s) ['{cam}']"),
        ("image_topic", "{0}/image_raw", "image_topic: '{0}/image_raw' has the placeholder(s) ['{0}']"),
        ("image_topic", "{camera}/{", "image_topic: '{camera}/{' is not a valid pattern (Single '{' encountered"),
        ("camera_info_topic", "", "camera_info_topic: '' lacks {camera}, so every camera would share one topic"),
        ("image_topic", "image_raw", "image_topic: 'image_raw' lacks {camera}, so every camera would share one"),
        ("radar_topic", "{camera}/points", "radar_topic: '{camera}/points' has the placeholder(s) ['{camera}']"),
        ("image_topic", "{camera}//raw", "image_topic: '{camera}//raw' is not a valid topic pattern: a topic name"),
        ("image_topic", "{camera}/2d", "image_topic: '{camera}/2d' is not a valid topic pattern: token '2d'"),
        ("cameras", ["9CAM"], "cameras: '9CAM' is not a valid ROS name: use letters, digits and underscores"),
        ("cameras", ["CAM BACK"], "cameras: 'CAM BACK' is not a valid ROS name"),
    ],
)
def test_each_mistake_is_named(name, value, problem):
    problems = validate({name: value})
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_bad_name_suggests_a_valid_one():
    assert "(e.g. 'CAM_BACK')" in validate({"cameras": ["CAM BACK"]})[0]
    assert "(e.g. 'CAM_9CAM')" in validate({"cameras": ["9CAM"]})[0]


@pytest.mark.parametrize(
    "topic", ["a", "/a/b_c", "~/a", "a__b", "_a", "9a", "a/9b", "a b", "a//b", "a/", "/", "", "~a", "a/~/b", "a-b"]
)
def test_topic_rule_agrees_with_rclpy(topic):
    """The ROS-free rule accepts exactly the names rclpy accepts (expanded in a namespace)."""
    pytest.importorskip("rclpy")
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.expand_topic_name import expand_topic_name
    from rclpy.validate_full_topic_name import validate_full_topic_name

    try:
        validate_full_topic_name(expand_topic_name(topic, "node", "/ns"))
        accepted = True
    except (InvalidTopicNameException, ValueError, RuntimeError):
        accepted = False
    assert (topic_problem(topic) == "") == accepted, (topic, topic_problem(topic))


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


def test_readme_documents_every_parameter_with_its_default():
    readme = (ROOT / "README.md").read_text()
    for p in NODE_PARAMETERS:
        row = re.search(rf"^\| `{p.name}` \| [^|]* \| ([^|]*) \|", readme, re.MULTILINE)
        assert row, f"README parameter table lacks {p.name}"
        if p.type != "str[]":
            shown = row.group(1).strip("`")
            assert shown == p.default or yaml.safe_load(shown) == p.default, f"README: {p.name} default {shown}"


@pytest.mark.parametrize(
    ("values", "problems"),
    [
        (
            {
                "cameras": ["9CAM", "CAM BACK"],
                "image_topic": "{cam}/image_raw",
                "camera_info_topic": "",
                "radar_topic": "{0}/points",
            },
            [
                "cameras: '9CAM' is not a valid ROS name",
                "cameras: 'CAM BACK' is not a valid ROS name",
                "image_topic: '{cam}/image_raw' has the placeholder(s) ['{cam}']; the only one is {camera}",
                "camera_info_topic: '' lacks {camera}",
                "radar_topic: '{0}/points' has the placeholder(s) ['{0}']",
            ],
        ),
        (
            {
                "sync_anchor": "CAM_TOP",
                "radars": ["CAM_FRONT"],
                "image_topic": "{camera}/{",
                "camera_info_topic": "camera_info",
                "sync_windows_s": 0.1,
            },
            [
                "sync_anchor: 'CAM_TOP' is not one of the cameras",
                "radars: ['CAM_FRONT'] are also camera names",
                "image_topic: '{camera}/{' is not a valid pattern",
                "camera_info_topic: 'camera_info' lacks {camera}",
                "sync_windows_s: unknown parameter, ignored (did you mean 'sync_window_s'?)",
            ],
        ),
        ({"cameras": []}, ["cameras: needs at least 1 entries, got 0"]),
    ],
    ids=["names-and-patterns", "cross-checks-and-typo", "no-cameras"],
)
def test_the_node_exits_2_naming_each_mistake(tmp_path, values, problems):
    """The real node process, started with a parameters file: no traceback, exit 2, every problem said."""
    pytest.importorskip("rclpy")
    from ros_harness import NodeProcess, write_params

    node = NodeProcess(write_params(tmp_path / "params.yaml", values))
    assert node.wait() == 2, node.output
    for problem in problems:
        assert problem in node.output, f"{problem!r} not in:\n{node.output}"
    assert "Traceback" not in node.output, node.output
