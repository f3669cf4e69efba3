"""The KD ablation: one student recipe trained without distillation and with each KD family, over several seeds.

Every variant adds its distillation losses to the same supervised base and runs with the same
data, schedule and seeds; only the losses differ. Students are scored on held-out streets
(world seeds that neither training nor validation used), and the teacher is scored on them
too, so the table says how much of the teacher's lead each family transfers. Finished runs
are kept (runs/<variant>/seed<k>/result.json) and skipped when the command is run again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from surround_depth_ros.training.config import (
    ConfigError,
    DatasetConfig,
    TeacherConfig,
    TrainingConfig,
    build_section,
    check_dataset,
    config_from_dict,
)

TABLE_METRICS = (("abs_rel", "AbsRel"), ("rmse", "RMSE (m)"), ("a1", "delta1"))


@dataclass
class AblationConfig:
    """`training`: the base run (no teacher); `variants`: name -> extra losses; `test`: held-out data."""

    training: TrainingConfig
    test: DatasetConfig
    teacher: TeacherConfig
    variants: dict[str, dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/ablation"


def load_ablation_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> AblationConfig:
    """Read and validate an ablation YAML (see config/training/ablation.yaml); every variant is checked up front."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as error:
        raise ConfigError(f"ablation config {path} does not exist") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    known = {"training", "test", "teacher", "variants", "seeds", "out_dir"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; valid keys are {sorted(known)}")
    for key in ("training", "test", "teacher", "variants"):
        if key not in data:
            raise ConfigError(f"{source}: missing key {key!r}")
    from surround_depth_ros.training.config import apply_overrides

    training_data = apply_overrides(data["training"], overrides or {}, source)
    training = config_from_dict(training_data, f"{source}: training")
    test = build_section(DatasetConfig, data["test"], f"{source}: test")
    check_dataset(test, f"{source}: test")
    if test.type == training.train.type == "synthetic" and set(test.seeds) & set(training.train.seeds):
        raise ConfigError(f"{source}: test.seeds overlap the training worlds; held-out streets need other seeds")
    teacher = build_section(TeacherConfig, data["teacher"], f"{source}: teacher")
    variants = data["variants"]
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{source}: variants must map a name to extra losses ({{}} for no KD)")
    seeds = data.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{source}: seeds must be a non-empty list of integers, got {seeds!r}")
    config = AblationConfig(training, test, teacher, {k: dict(v or {}) for k, v in variants.items()}, seeds,
                            str(data.get("out_dir", "runs/ablation")))  # fmt: skip
    for name in config.variants:
        variant_config(config, name, seeds[0])  # raises on a bad loss or parameter before anything runs
    return config


def variant_config(config: AblationConfig, name: str, seed: int) -> TrainingConfig:
    """The training config of one run: base losses + the variant's, the teacher when it distils, this seed."""
    extra = config.variants[name]
    overlap = sorted(set(extra) & set(config.training.losses))
    if overlap:
        raise ConfigError(f"ablation variant {name!r} repeats base losses {overlap}")
    run = replace(
        config.training,
        losses={**config.training.losses, **extra},
        teacher=config.teacher if extra else None,
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


def summarise(results: dict[str, list[dict]], teacher: dict | None) -> dict:
    """{variant: {metric: {"mean", "std", "values"}}} over seeds, and the teacher's own numbers."""
    table = {}
    for name, runs in results.items():
        row = {}
        for key, _ in TABLE_METRICS:
            values = [r["metric"]["mean"][key] for r in runs]
            spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            row[key] = {"mean": float(np.mean(values)), "std": spread, "values": values}
        row["median_scaled_abs_rel"] = float(np.mean([r["median_scaled"]["mean"]["abs_rel"] for r in runs]))
        table[name] = row
    return {"variants": table, "teacher": teacher}


def markdown_table(summary: dict, seeds: list[int]) -> str:
    """The ablation as a Markdown table (mean +- sample std over seeds)."""
    head = "| variant | " + " | ".join(label for _, label in TABLE_METRICS) + " | AbsRel (median-scaled) |"
    lines = [head, "|" + "---|" * (len(TABLE_METRICS) + 2)]
    for name, row in summary["variants"].items():
        cells = [f"{row[key]['mean']:.4f} +- {row[key]['std']:.4f}" for key, _ in TABLE_METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['median_scaled_abs_rel']:.4f} |")
    teacher = summary.get("teacher")
    if teacher:
        cells = [f"{teacher['metric']['mean'][key]:.4f}" for key, _ in TABLE_METRICS]
        lines.append("| teacher | " + " | ".join(cells) + f" | {teacher['median_scaled']['mean']['abs_rel']:.4f} |")
    lines.append("")
    lines.append(f"Mean +- sample standard deviation over seeds {seeds}; metric (no rescaling) unless noted.")
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
        if summary.get("teacher"):
            ax.axhline(summary["teacher"]["metric"]["mean"][key], color="C3", linestyle="--", label="teacher")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_ablation(config: AblationConfig, device: str | None = None, only: list[str] | None = None) -> dict:
    """Train every variant x seed (skipping finished runs), score on the test set, write ablation.{md,json,png}."""
    from surround_depth_ros.checkpoint import load_checkpoint
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
    teacher_summary = None
    if config.teacher.type == "own_family" and Path(config.teacher.checkpoint).is_file():
        teacher, info = load_checkpoint(config.teacher.checkpoint)
        dev = resolve_device(device or config.training.device)
        test = load_dataset(config.test, info.input_size, cache, "test set")
        teacher_summary = evaluate_model(teacher.to(dev), test, *caps, dev)
    summary = summarise(results, teacher_summary)
    summary["scale"] = {
        "seeds": config.seeds, "steps": config.training.optimizer.steps,
        "batch_size": config.training.optimizer.batch_size,
        "input_size": list(config.training.model.student_config().input_size),
        "preset": config.training.model.preset, "train_frames": _frame_count(config.training.train),
        "test_frames": _frame_count(config.test), "variants": {n: config.variants[n] for n in names},
    }  # fmt: skip
    (out / "ablation.json").write_text(json.dumps(summary, indent=1))
    (out / "ablation.md").write_text(markdown_table(summary, config.seeds))
    bar_chart(summary, out / "ablation.png")
    return summary


def _frame_count(spec: DatasetConfig) -> int | None:
    return spec.frames * len(spec.seeds) if spec.type == "synthetic" else spec.limit
