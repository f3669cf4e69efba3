"""The KD ablation: every shipped variant runs (radar rows with radar, the relative teacher), paired intervals."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from surround_depth_ros.network.checkpoint import save_checkpoint
from surround_depth_ros.network.student import SurroundDepthStudent, preset
from surround_depth_ros.sensors.rig import default_rig
from surround_depth_ros.training.ablation import (
    T_975,
    load_ablation_config,
    markdown_table,
    paired_difference,
    run_ablation,
)
from surround_depth_ros.training.config import ConfigError


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    variant, baseline = [0.10, 0.12, 0.11, 0.09, 0.10], [0.12, 0.13, 0.12, 0.12, 0.11]
    d = np.subtract(variant, baseline)
    result = paired_difference(variant, baseline)
    half = 2.776 * d.std(ddof=1) / np.sqrt(5)  # t(0.975, 4 dof)
    assert result["mean"] == pytest.approx(d.mean()) and result["n"] == 5
    assert (result["low"], result["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert result["high"] < 0  # all five seeds improve: the interval excludes 0
    assert T_975[0] == pytest.approx(12.706) and len(T_975) == 30


def test_shipped_ablation_config_can_carry_a_claim():
    config = load_ablation_config("config/training/ablation.yaml")
    assert len(config.seeds) >= 5 and len(config.test.seeds) * config.test.frames >= 48
    assert not set(config.test.seeds) & set(config.training.train.seeds)
    radar_rows = [name for name, v in config.variants.items() if v.radar]
    assert {"lircdepth", "xd_rcdepth"} <= set(radar_rows) and config.test.radar and config.training.train.radar
    assert all(config.variants[n].baseline == "no_kd_radar" for n in radar_rows if config.variants[n].losses)
    assert config.teachers["relative"].output == "relative_inverse"


def test_ablation_errors_name_the_variant(tmp_path):
    text = open("config/training/ablation.yaml").read()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("baseline: no_kd_radar", "baseline: nothing", 1))
    with pytest.raises(ConfigError, match=r"variants\.[^:]+\.baseline: 'nothing' is not a variant"):
        load_ablation_config(bad)
    bad.write_text(text.replace("teacher: relative", "teacher: oracle", 1))
    with pytest.raises(ConfigError, match=r"\.teacher: distils, so it needs teacher: one of \["):
        load_ablation_config(bad)
    bad.write_text(text.replace("variants:", "variant:", 1).replace("seeds: [0, 1, 2, 3, 4]", "seeds: []", 1))
    with pytest.raises(ConfigError) as info:
        load_ablation_config(bad)
    assert info.value.problems == [
        "variant: unknown key (did you mean 'variants'?)",
        "missing key 'variants'",
        "seeds: needs at least 1 entries, got 0",
    ]


def test_every_shipped_variant_trains_and_is_compared_with_its_baseline(tmp_path):
    """All rows of config/training/ablation.yaml, 2 steps x 2 seeds, with untrained teachers of the real presets."""
    rig = default_rig().scaled(112, 64)
    adjacency = torch.tensor(rig.adjacency())
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "metric.pt", SurroundDepthStudent(preset("large")).eval(), adjacency=adjacency)
    camera = replace(preset("large"), radar=False, name="large-camera")
    save_checkpoint(tmp_path / "relative.pt", SurroundDepthStudent(camera).eval(), adjacency=adjacency)
    small = {
        "optimizer.steps": 2,
        "optimizer.warmup_steps": 1,
        "validation.every": 2,
        "device": "cpu",
        "data_cache_dir": str(tmp_path / "cache"),
        "train.seeds": [100],
        "train.frames": 2,
    }
    config = load_ablation_config("config/training/ablation.yaml", small)
    teachers = {
        "metric": replace(config.teachers["metric"], checkpoint=str(tmp_path / "metric.pt")),
        "relative": replace(config.teachers["relative"], checkpoint=str(tmp_path / "relative.pt")),
    }
    test = replace(config.test, seeds=[950], frames=2)
    config = replace(config, teachers=teachers, test=test, seeds=[0, 1], out_dir=str(tmp_path / "ablation"))
    summary = run_ablation(config, device="cpu")
    rows = summary["variants"]
    assert set(rows) == set(config.variants)
    for name, variant in config.variants.items():
        assert len(rows[name]["abs_rel"]["values"]) == 2
        if variant.baseline:
            interval = rows[name]["abs_rel"]["vs_baseline"]
            assert interval["low"] <= interval["mean"] <= interval["high"]
    assert set(summary["teachers"]) == {"metric"}  # a relative teacher has no metric score
    table = markdown_table(summary, config.seeds)
    assert "lircdepth - no_kd_radar" in table and "95 % CI" in table
    saved = json.loads((tmp_path / "ablation" / "ablation.json").read_text())
    assert saved["scale"]["test_frames"] == 2 and (tmp_path / "ablation" / "ablation.png").is_file()
