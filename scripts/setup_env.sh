#!/usr/bin/env bash
# Set up everything surround_depth_ros needs in one virtual environment (default: .venv).
#
# Without a ROS distribution: pinned ROS 2 wheels (rclpy over Fast DDS + messages), tf2_msgs
# generated from interfaces/tf2_msgs (same type hash as the real package), torch on the CPU,
# the other dependencies, and this package (editable).
# With a ROS distribution sourced ($ROS_DISTRO set and rclpy importable): a venv that sees the
# distribution's packages; only the Python dependencies and this package are installed, nothing
# is generated.
#
# Idempotent: a fingerprint of the inputs is stored in the venv; a second run that finds it
# unchanged returns in about a second. SDR_FORCE_SETUP=1 forces a full run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SDR_VENV:-$ROOT/.venv}
STAMP=$VENV/.surround_depth_setup
PIP_FLAGS=(--quiet --disable-pip-version-check)

# pip warns once per package about this machine's absent local index folders; keep the rest.
pip_install() { "$PY" -m pip install "${PIP_FLAGS[@]}" "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; }

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

if [[ -n "${ROS_DISTRO:-}" ]] && python3 -c "import rclpy" 2>/dev/null; then
    MODE="ros-distro-$ROS_DISTRO"
else
    MODE="wheels"
fi

fingerprint() {
    (
        cd "$ROOT"
        echo "$MODE"
        cat requirements/*.txt scripts/setup_env.sh setup.py setup.cfg package.xml
        find interfaces -type f | sort | xargs cat
    ) | sha256sum | cut -d' ' -f1
}
WANT=$(fingerprint)
if [[ -z "${SDR_FORCE_SETUP:-}" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
    say "environment in $VENV is up to date ($MODE)"
    exit 0
fi

START=$SECONDS
if [[ $MODE == wheels ]]; then
    PYTHON=${PYTHON:-python3}
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
        die "the ROS 2 wheels are built for CPython 3.11; set PYTHON=/path/to/python3.11 (found $("$PYTHON" --version 2>&1))"
    [[ -x "$VENV/bin/python" ]] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
else
    [[ -x "$VENV/bin/python" ]] || {
        say "creating $VENV on top of ROS 2 $ROS_DISTRO (system site packages visible)"
        python3 -m venv --system-site-packages "$VENV"
    }
fi
PY=$VENV/bin/python

if [[ $MODE == wheels ]]; then
    say "installing ROS 2 wheels, torch (CPU) and the Python dependencies"
    pip_install -r "$ROOT/requirements/ros-wheels.txt" \
        -r "$ROOT/requirements/python.txt" -r "$ROOT/requirements/test.txt"
else
    say "installing the Python dependencies (ROS packages come from $ROS_DISTRO)"
    pip_install -r "$ROOT/requirements/python.txt" -r "$ROOT/requirements/test.txt"
fi

if [[ $MODE == wheels ]]; then
    # Generate tf2_msgs: the wheels ship no tf2_msgs, and tf2_ros cannot be installed.
    say "generating tf2_msgs from interfaces/tf2_msgs"
    command -v cmake >/dev/null || pip_install cmake
    PATH=$VENV/bin:$PATH
    PY_INCLUDE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    NP_INCLUDE=$("$PY" -c 'import numpy; print(numpy.get_include())')
    # The wheels' CMake exports name the include dirs of the machine they were built on.
    for f in "$VENV"/share/*/cmake/export_*__rosidl_generator_pyExport.cmake; do
        sed -i -E \
            -e "s#/opt/python/cp311-cp311/include/python3\.11#$PY_INCLUDE#g" \
            -e "s#[^;\"]*/site-packages/numpy/_core/include#$NP_INCLUDE#g" "$f"
    done
    BUILD=$VENV/build/tf2_msgs
    rm -rf "$BUILD" && mkdir -p "$BUILD"
    AMENT_PREFIX_PATH=$VENV cmake -S "$ROOT/interfaces/tf2_msgs" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
        -DBUILD_TESTING=OFF >"$BUILD.log" 2>&1 || die "tf2_msgs configure failed, see $BUILD.log"
    AMENT_PREFIX_PATH=$VENV cmake --build "$BUILD" -j "$(nproc)" >>"$BUILD.log" 2>&1 ||
        die "tf2_msgs build failed, see $BUILD.log"
    cmake --install "$BUILD" >>"$BUILD.log" 2>&1 || die "tf2_msgs install failed, see $BUILD.log"
fi

say "installing surround_depth_ros (editable)"
pip_install --no-deps --no-build-isolation -e "$ROOT"

say "checking the environment"
"$PY" - <<'EOF'
import rclpy  # noqa: F401
import torch
from tf2_msgs.msg import TFMessage
from sensor_msgs.msg import Image  # noqa: F401
import surround_depth_ros

print(f"[setup] rclpy ok, torch {torch.__version__}, tf2_msgs from {TFMessage.__module__}, "
      f"surround_depth_ros {surround_depth_ros.__version__}")
EOF
echo "$WANT" >"$STAMP"
say "done in $((SECONDS - START)) s ($MODE). Activate with: source $VENV/bin/activate"
