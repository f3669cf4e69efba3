"""The package as ROS 2 and pip see it: metadata that agrees, data files installed, a ROS-free core."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import surround_depth_ros
from surround_depth_ros.core.params import defaults

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "surround_depth_ros"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def _package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def test_package_xml_is_format_3_ament_python_and_matches_setup(wheel):
    xml = _package_xml()
    assert xml.get("format") == "3"
    assert xml.findtext("export/build_type") == "ament_python"
    assert xml.findtext("name") == PACKAGE
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    lines = wheel.read(metadata).decode().splitlines()
    assert f"Name: {PACKAGE}" in lines
    assert f"Version: {xml.findtext('version')}" in lines
    assert surround_depth_ros.__version__ == xml.findtext("version")


def test_runtime_dependencies_are_declared():
    """Every ROS package and third-party module the code imports has its rosdep key in package.xml."""
    rosdep_of_module = {
        "rclpy": "rclpy",
        "rcl_interfaces": "rclpy",
        "sensor_msgs": "sensor_msgs",
        "geometry_msgs": "geometry_msgs",
        "std_msgs": "std_msgs",
        "diagnostic_msgs": "diagnostic_msgs",
        "tf2_msgs": "tf2_msgs",
        "rosgraph_msgs": "rosgraph_msgs",
        "builtin_interfaces": "rclpy",
        "numpy": "python3-numpy",
        "yaml": "python3-yaml",
        "cv2": "python3-opencv",
        "tqdm": "python3-tqdm",
        "matplotlib": "python3-matplotlib",
        "torch": "python3-torch",
        "launch": "launch",
        "launch_ros": "launch_ros",
        "ament_index_python": "launch_ros",
    }
    # Optional back-ends and tool-only libraries, documented in the README, not needed to run the node.
    optional = {"onnx", "onnxruntime", "torch_tensorrt", "tensorrt", "rosbags", "transformers", "mcap"}
    declared = {e.text for e in _package_xml() if e.tag in ("depend", "exec_depend")}
    stdlib = set(sys.stdlib_module_names)
    missing = {}
    for path in [*ROOT.glob(f"{PACKAGE}/**/*.py"), *ROOT.glob("launch/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in stdlib or top == PACKAGE or top in optional:
                    continue
                key = rosdep_of_module.get(top)
                if key is None or key not in declared:
                    missing.setdefault(top, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imports without a package.xml dependency (add the rosdep key): {missing}"


def test_data_files_and_entry_points_are_installed(wheel):
    names = set(wheel.namelist())
    data = f"{PACKAGE}-{surround_depth_ros.__version__}.data/data/"
    expected = {f"share/ament_index/resource_index/packages/{PACKAGE}", f"share/{PACKAGE}/package.xml"}
    for folder in ("launch", "config"):
        files = [p for p in (ROOT / folder).iterdir() if p.is_file()]
        assert files, f"{folder}/ is empty"
        expected |= {f"share/{PACKAGE}/{folder}/{p.name}" for p in files}
    assert {data + e for e in expected} <= names, sorted(data + e for e in expected - {n[len(data) :] for n in names})
    entry_points = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert f"surround_depth_node = {PACKAGE}.ros.supervisor:main" in entry_points
    assert f"surround-depth = {PACKAGE}.tools.cli:main" in entry_points


def test_core_imports_without_ros():
    """Everything outside surround_depth_ros.ros imports in an interpreter where ROS is absent."""
    modules = [
        m.name
        for m in pkgutil.walk_packages(surround_depth_ros.__path__, f"{PACKAGE}.")
        if not m.name.startswith(f"{PACKAGE}.ros")
    ]
    blocked = ["rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "diagnostic_msgs", "tf2_msgs", "rosgraph_msgs"]
    code = (
        "import importlib, sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        f"for module in {modules!r}: importlib.import_module(module)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_launch_file_is_valid_python_and_passes_declared_parameters():
    """launch_ros is absent here: compile the file and check what it passes against the node's table."""
    path = ROOT / "launch" / "surround_depth.launch.py"
    tree = ast.parse(path.read_text())
    compile(tree, str(path), "exec")
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    declared = set(defaults())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]

    def called(name: str) -> list[ast.Call]:
        return [c for c in calls if getattr(c.func, "id", "") == name]

    overridable = next(
        n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "OVERRIDABLE"
    )
    overrides = {key.value for key in overridable.keys}
    assert overrides and overrides <= declared, overrides - declared
    # Every argument used is declared and vice versa (the overridable ones through a comprehension).
    arguments = {c.args[0].value for c in called("DeclareLaunchArgument") if isinstance(c.args[0], ast.Constant)}
    used = {c.args[0].value for c in called("LaunchConfiguration") if isinstance(c.args[0], ast.Constant)}
    assert used == arguments, f"declared but unused: {arguments - used}; used but undeclared: {used - arguments}"
    # Parameters set by name (`overrides["autostart"] = ...`) are the node's own, or ROS's use_sim_time.
    passed = {
        t.slice.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
    }
    assert "autostart" in passed and passed <= declared | {"use_sim_time"}, passed - declared
    executables = {k.value.value for c in called("Node") for k in c.keywords if k.arg == "executable"}
    assert executables == {"surround_depth_node", "rviz2"}
    assert "use_sim_time" in path.read_text()


def test_colcon_does_not_build_the_generated_tf2_msgs():
    assert (ROOT / "interfaces" / "tf2_msgs" / "COLCON_IGNORE").exists()


def test_tf2_msgs_has_the_type_hash_of_the_real_package():
    """The generated TFMessage must hash like jazzy/kilted's, or real /tf_static publishers would not match it."""
    import os

    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    found = [Path(p) / "share" / "tf2_msgs" / "msg" / "TFMessage.json" for p in filter(None, prefixes)]
    found = [p for p in found if p.is_file()]
    assert found, "no tf2_msgs/msg/TFMessage.json installed: run scripts/setup_env.sh"
    real = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"
    assert real in found[0].read_text()


def test_image_size_argument():
    import argparse

    from surround_depth_ros.tools.arguments import image_size

    assert image_size("640x352") == (640, 352) and image_size("1600X900") == (1600, 900)
    for bad, message in [("large", "expected WIDTHxHEIGHT"), ("0x10", "must be positive"), ("1x2x3", "WIDTHxHEIGHT")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            image_size(bad)
