"""The training config: one YAML file that fixes data, model, teacher, losses and schedule of a run.

Everything a run depends on is in the file, so a result is reproduced by re-running the same
file (and a seed). Each section is a dataclass declared with `surround_depth_ros.base.schema` (types,
bounds, choices per field; rules over several fields in `cross_check`); loading validates every key
and value and lists the file and key path of everything wrong, so a typo fails before minutes of
data preparation, not after.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surround_depth_ros.base import schema
from surround_depth_ros.base.schema import SchemaError, setting
from surround_depth_ros.base.yaml_file import YamlFileError, load_yaml
from surround_depth_ros.datasets.registry import SOURCE_TYPES
from surround_depth_ros.losses import build_losses
from surround_depth_ros.network.student import PRESETS, StudentConfig

TEACHER_TYPES = ("own_family", "depth_anything")
DEVICES = ("auto", "cpu", "cuda")
_POSITIVE: dict[str, Any] = {"low": 0, "low_open": True}
_NON_NEGATIVE: dict[str, Any] = {"low": 0}


class ConfigError(SchemaError):
    """A training config that cannot be used; the message names the file, the key and what was expected."""


def _pair(what: str, low: int) -> functools.partial[list[str]]:
    """A check: two integers (`what`), each at least `low`."""
    return functools.partial(_pair_problems, what=what, low=low)


def _pair_problems(value: list[int], what: str, low: int) -> list[str]:
    return [] if len(value) == 2 and min(value) >= low else [f"expected {what}, each >= {low}, got {value}"]


def _distinct_offsets(offsets: list[int]) -> list[str]:
    if 0 in offsets or len(set(offsets)) != len(offsets):
        return [f"distinct non-zero offsets, got {offsets}"]
    return []


def _shard_directory(path: str) -> list[str]:
    """Only the manifest's presence: its contents and the shards' hashes are checked when they are read."""
    if (Path(path) / "manifest.json").is_file():
        return []
    return [f"{path} has no manifest.json: not a directory written by `surround-depth prepare`"]


def _loss_problems(losses: dict[str, Any]) -> list[str]:
    try:
        build_losses(losses)
    except ValueError as error:
        return [str(error)]
    return []


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
    `shards`: a directory written by `surround-depth prepare`; the frame sets are read from it (lazily, at
    the size and with the spec its manifest records) and the other keys are not used.
    """

    type: str = setting("synthetic", choices=SOURCE_TYPES)
    seeds: list[int] = field(default_factory=lambda: [0])
    frames: int = setting(8, **_POSITIVE)
    stride: int = setting(1, **_POSITIVE)
    render_size: list[int] | None = setting(None, check=_pair("[width, height]", 8))
    path: str | None = None
    version: str = "v1.0-mini"
    limit: int | None = setting(None, **_POSITIVE)
    radar: bool = False
    labeled: bool = True
    neighbours: list[int] = setting(default_factory=list, check=_distinct_offsets)
    shards: str | None = setting(None, check=_shard_directory)

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """What a dataset type needs: world seeds, a path; temporal neighbours where the reader has them."""
        kind = values.get("type")
        if kind == "synthetic" and values.get("seeds") == []:
            yield "seeds", "give at least one world seed"
        if kind not in (None, "synthetic") and "path" in values and not values["path"]:
            yield "path", f"a {kind} dataset needs a path (dataroot, scene or bag folder)"
        if kind == "nuscenes" and values.get("neighbours"):
            yield (
                "neighbours",
                "the nuScenes reader yields keyframes of all scenes in one sequence (no sweeps, scene boundaries "
                "unmarked), so it cannot give temporal neighbours; use synthetic, ddad or rosbag",
            )


@dataclass
class ModelConfig:
    """The student: a preset, the training resolution [height, width] and optional architecture overrides."""

    preset: str = setting("tiny", choices=tuple(sorted(PRESETS)))
    input_size: list[int] | None = setting(None, check=_pair("[height, width]", 32))
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """The overrides must name fields of the student's config with values it accepts."""
        if {"preset", "input_size", "overrides"} <= values.keys():
            try:
                cls(**values).student_config()
            except (TypeError, ValueError) as error:
                yield "overrides", str(error)

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

    type: str = setting(choices=TEACHER_TYPES)
    checkpoint: str | None = None
    output: str = setting("metric", choices=("metric", "relative_inverse"))
    model_dir: str | None = None
    input_height: int = setting(518, **_POSITIVE)
    cache_dir: str | None = None

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """Each teacher type loads from its own key."""
        if "type" in values:
            needed = "checkpoint" if values["type"] == "own_family" else "model_dir"
            if needed in values and not values[needed]:
                yield needed, f"required for the {values['type']} teacher"


@dataclass
class OptimizerConfig:
    """AdamW with linear warm-up then cosine decay to `min_lr_ratio` x lr over `steps` optimiser steps."""

    lr: float = setting(1e-3, **_POSITIVE)
    weight_decay: float = setting(1e-4, **_NON_NEGATIVE)
    batch_size: int = setting(2, **_POSITIVE)
    steps: int = setting(1000, **_POSITIVE)
    warmup_steps: int = setting(50, **_NON_NEGATIVE)
    min_lr_ratio: float = setting(0.05, low=0, high=1)
    grad_clip: float | None = 5.0


@dataclass
class AugmentationConfig:
    """Photometric only: per-view brightness / contrast / saturation jitter of +-`colour_jitter`.

    No flips and no crops: both change what each camera sees of its neighbours, which the
    cross-view attention and the view-relational loss read from the fixed rig geometry."""

    colour_jitter: float = setting(0.2, **_NON_NEGATIVE)


@dataclass
class ValidationConfig:
    """Validate every `every` steps on the validation set with depth caps [min_depth, max_depth]."""

    every: int = setting(200, **_POSITIVE)
    min_depth: float = setting(0.1, **_NON_NEGATIVE)
    max_depth: float = 80.0

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """The caps must leave a range of depths."""
        if {"min_depth", "max_depth"} <= values.keys() and not values["min_depth"] < values["max_depth"]:
            yield "min_depth", f"must be < max_depth ({values['max_depth']}), got {values['min_depth']}"


@dataclass
class TrainingConfig:
    """A whole training run (see config/training/*.yaml for commented examples).

    `unlabeled` (Semi-SMD): a second dataset, usually `labeled: false`, mixed into every batch so
    that a fraction `unlabeled_ratio` of the frame sets comes from it (at least one of each kind)."""

    train: DatasetConfig
    val: DatasetConfig | None = None
    unlabeled: DatasetConfig | None = None
    unlabeled_ratio: float = setting(0.5, low=0, high=1, low_open=True, high_open=True)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig | None = None
    losses: dict[str, Any] = setting(
        default_factory=lambda: {"silog": 1.0, "bin_centre": 0.1}, min_items=1, check=_loss_problems
    )
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    seed: int = 0
    device: str = setting("auto", choices=DEVICES)
    threads: int | None = setting(None, **_POSITIVE)
    out_dir: str = "runs/train"
    data_cache_dir: str | None = None
    log_every: int = setting(10, **_POSITIVE)
    source: str = "config"

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """Held-out worlds, and an unlabeled set whose samples can share batches with the training set's."""
        train, val, unlabeled = values.get("train"), values.get("val"), values.get("unlabeled")
        if train is not None and val is not None and val.type == train.type == "synthetic" and not train.shards:
            shared = sorted(set(val.seeds) & set(train.seeds))
            if shared:
                yield "val.seeds", f"{shared} are also training worlds; held-out scenes must come from other seeds"
        if unlabeled is None:
            return
        optimizer = values.get("optimizer")
        if optimizer is not None and optimizer.batch_size < 2:
            yield "optimizer.batch_size", "mixing unlabeled data needs batch_size >= 2"
        for key in ("neighbours", "radar") if train is not None else ():
            if getattr(unlabeled, key) != getattr(train, key):
                yield f"unlabeled.{key}", f"must equal train.{key} (their samples share batches)"

    def to_dict(self) -> dict[str, Any]:
        """Plain types (for JSON, and stored in checkpoints so that a model knows its recipe)."""
        return dataclasses.asdict(self)


def check_dataset(spec: DatasetConfig, where: str) -> None:
    """Raise ConfigError naming `where` and listing every problem of a dataset built in code."""
    schema.build(DatasetConfig, spec, where, ConfigError)


def config_from_dict(data: Any, source: str = "config") -> TrainingConfig:  # noqa: ANN401 - parsed YAML
    """Build and validate a TrainingConfig from parsed YAML; the error names `source` and every wrong key."""
    return dataclasses.replace(schema.build(TrainingConfig, data, source, ConfigError), source=source)


def load_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> TrainingConfig:
    """Read a training YAML; `overrides` ({"optimizer.steps": 10, ...}) replace keys before validation."""
    path = Path(path)
    try:
        data = load_yaml(path)
    except FileNotFoundError as error:
        raise ConfigError(f"training config {path} does not exist") from error
    except YamlFileError as error:
        raise ConfigError(str(error)) from error
    data = apply_overrides(data, overrides or {}, str(path))
    return config_from_dict(data, str(path))


def apply_overrides(data: Any, overrides: Mapping[str, Any], source: str = "config") -> dict:
    """A copy of the parsed YAML with dotted keys replaced (`optimizer.steps` -> data["optimizer"]["steps"])."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    result = copy.deepcopy(dict(data))
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
