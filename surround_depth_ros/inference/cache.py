"""The model cache (exported ONNX files, TensorRT engines): entries keyed and verified by content, not by name.

A file name is only where to look. Another model's ONNX of the same shape copied over a cached
one ran silently (AbsRel 0.959 instead of 0.137), and engines of two GPUs sharing a folder
replaced each other. So every entry has a JSON sidecar recording its key (the checkpoint's weights
checksum, the neighbour table, shapes, precision and, for engines, the software and GPU) and the
SHA-256 of the entry's own bytes, computed before the entry is renamed into place. An entry is
used only when its sidecar records exactly the expected key and its bytes still hash to the
recorded value; a swapped, truncated or foreign file (no sidecar) is rebuilt with a warning.

An entry that verifies is only read, so a read-only cache of entries built ahead of time works.
A cache folder that cannot be made or written when an entry must be built is a start-up error
naming the folder: see `ensure_cache_dir` for why it is not a silent fall-back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from surround_depth_ros.base.atomic_file import atomic_path
from surround_depth_ros.inference.backend import BackendUnavailable

CACHE_ENV = "SURROUND_DEPTH_CACHE"


def default_cache_dir() -> Path:
    """Where exported ONNX files and TensorRT engines are kept ($SURROUND_DEPTH_CACHE overrides)."""
    return Path(os.environ.get(CACHE_ENV, "~/.cache/surround_depth_ros")).expanduser()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(entry: Path) -> Path:
    """The JSON file recording what `entry` was built from and its SHA-256."""
    return entry.with_suffix(".json")


def name_part(text: str) -> str:
    """`text` made safe and readable inside a file name ("NVIDIA H100 80GB HBM3" -> "NVIDIA-H100-80GB-HBM3")."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


def _plain(key: dict) -> dict:
    """`key` as it reads back from JSON (tuples become lists), so that a recorded key compares equal."""
    return json.loads(json.dumps(key))


def entry_problem(entry: Path, key: dict) -> str | None:
    """Why the cache entry at `entry` cannot be used for `key`; None when it can."""
    sidecar = sidecar_path(entry)
    if not entry.is_file():
        return "not in the cache"
    try:
        recorded = json.loads(sidecar.read_text())
    except FileNotFoundError:
        return f"it has no sidecar {sidecar.name}, so nothing says what it was built from"
    except (OSError, ValueError) as error:
        return f"its sidecar {sidecar.name} is unreadable ({type(error).__name__})"
    if not isinstance(recorded, dict):
        return f"its sidecar {sidecar.name} is not a JSON object"
    changed = [f"{k} {recorded.get(k)!r} -> {v!r}" for k, v in _plain(key).items() if recorded.get(k) != v]
    if changed:
        return "built for another " + "; ".join(changed)
    try:
        digest = file_sha256(entry)
    except OSError as error:
        return f"it cannot be read ({error.strerror})"
    if digest != recorded.get("sha256"):
        return (
            f"its bytes (SHA-256 {digest[:12]}...) are not the ones recorded ({str(recorded.get('sha256'))[:12]}...): "
            "the file was replaced, cut short or damaged"
        )
    return None


def ensure_cache_dir(directory: Path) -> None:
    """Make `directory` for a new entry, or raise BackendUnavailable naming it and how to choose another.

    Not a fall-back to no cache: without one a TensorRT engine is built again at every start (minutes
    before the first depth image, on every boot), and `export --build-engine` installs engines into
    this same folder. A wrong $SURROUND_DEPTH_CACHE is a deployment mistake best fixed once, at the
    first start, not discovered as a slow start in the field.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = "a file is in the way" if isinstance(error, (FileExistsError, NotADirectoryError)) else error.strerror
        raise BackendUnavailable(
            f"the model cache folder {directory} cannot be created ({reason}); set {CACHE_ENV} (or --cache-dir) to a "
            "writable folder"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BackendUnavailable(
            f"the model cache folder {directory} is not writable; set {CACHE_ENV} (or --cache-dir) to a writable "
            "folder, or build the entries ahead of time as a user who may write there"
        )


@contextlib.contextmanager
def cache_entry(entry: Path, key: dict) -> Iterator[Path]:
    """A temporary path to write the entry to; on success the entry, then its sidecar, are renamed into place.

    The sidecar records `key` and the SHA-256 of the bytes written, hashed before the rename, so two
    processes building the same entry at once can at worst leave a pair that fails verification (and is
    rebuilt), never one that verifies with the wrong bytes. An interrupted build leaves no entry.
    """
    ensure_cache_dir(entry.parent)
    with atomic_path(entry) as tmp:
        yield tmp
        digest = file_sha256(tmp)
    with atomic_path(sidecar_path(entry)) as tmp:
        tmp.write_text(json.dumps({**_plain(key), "sha256": digest}, indent=2))
