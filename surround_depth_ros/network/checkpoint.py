"""Student checkpoints: weights plus everything needed to run them the way they were trained.

A checkpoint records the architecture (preset config), the input size, the bin settings, the
rig it was trained for (in the rig YAML structure of `rig.rig_to_dict`: camera names, sizes,
intrinsics, extrinsics; radars), the camera adjacency and a SHA-256 of the weights, in a format
with a version number (version 1 files stored the rig as K / T_base_cam matrices; they still
load). It holds only tensors and plain Python types so that it loads with
`torch.load(weights_only=True)` (no code runs from the file). Everything that can go wrong on
load raises `CheckpointError` saying what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass, field
from pathlib import Path

import torch

from surround_depth_ros.base.atomic_file import atomic_path
from surround_depth_ros.network.student import StudentConfig, SurroundDepthStudent
from surround_depth_ros.sensors.rig import Camera, CameraRig, Radar, rig_from_dict, rig_to_dict

FORMAT = "surround_depth_ros.student"
# 2: the rig in the rig YAML structure; 1: the rig as K / T_base_cam matrices (read, converted).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, FORMAT_VERSION)


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used; the message names the file and the remedy."""


@dataclass
class CheckpointInfo:
    """What a checkpoint records besides the weights."""

    path: Path
    config: StudentConfig
    input_size: tuple[int, int]
    checksum: str
    version: int = FORMAT_VERSION
    rig: CameraRig | None = None
    adjacency: list[list[int]] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def bins(self) -> dict:
        """The bin settings: count, depth range, spacing, temperature."""
        c = self.config
        return {
            "n_bins": c.n_bins,
            "min_depth": c.min_depth,
            "max_depth": c.max_depth,
            "log": c.log_bins,
            "temperature": c.bin_temperature,
        }


def weights_checksum(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _matrix_rig(data: dict) -> CameraRig:
    """A version-1 checkpoint's rig (K / T_base_cam / T_base_radar matrices as lists) as a `CameraRig`."""
    cameras = [
        Camera(c["name"], c["width"], c["height"], c["K"], c["T_base_cam"], c.get("frame_id", ""))
        for c in data["cameras"]
    ]
    radars = [Radar(r["name"], r["T_base_radar"], r.get("frame_id", "")) for r in data.get("radars") or []]
    return CameraRig(cameras, radars, data.get("base_frame", "base_link"))


def _read_rig(path: Path, version: int, data: dict | None) -> CameraRig | None:
    """The recorded rig in the layout of the checkpoint's version, or a CheckpointError saying what is wrong."""
    if not data:
        return None
    try:
        return _matrix_rig(data) if version == 1 else rig_from_dict(data, f"checkpoint {path}: rig")
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} records an unusable rig ({type(error).__name__}: {error}); re-save it from training"
        ) from error


def save_checkpoint(
    path: str | Path,
    model: SurroundDepthStudent,
    config: StudentConfig | None = None,
    rig: CameraRig | None = None,
    input_size: tuple[int, int] | None = None,
    extra: dict | None = None,
    adjacency: torch.Tensor | list | None = None,
) -> str:
    """Write `model` with its config, input size, rig and adjacency; returns the weights checksum.

    `adjacency` (E, 2) defaults to `rig.adjacency()` when a rig is given. `extra` must hold plain
    types (numbers, strings, lists, dicts, tensors). The file is written atomically.
    """
    config = config or model.config
    if config != model.config:
        raise ValueError(f"config {config.name!r} differs from the model's config {model.config.name!r}")
    if adjacency is None and rig is not None:
        adjacency = rig.adjacency()
    state = {name: t.detach().to("cpu") for name, t in model.state_dict().items()}
    checksum = weights_checksum(state)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": config.to_dict(),
        "input_size": list(input_size or config.input_size),
        "rig": rig_to_dict(rig) if rig is not None else None,
        "adjacency": None if adjacency is None else torch.as_tensor(adjacency).reshape(-1, 2).tolist(),
        "extra": dict(extra or {}),
        "checksum": checksum,
        "state_dict": state,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return checksum


def checkpoint_file_problem(path: Path) -> str | None:
    """Why `path` cannot be a checkpoint file ("does not exist", "is a directory, ..."), None for a regular file.

    Asks the file system only (stat, following links), never opens the path: opening a FIFO blocks until
    something writes into it.
    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "does not exist"
    except OSError as error:  # e.g. a folder on the way that may not be searched, a loop of symbolic links
        return f"cannot be examined ({error.strerror})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a checkpoint file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, device or socket)"
    return None


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """The verified weights and info of a checkpoint, without building the model."""
    path = Path(path)
    if problem := checkpoint_file_problem(path):
        raise CheckpointError(f"checkpoint {path} {problem}; check the path or train / export one first")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); copy it again or re-save it from training")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated zips and pickles
        reason = (str(error).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read ({type(error).__name__}: "
            f"{reason}); copy it again or re-save it from training"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a surround_depth_ros student checkpoint (no '{FORMAT}' format tag)")
    version = payload.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, this surround_depth_ros reads versions "
            f"{list(READABLE_VERSIONS)}; re-save it with a matching version of surround_depth_ros"
        )
    missing = sorted({"config", "input_size", "checksum", "state_dict"} - set(payload))
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the fields {missing}; it was not written by save_checkpoint")
    state = payload["state_dict"]
    checksum = weights_checksum(state)
    if checksum != payload["checksum"]:
        raise CheckpointError(
            f"checkpoint {path}: weights checksum {checksum[:12]}... does not match the recorded "
            f"{str(payload['checksum'])[:12]}...; the file was modified or damaged, copy it again"
        )
    try:
        config = StudentConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} has an unusable config: {error}") from error
    info = CheckpointInfo(
        path=path,
        config=config,
        input_size=tuple(int(v) for v in payload["input_size"]),
        checksum=checksum,
        version=version,
        rig=_read_rig(path, version, payload.get("rig")),
        adjacency=payload.get("adjacency"),
        extra=payload.get("extra") or {},
    )
    return state, info


def load_checkpoint(
    path: str | Path, expected: StudentConfig | str | None = None
) -> tuple[SurroundDepthStudent, CheckpointInfo]:
    """Build the model a checkpoint describes and load its weights (model in eval mode).

    `expected` (a config or a preset name) makes a checkpoint of another architecture an error.
    """
    state, info = read_checkpoint(path)
    if expected is not None:
        want = expected if isinstance(expected, str) else expected.name
        mismatch = info.config.name != want if isinstance(expected, str) else info.config != expected
        if mismatch:
            raise CheckpointError(
                f"checkpoint {info.path} holds preset {info.config.name!r} but {want!r} was asked for; "
                "pass the matching preset or the right checkpoint"
            )
    model = SurroundDepthStudent(info.config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"checkpoint {info.path}: weights do not fit preset {info.config.name!r} "
            f"({str(error).splitlines()[0][:300]}...); the file mixes a config and weights of different models"
        ) from error
    return model.eval(), info
