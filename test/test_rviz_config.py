"""The RViz view names the node's outputs for any rig and namespace: generated, by `surround-depth rviz` and at launch.

launch_ros is absent here: the launch file runs against stand-ins for the launch classes that keep what
they are given, so its RViz function really writes the view it starts rviz2 on.
"""

from __future__ import annotations

import atexit
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from surround_depth_ros.core.params import settings_from_file
from surround_depth_ros.ros.launcher import write_params
from surround_depth_ros.ros.rviz_config import rviz_config
from surround_depth_ros.tools.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "surround_depth.param.yaml"
DDAD_CAMERAS = ["CAMERA_09", "CAMERA_01", "CAMERA_07", "CAMERA_05", "CAMERA_08", "CAMERA_06"]  # not DDAD's order
NAMESPACES = {"": "/", "/": "/", "/perception/front": "/perception/front/"}


@pytest.fixture
def ddad_params(tmp_path) -> Path:
    return write_params(tmp_path / "ddad.yaml", {"cameras": DDAD_CAMERAS, "base_frame": "ddad_base"})


def _displays(text: str) -> dict[str, dict]:
    """{topic: display} of a .rviz text."""
    config = yaml.safe_load(text)["Visualization Manager"]
    return {d["Topic"]["Value"]: d for d in config["Displays"] if "Topic" in d}


def _fixed_frame(text: str) -> str:
    return yaml.safe_load(text)["Visualization Manager"]["Global Options"]["Fixed Frame"]


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("rig", ["shipped", "ddad"])
def test_every_depth_image_and_the_cloud_under_the_namespace(rig, namespace, ddad_params):
    params = SHIPPED if rig == "shipped" else ddad_params
    settings = settings_from_file(params)
    text = rviz_config(settings, namespace)
    prefix = NAMESPACES[namespace]
    displays = _displays(text)
    assert displays[f"{prefix}depth/points"]["Class"] == "rviz_default_plugins/PointCloud2"
    assert displays[f"{prefix}depth/points"]["Color Transformer"] == "RGB8"
    depth = [d for d in displays.values() if d["Name"].endswith(" depth")]
    assert [d["Topic"]["Value"] for d in depth] == [f"{prefix}{camera}/depth/image" for camera in settings.cameras]
    assert all(d["Class"] == "rviz_default_plugins/Image" and d["Enabled"] for d in depth)
    assert _fixed_frame(text) == ("base_link" if rig == "shipped" else "ddad_base")


def test_camera_images_follow_the_input_topics_and_are_off_unless_asked(tmp_path):
    values = {
        "cameras": ["CAMERA_01", "CAMERA_05"],
        "image_topic": "/sensors/{camera}/image",
        "image_transport": "compressed",
        "input_reliability": "best_effort",
        "depth_encoding": "16UC1",
        "publish_cloud": False,
    }
    settings = settings_from_file(write_params(tmp_path / "params.yaml", values))
    off, on = _displays(rviz_config(settings, "/car")), _displays(rviz_config(settings, "/car", camera_images=True))
    image = "/sensors/CAMERA_05/image/compressed"  # absolute pattern: outside the namespace
    assert not off[image]["Enabled"] and on[image]["Enabled"]
    assert on[image]["Topic"]["Reliability Policy"] == "Best Effort"
    assert on["/car/CAMERA_05/depth/image"]["Max Value"] == 60_000  # millimetres
    assert "/car/depth/points" not in on


def test_an_invalid_namespace_is_refused():
    with pytest.raises(ValueError, match="not a valid ROS namespace"):
        rviz_config(settings_from_file(None), "/perception/2front")


def test_the_command_prints_the_view_and_writes_it(ddad_params, tmp_path):
    command = [sys.executable, "-m", "surround_depth_ros.tools.cli", "rviz", "--params", str(ddad_params)]
    result = subprocess.run([*command, "--namespace", "/perception/front"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == rviz_config(settings_from_file(ddad_params), "/perception/front")
    assert main(["rviz", "--params", str(ddad_params), "--output", str(tmp_path / "view.rviz")]) == 0
    assert (tmp_path / "view.rviz").read_text() == rviz_config(settings_from_file(ddad_params), "/")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "params file {path} does not exist"),
        (
            "/**:\n  ros__parameters:\n    cameras: [CAM_FRONT, 2nd]\n",
            "invalid parameters in {path}: cameras: '2nd' is not a valid ROS name: use letters, digits and "
            "underscores, not starting with a digit (e.g. 'CAM_2nd')",
        ),
    ],
)
def test_a_bad_params_file_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_text(content)
    assert main(["rviz", "--params", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"surround-depth rviz: error: {message.format(path=path)}\n"
    assert captured.out == ""


class _Kept:
    """Stands for a launch class: keeps what it was given."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args, self.kwargs = args, kwargs


class _Configuration(_Kept):
    def perform(self, context: dict) -> str:
        return context[self.args[0]]


@pytest.fixture
def launch_file(monkeypatch):
    """The launch file's module, imported with stand-ins for launch, launch_ros and ament_index_python."""
    stand_ins = {
        "ament_index_python": {},
        "ament_index_python.packages": {"get_package_share_directory": lambda package: str(ROOT)},
        "launch": {"LaunchContext": dict, "LaunchDescription": _Kept},
        "launch.actions": {"DeclareLaunchArgument": _Kept, "OpaqueFunction": _Kept},
        "launch.conditions": {"IfCondition": _Kept},
        "launch.substitutions": {"LaunchConfiguration": _Configuration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": _Kept},
        "launch_ros.parameter_descriptions": {"ParameterValue": _Kept},
    }
    for name, members in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**members))
    spec = importlib.util.spec_from_file_location("surround_depth_launch", ROOT / "launch" / "surround_depth.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_declares_autostart_true_and_passes_it_as_a_bool(launch_file):
    description = launch_file.generate_launch_description()
    declared = {
        a.args[0]: a.kwargs for a in description.args[0] if isinstance(a, _Kept) and "default_value" in a.kwargs
    }
    assert declared["autostart"]["default_value"] == "true"
    assert "lifecycle manager" in declared["autostart"]["description"]
    context = {"respawn": "false", "respawn_delay": "2.0", **dict.fromkeys(launch_file.OVERRIDABLE, "")}
    (node,) = launch_file._depth_node(context)
    autostart = node.kwargs["parameters"][1]["autostart"]
    assert autostart.args[0].args == ("autostart",) and autostart.kwargs == {"value_type": bool}


def test_launch_starts_rviz_on_a_view_generated_from_params_and_namespace(launch_file, ddad_params, monkeypatch):
    description = launch_file.generate_launch_description()
    (rviz,) = [a for a in description.args[0] if a.kwargs.get("function") is launch_file._rviz]
    assert rviz.kwargs["condition"].args[0].args == ("rviz",)
    cleanups = []
    monkeypatch.setattr(atexit, "register", lambda *call: cleanups.append(call))
    (node,) = launch_file._rviz({"params_file": str(ddad_params), "namespace": "/perception/front"})
    assert node.kwargs["executable"] == "rviz2"
    flag, path = node.kwargs["arguments"]
    assert flag == "-d"
    assert Path(path).read_text() == rviz_config(settings_from_file(ddad_params), "/perception/front")
    ((remove, removed),) = cleanups
    remove(removed)  # what launch does on exit
    assert not Path(path).exists()
    assert "surround_depth.rviz" not in (ROOT / "launch" / "surround_depth.launch.py").read_text()
