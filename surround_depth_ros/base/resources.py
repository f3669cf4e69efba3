"""Files shipped with the package (config/, models/): found in the source tree or where ROS installed them.

One lookup for every packaged file, so that a source checkout, a pip/venv install and a colcon
install (share/surround_depth_ros under any AMENT_PREFIX_PATH entry) behave alike.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "surround_depth_ros"


def packaged_file_candidates(*parts: str) -> list[Path]:
    """Where `config/x.yaml`-like packaged files may lie: the source tree first, then installed share dirs."""
    relative = Path(*parts)
    candidates = [Path(__file__).resolve().parents[2] / relative]
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    candidates += [Path(prefix) / "share" / PACKAGE / relative for prefix in filter(None, prefixes)]
    return candidates


def packaged_file(*parts: str) -> Path:
    """The first existing candidate, or FileNotFoundError naming every place looked in."""
    candidates = packaged_file_candidates(*parts)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{Path(*parts)} is not installed; looked in " + ", ".join(map(str, candidates)))
