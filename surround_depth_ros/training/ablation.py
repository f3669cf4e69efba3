"""The KD ablation: one student recipe trained without distillation and with each KD family, over several seeds.

Every variant adds its distillation losses to the same supervised base and runs with the same
data, schedule and seeds; only the losses differ. Students are scored on held-out streets
(world seeds that neither training nor validation used), and the teacher is scored on them
too, so the table says how much of the teacher's lead each family transfers. Every variant is
compared with its baseline (no KD on the same student: camera-only or radar) seed by seed: the
paired difference of the test metrics with its 95 % t interval is what can carry a claim.
Finished runs are kept (runs/<variant>/seed<k>/result.json) and skipped when run again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from surround_depth_ros.base import schema
from surround_depth_ros.base.schema import setting
from surround_depth_ros.base.yaml_file import YamlFileError, load_yaml
from surround_depth_ros.training.config import (
    ConfigError,
    DatasetConfig,
    TeacherConfig,
    TrainingConfig,
    apply_overrides,
    config_from_dict,
)

TABLE_METRICS = (("abs_rel", "AbsRel"), ("rmse", "RMSE (m)"), ("a1", "delta1"))

# two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (no SciPy dependency)
T_975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


@dataclass
class Variant:
    """One row: extra `losses` on the base, the named `teacher` they distil from, a radar student or not,
    and the `baseline` row (no KD, same student) its paired differences are taken against."""

    losses: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None
    radar: bool = False
    baseline: str | None = None


@dataclass
class AblationConfig:
    """`training`: the base run (no teacher); `variants`: name -> Variant ({}: no KD); `teachers`: name -> teacher;
    `test`: the held-out streets."""

    training: TrainingConfig
    test: DatasetConfig
    teachers: dict[str, TeacherConfig]
    variants: dict[str, Variant] = setting(min_items=1)
    seeds: list[int] = setting(default_factory=lambda: [0, 1, 2, 3, 4], min_items=1)
    out_dir: str = "runs/ablation"

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """Held-out test streets; every teacher and baseline a variant names exists."""
        training, test = values.get("training"), values.get("test")
        if training is not None and test is not None and test.type == training.train.type == "synthetic":
            if set(test.seeds) & set(training.train.seeds):
                yield "test.seeds", "overlap the training worlds; held-out streets need other seeds"
        teachers, variants = values.get("teachers"), values.get("variants", {})
        for name, row in variants.items():
            repeated = sorted(set(row.losses) & set(training.losses)) if training is not None else []
            if repeated:
                yield f"variants.{name}.losses", f"repeat the base losses {repeated}"
            if row.radar and training is not None and not training.train.radar:
                yield f"variants.{name}.radar", "a radar student needs radar data: set training.train.radar: true"
            if row.losses and teachers is not None and row.teacher not in teachers:
                yield (
                    f"variants.{name}.teacher",
                    f"distils, so it needs teacher: one of {sorted(teachers)}",
                )
            if row.baseline is not None and row.baseline not in variants:
                yield f"variants.{name}.baseline", f"{row.baseline!r} is not a variant"


def load_ablation_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> AblationConfig:
    """Read and validate an ablation YAML (see config/training/ablation.yaml); every variant is checked up front.

    `overrides` ({"optimizer.steps": 10, ...}) replace keys of the base `training` config before validation."""
    source = str(path)
    try:
        data = load_yaml(path)
    except FileNotFoundError as error:
        raise ConfigError(f"ablation config {path} does not exist") from error
    except YamlFileError as error:
        raise ConfigError(str(error)) from error
    if isinstance(data, Mapping) and isinstance(data.get("training"), Mapping):
        data = {**data, "training": apply_overrides(data["training"], overrides or {}, f"{source}: training")}
    config = schema.build(AblationConfig, data, source, ConfigError)
    config.training = dataclasses.replace(config.training, source=f"{source}: training")
    for name in config.variants:
        variant_config(config, name, config.seeds[0])  # raises on a bad loss or parameter before anything runs
    return config


def variant_config(config: AblationConfig, name: str, seed: int) -> TrainingConfig:
    """The training config of one run: base losses + the variant's, its teacher, its student, this seed."""
    variant = config.variants[name]
    model = config.training.model
    overrides = {**model.overrides, "radar": variant.radar}
    overrides["name"] = f"{model.preset}-{'radar' if variant.radar else 'camera'}"
    run = replace(
        config.training,
        losses={**config.training.losses, **variant.losses},
        teacher=config.teachers[variant.teacher] if variant.losses else None,
        model=replace(model, overrides=overrides),
        seed=seed,
        out_dir=str(Path(config.out_dir) / "runs" / name / f"seed{seed}"),
        source=f"{config.training.source} [{name}, seed {seed}]",
    )
    try:
        return config_from_dict(run.to_dict() | {"source": run.source}, run.source)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"ablation variant {name!r}: {error}") from error


def paired_difference(values: list[float], baseline: list[float]) -> dict:
    """Mean of the per-seed differences (variant - baseline) with its two-sided 95 % Student-t interval."""
    diff = np.asarray(values) - np.asarray(baseline)
    mean = float(diff.mean())
    if len(diff) < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "n": len(diff)}
    half = T_975[min(len(diff) - 2, len(T_975) - 1)] * float(diff.std(ddof=1)) / np.sqrt(len(diff))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(diff)}


def summarise(results: dict[str, list[dict]], teachers: dict[str, dict], baselines: Mapping[str, str | None]) -> dict:
    """{variant: {metric: {"mean", "std", "values", "vs_baseline"}}} over seeds, and the teachers' own numbers."""
    table = {}
    for name, runs in results.items():
        row = {}
        for key, _ in TABLE_METRICS:
            values = [r["metric"]["mean"][key] for r in runs]
            spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            row[key] = {"mean": float(np.mean(values)), "std": spread, "values": values}
            base = baselines.get(name)
            if base is not None and base in results and len(results[base]) == len(runs):
                row[key]["vs_baseline"] = paired_difference(values, [r["metric"]["mean"][key] for r in results[base]])
        row["median_scaled_abs_rel"] = float(np.mean([r["median_scaled"]["mean"]["abs_rel"] for r in runs]))
        row["baseline"] = baselines.get(name)
        table[name] = row
    return {"variants": table, "teachers": teachers}


def markdown_table(summary: dict, seeds: list[int]) -> str:
    """The ablation as Markdown: mean +- std over seeds, then the paired differences with 95 % intervals."""
    head = "| variant | " + " | ".join(label for _, label in TABLE_METRICS) + " | AbsRel (median-scaled) |"
    lines = [head, "|" + "---|" * (len(TABLE_METRICS) + 2)]
    for name, row in summary["variants"].items():
        cells = [f"{row[key]['mean']:.4f} +- {row[key]['std']:.4f}" for key, _ in TABLE_METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['median_scaled_abs_rel']:.4f} |")
    for name, teacher in (summary.get("teachers") or {}).items():
        cells = [f"{teacher['metric']['mean'][key]:.4f}" for key, _ in TABLE_METRICS]
        scaled = teacher["median_scaled"]["mean"]["abs_rel"]
        lines.append(f"| teacher {name} | " + " | ".join(cells) + f" | {scaled:.4f} |")
    lines += ["", f"Mean +- sample standard deviation over seeds {seeds}; metric (no rescaling) unless noted.", ""]
    labels = " | ".join(f"d{label} [95 % CI]" for _, label in TABLE_METRICS)
    lines.append(f"| variant - baseline (paired by seed) | {labels} |")
    lines.append("|" + "---|" * (len(TABLE_METRICS) + 1))
    for name, row in summary["variants"].items():
        if "vs_baseline" not in row[TABLE_METRICS[0][0]]:
            continue
        cells = []
        for key, _ in TABLE_METRICS:
            d = row[key]["vs_baseline"]
            cells.append(f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
        lines.append(f"| {name} - {row['baseline']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("An interval excluding 0 is a difference these seeds can claim (lower AbsRel, RMSE are better).")
    return "\n".join(lines) + "\n"


def bar_chart(summary: dict, path: Path) -> None:
    """ablation.png: one panel per metric, a bar per variant with the seed spread, the teacher as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["variants"])
    fig, axes = plt.subplots(1, len(TABLE_METRICS), figsize=(4 * len(TABLE_METRICS), 3.6))
    for ax, (key, label) in zip(axes, TABLE_METRICS, strict=True):
        rows = [summary["variants"][n][key] for n in names]
        ax.bar(range(len(names)), [r["mean"] for r in rows], yerr=[r["std"] for r in rows], capsize=4, color="C0")
        for i, row in enumerate(rows):
            ax.scatter([i] * len(row["values"]), row["values"], color="k", s=8, zorder=3)
        for index, (teacher, values) in enumerate((summary.get("teachers") or {}).items()):
            ax.axhline(values["metric"]["mean"][key], color=f"C{3 + index}", linestyle="--", label=f"teacher {teacher}")
        if summary.get("teachers"):
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_ablation(config: AblationConfig, device: str | None = None, only: list[str] | None = None) -> dict:
    """Train every variant x seed (skipping finished runs), score on the test set, write ablation.{md,json,png}."""
    from surround_depth_ros.network.checkpoint import load_checkpoint
    from surround_depth_ros.training.data import load_dataset
    from surround_depth_ros.training.evaluate import evaluate_model
    from surround_depth_ros.training.trainer import Trainer, resolve_device

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = config.training.data_cache_dir or str(out / "data_cache")
    caps = (config.training.validation.min_depth, config.training.validation.max_depth)
    names = [n for n in config.variants if only is None or n in only]
    results: dict[str, list[dict]] = {}
    for name in names:
        results[name] = []
        for seed in config.seeds:
            run = variant_config(config, name, seed)
            run = replace(run, data_cache_dir=cache)
            if run.teacher is not None and run.teacher.cache_dir is None:
                run = replace(run, teacher=replace(run.teacher, cache_dir=str(out / "teacher_cache")))
            result_path = Path(run.out_dir) / "result.json"
            if result_path.is_file():
                results[name].append(json.loads(result_path.read_text()))
                continue
            print(f"ablation: {name}, seed {seed}", flush=True)
            trainer = Trainer(run, device=device)
            trainer.train()
            test = load_dataset(config.test, run.model.student_config().input_size, cache, "test set")
            summary = evaluate_model(trainer.model, test, *caps, trainer.device)
            result_path.write_text(json.dumps(summary, indent=1))
            results[name].append(summary)
    teacher_summaries = {}
    for teacher_name, teacher in config.teachers.items():
        if teacher.type == "own_family" and teacher.output == "metric" and Path(teacher.checkpoint).is_file():
            model, info = load_checkpoint(teacher.checkpoint)
            dev = resolve_device(device or config.training.device)
            test = load_dataset(config.test, info.input_size, cache, "test set")
            teacher_summaries[teacher_name] = evaluate_model(model.to(dev), test, *caps, dev)
    baselines = {n: v.baseline for n, v in config.variants.items()}
    summary = summarise(results, teacher_summaries, baselines)
    summary["scale"] = {
        "seeds": config.seeds,
        "steps": config.training.optimizer.steps,
        "batch_size": config.training.optimizer.batch_size,
        "input_size": list(config.training.model.student_config().input_size),
        "preset": config.training.model.preset,
        "train_frames": _frame_count(config.training.train),
        "test_frames": _frame_count(config.test),
        "variants": {n: asdict(config.variants[n]) for n in names},
    }
    (out / "ablation.json").write_text(json.dumps(summary, indent=1))
    (out / "ablation.md").write_text(markdown_table(summary, config.seeds))
    bar_chart(summary, out / "ablation.png")
    return summary


def _frame_count(spec: DatasetConfig) -> int | None:
    return spec.frames * len(spec.seeds) if spec.type == "synthetic" else spec.limit
