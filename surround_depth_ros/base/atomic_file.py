"""Files that appear whole or not at all: write to a temporary name, then rename.

A cache entry (ONNX export, TensorRT engine) or checkpoint written in place and interrupted (a
crash, a full disk, a kill during a minutes-long build) leaves a truncated file that every later
start would trust. A rename within one folder is atomic on POSIX and Windows, so readers see
either the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed to `path` when the block succeeds.

    The temporary name keeps the suffix (writers such as torch_tensorrt.save choose the format
    from it) and holds the process id, so concurrent writers never share one. On failure it is
    removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
