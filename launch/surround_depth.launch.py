"""Start the surround depth node (and optionally RViz) on a vehicle or against a replayed bag.

    ros2 launch surround_depth_ros surround_depth.launch.py \
        params_file:=/path/to/params.yaml namespace:=/perception use_sim_time:=true rviz:=true \
        backend:=tensorrt checkpoint:=/path/to/student.pt respawn:=true autostart:=true

Arguments named in OVERRIDABLE win over the parameters file when given; left empty, the file
decides. With rviz:=true the RViz view is generated from params_file and namespace at launch (the
cameras it names, under that namespace), as `surround-depth rviz` writes it.
"""

import atexit
import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from surround_depth_ros.core.params import settings_from_file
from surround_depth_ros.ros.rviz_config import rviz_config

# Node parameters that can be set from the command line, with their help.
OVERRIDABLE = {
    "backend": "auto | torch | tensorrt | onnxruntime",
    "checkpoint": "student checkpoint (.pt)",
    "device": "cpu | cuda | cuda:N",
    "precision": "fp32 | fp16 | bf16",
}


def _depth_node(context: LaunchContext) -> list:
    overrides = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDABLE}
    overrides = {name: value for name, value in overrides.items() if value}
    overrides["use_sim_time"] = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    overrides["autostart"] = ParameterValue(LaunchConfiguration("autostart"), value_type=bool)
    respawn = LaunchConfiguration("respawn").perform(context).strip().lower() in ("true", "1", "yes")
    return [
        Node(
            package="surround_depth_ros",
            executable="surround_depth_node",
            name="surround_depth",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), overrides],
            # Restarted after any exit but a launch shutdown; the delay paces a node that cannot start.
            respawn=respawn,
            respawn_delay=float(LaunchConfiguration("respawn_delay").perform(context)),
        )
    ]


def _rviz(context: LaunchContext) -> list:
    """RViz on a view written now for the rig of params_file in namespace; the file goes when launch exits."""
    settings = settings_from_file(LaunchConfiguration("params_file").perform(context))
    text = rviz_config(settings, LaunchConfiguration("namespace").perform(context))
    handle, path = tempfile.mkstemp(prefix="surround_depth_", suffix=".rviz")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    atexit.register(os.remove, path)
    return [
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", path],
            parameters=[{"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("surround_depth_ros")
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "surround_depth.param.yaml"),
            description="Node parameters (see config/surround_depth.param.yaml).",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its topics."),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="Follow /clock, e.g. when replaying a bag."
        ),
        DeclareLaunchArgument(
            "rviz",
            default_value="false",
            description="Also start RViz on a view generated from params_file and namespace.",
        ),
        DeclareLaunchArgument(
            "autostart",
            default_value="true",
            description="true: the lifecycle node configures and activates itself at start; false: it stays "
            "unconfigured for a lifecycle manager (nav2_lifecycle_manager, Autoware).",
        ),
        DeclareLaunchArgument(
            "respawn", default_value="false", description="Restart the depth node when it exits (e.g. after a crash)."
        ),
        DeclareLaunchArgument(
            "respawn_delay", default_value="2.0", description="Seconds to wait before a respawn (with respawn:=true)."
        ),
    ]
    arguments += [
        DeclareLaunchArgument(name, default_value="", description=f"{help_text}; empty: as params_file says.")
        for name, help_text in OVERRIDABLE.items()
    ]
    rviz = OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription([*arguments, OpaqueFunction(function=_depth_node), rviz])
