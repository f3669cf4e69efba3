"""The training config: one YAML file that fixes data, model, teacher, losses and schedule of a run.

Everything a run depends on is in the file, so a result is reproduced by re-running the same
file (and a seed). Loading validates every key and value and names the file and key path of
anything wrong, so a typo fails before minutes of data preparation, not after.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from surround_depth_ros.losses import build_losses
from surround_depth_ros.network.student import PRESETS, StudentConfig

DATASET_TYPES = ("synthetic", "nuscenes", "ddad", "rosbag")
TEACHER_TYPES = ("own_family", "depth_anything")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the file, the key and what was expected."""


@dataclass
class DatasetConfig:
    """One source of frame sets.

    synthetic: worlds `seeds` (one street each), `frames` frame sets per world, every `stride`-th
    frame of the 12 Hz stream, rendered at `render_size` (width, height; default: the training
    size). nuscenes: `path` = dataroot, `version`. ddad: `path` = DGP scene folder or json.
    rosbag: `path` = rosbag2 folder (ground truth from its lidar). `limit` caps the frame sets.
    `labeled: false` withholds the ground truth (a bag without lidar must say so): such frame sets
    train only the losses that need no depth. `neighbours` are temporal offsets (synthetic: frames
    of the 12 Hz stream; others: frame sets of the sequence) whose images come with every sample,
    e.g. [-1, 1] for Semi-SMD's photometric loss and the temporal attention.
    """

    type: str = "synthetic"
    seeds: list[int] = field(default_factory=lambda: [0])
    frames: int = 8
    stride: int = 1
    render_size: list[int] | None = None
    path: str | None = None
    version: str = "v1.0-mini"
    limit: int | None = None
    radar: bool = False
    labeled: bool = True
    neighbours: list[int] = field(default_factory=list)


@dataclass
class ModelConfig:
    """The student: a preset, the training resolution [height, width] and optional architecture overrides."""

    preset: str = "tiny"
    input_size: list[int] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def student_config(self) -> StudentConfig:
        """The StudentConfig this describes (a preset with its size and overrides)."""
        base = PRESETS[self.preset]
        changes = dict(self.overrides)
        if changes and "name" not in changes:
            changes["name"] = f"{self.preset}-custom"
        if self.input_size is not None:
            changes["input_height"], changes["input_width"] = self.input_size
        return dataclasses.replace(base, **changes)


@dataclass
class TeacherConfig:
    """own_family: `checkpoint` (a student checkpoint, e.g. the large preset); depth_anything: `model_dir`.

    Predictions are cached in `cache_dir` (default: <out_dir>/teacher_cache). `output` of an own-family
    teacher: "metric", or "relative_inverse" for one trained with the affine-invariant loss."""

    type: str
    checkpoint: str | None = None
    output: str = "metric"
    model_dir: str | None = None
    input_height: int = 518
    cache_dir: str | None = None


@dataclass
class OptimizerConfig:
    """AdamW with linear warm-up then cosine decay to `min_lr_ratio` x lr over `steps` optimiser steps."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 2
    steps: int = 1000
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 5.0


@dataclass
class AugmentationConfig:
    """Photometric only: per-view brightness / contrast / saturation jitter of +-`colour_jitter`.

    No flips and no crops: both change what each camera sees of its neighbours, which the
    cross-view attention and the view-relational loss read from the fixed rig geometry."""

    colour_jitter: float = 0.2


@dataclass
class ValidationConfig:
    """Validate every `every` steps on the validation set with depth caps [min_depth, max_depth]."""

    every: int = 200
    min_depth: float = 0.1
    max_depth: float = 80.0


@dataclass
class TrainingConfig:
    """A whole training run (see config/training/*.yaml for commented examples).

    `unlabeled` (Semi-SMD): a second dataset, usually `labeled: false`, mixed into every batch so
    that a fraction `unlabeled_ratio` of the frame sets comes from it (at least one of each kind)."""

    train: DatasetConfig
    val: DatasetConfig | None = None
    unlabeled: DatasetConfig | None = None
    unlabeled_ratio: float = 0.5
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig | None = None
    losses: dict[str, Any] = field(default_factory=lambda: {"silog": 1.0, "bin_centre": 0.1})
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    out_dir: str = "runs/train"
    data_cache_dir: str | None = None
    log_every: int = 10
    source: str = "config"

    def to_dict(self) -> dict[str, Any]:
        """Plain types (for JSON, and stored in checkpoints so that a model knows its recipe)."""
        return dataclasses.asdict(self)


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "teacher": TeacherConfig,
    "optimizer": OptimizerConfig,
    "augmentation": AugmentationConfig,
    "validation": ValidationConfig,
}
_POSITIVE = {
    "frames",
    "stride",
    "batch_size",
    "steps",
    "every",
    "log_every",
    "input_height",
    "limit",
    "threads",
}
_NON_NEGATIVE = {"warmup_steps", "weight_decay", "colour_jitter", "min_lr_ratio", "min_depth"}


def _check_value(name: str, value: Any, kind: Any, where: str) -> Any:
    """Coerce / check one scalar field against the dataclass annotation (as a string, from __future__)."""
    text = str(kind)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: {name} must not be empty")
    base = text.replace(" | None", "")
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {name} must be an integer, got {value!r}")
    elif base == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
        value = float(value)
    elif base == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {name} must be a string, got {value!r}")
    elif base.startswith("list"):
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{where}: {name} must be a list of integers, got {value!r}")
    elif base.startswith("dict") and not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {name} must be a mapping, got {value!r}")
    if name in _POSITIVE and value <= 0:
        raise ConfigError(f"{where}: {name} must be > 0, got {value}")
    if name in _NON_NEGATIVE and value < 0:
        raise ConfigError(f"{where}: {name} must be >= 0, got {value}")
    return value


def build_section(cls: type, data: Any, where: str) -> Any:
    """A dataclass from a mapping, rejecting unknown keys with the list of known ones."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(fields)}")
    values = {}
    for name, value in data.items():
        values[name] = _check_value(name, value, fields[name].type, where)
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    return cls(**values)


def check_dataset(spec: DatasetConfig, where: str) -> None:
    if spec.type not in DATASET_TYPES:
        raise ConfigError(f"{where}.type: unknown dataset type {spec.type!r}; choose one of {list(DATASET_TYPES)}")
    if spec.type == "synthetic":
        if not spec.seeds:
            raise ConfigError(f"{where}.seeds: give at least one world seed")
        if spec.render_size is not None and (len(spec.render_size) != 2 or min(spec.render_size) < 8):
            raise ConfigError(f"{where}.render_size: expected [width, height] >= 8, got {spec.render_size}")
    elif not spec.path:
        raise ConfigError(f"{where}.path: a {spec.type} dataset needs a path (dataroot, scene or bag folder)")
    if 0 in spec.neighbours or len(set(spec.neighbours)) != len(spec.neighbours):
        raise ConfigError(f"{where}.neighbours: distinct non-zero offsets, got {spec.neighbours}")
    if spec.neighbours and spec.type == "nuscenes":
        raise ConfigError(
            f"{where}.neighbours: the nuScenes reader yields keyframes of all scenes in one sequence (no sweeps, "
            "scene boundaries unmarked), so it cannot give temporal neighbours; use synthetic, ddad or rosbag"
        )


def _check(config: TrainingConfig, where: str) -> None:
    check_dataset(config.train, f"{where}: train")
    if config.val is not None:
        check_dataset(config.val, f"{where}: val")
        if config.val.type == config.train.type == "synthetic" and set(config.val.seeds) & set(config.train.seeds):
            raise ConfigError(
                f"{where}: val.seeds {sorted(set(config.val.seeds) & set(config.train.seeds))} are also training "
                "worlds; held-out scenes must come from other seeds"
            )
    if config.unlabeled is not None:
        check_dataset(config.unlabeled, f"{where}: unlabeled")
        if not 0 < config.unlabeled_ratio < 1:
            raise ConfigError(f"{where}: unlabeled_ratio must be in (0, 1), got {config.unlabeled_ratio}")
        if config.optimizer.batch_size < 2:
            raise ConfigError(f"{where}: mixing unlabeled data needs optimizer.batch_size >= 2")
        for key in ("neighbours", "radar"):
            if getattr(config.unlabeled, key) != getattr(config.train, key):
                raise ConfigError(f"{where}: unlabeled.{key} must equal train.{key} (their samples share batches)")
    model = config.model
    if model.preset not in PRESETS:
        raise ConfigError(f"{where}: model.preset {model.preset!r} is not a preset; choose one of {sorted(PRESETS)}")
    if model.input_size is not None and (len(model.input_size) != 2 or min(model.input_size) < 32):
        raise ConfigError(f"{where}: model.input_size must be [height, width], each >= 32, got {model.input_size}")
    try:
        model.student_config()
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: model.overrides: {error}") from error
    if config.teacher is not None:
        teacher = config.teacher
        if teacher.type not in TEACHER_TYPES:
            raise ConfigError(f"{where}: teacher.type {teacher.type!r} unknown; choose one of {list(TEACHER_TYPES)}")
        if teacher.output not in ("metric", "relative_inverse"):
            raise ConfigError(f"{where}: teacher.output must be 'metric' or 'relative_inverse', got {teacher.output!r}")
        needed = "checkpoint" if teacher.type == "own_family" else "model_dir"
        if not getattr(teacher, needed):
            raise ConfigError(f"{where}: teacher.{needed} is required for a {teacher.type} teacher")
    try:
        build_losses(config.losses)
    except ValueError as error:
        raise ConfigError(f"{where}: losses: {error}") from error
    opt = config.optimizer
    if opt.lr <= 0:
        raise ConfigError(f"{where}: optimizer.lr must be > 0, got {opt.lr}")
    if opt.min_lr_ratio > 1:
        raise ConfigError(f"{where}: optimizer.min_lr_ratio must be in [0, 1], got {opt.min_lr_ratio}")
    if config.device not in DEVICES:
        raise ConfigError(f"{where}: device must be one of {list(DEVICES)}, got {config.device!r}")
    if not config.validation.min_depth < config.validation.max_depth:
        raise ConfigError(f"{where}: validation.min_depth must be < validation.max_depth")


def config_from_dict(data: Any, source: str = "config") -> TrainingConfig:
    """Build and validate a TrainingConfig from parsed YAML; errors name `source` and the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    if "train" not in data:
        raise ConfigError(f"{source}: missing key 'train' (the training dataset)")
    values: dict[str, Any] = {}
    for key in ("train", "val", "unlabeled"):
        if data.get(key) is not None:
            values[key] = build_section(DatasetConfig, data.pop(key), f"{source}: {key}")
        else:
            data.pop(key, None)
    for key, cls in _SECTIONS.items():
        if key in data:
            section = data.pop(key)
            values[key] = (
                None if section is None and key == "teacher" else build_section(cls, section, f"{source}: {key}")
            )
    if "losses" in data:
        losses = data.pop("losses")
        if not isinstance(losses, Mapping) or not losses:
            raise ConfigError(f"{source}: losses must be a non-empty mapping of loss name -> weight or parameters")
        values["losses"] = dict(losses)
    top = build_section(TrainingConfig, {"train": values["train"], **data}, source)
    config = dataclasses.replace(top, **values, source=source)
    _check(config, source)
    return config


def load_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> TrainingConfig:
    """Read a training YAML; `overrides` ({"optimizer.steps": 10, ...}) replace keys before validation."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        raise ConfigError(f"training config {path} does not exist") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    data = apply_overrides(data, overrides or {}, str(path))
    return config_from_dict(data, str(path))


def apply_overrides(data: Any, overrides: Mapping[str, Any], source: str = "config") -> dict:
    """A copy of the parsed YAML with dotted keys replaced (`optimizer.steps` -> data["optimizer"]["steps"])."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    result = yaml.safe_load(yaml.safe_dump(dict(data)))
    for dotted, value in overrides.items():
        node = result
        parts = dotted.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: cannot override {dotted!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return result
