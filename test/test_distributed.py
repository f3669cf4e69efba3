"""Multi-process training: `torchrun --nproc_per_node 2` (gloo, CPU) trains what one process trains with the same
global batch (DistributedDataParallel, per-process shares of the batch, BatchNorm over the global batch), and
only rank 0 writes files.

The comparison is on gradients: AdamW's first steps are about lr * sign(g), so parameters whose gradient is
analytically 0 (a BatchNorm bias followed by another BatchNorm) take +-lr steps on float noise, and weights
after a few steps differ by that much whatever the parallelism. This file is also the torchrun worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from surround_depth_ros.training.config import load_config
from surround_depth_ros.training.trainer import Trainer

CONFIG = {
    "train": {"type": "synthetic", "seeds": [5], "frames": 4, "stride": 3},
    "model": {"preset": "tiny", "input_size": [32, 64], "overrides": {"radar": False}},
    "losses": {"silog": 1.0, "bin_centre": 0.1},
    "optimizer": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "lr": 0.003},
    "augmentation": {"colour_jitter": 0.2},
    "validation": {"every": 2},
    "log_every": 1,
    "threads": 1,
    "device": "cpu",
}


def first_step_gradients(config: Path, out: Path) -> dict[str, torch.Tensor]:
    """Every student parameter's gradient of step 0 (averaged over the processes when run under torchrun)."""
    trainer = Trainer(load_config(config), out_dir=out)
    trainer.backward(0)
    return {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}


def torchrun(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "data_cache_dir": str(tmp_path / "cache")}))
    single = first_step_gradients(path, tmp_path / "one_grad")  # also prepares the shared data cache
    torchrun(__file__, str(path), str(tmp_path / "two_grad"))
    ranks = [torch.load(tmp_path / "two_grad" / f"gradients{r}.pt", weights_only=True) for r in (0, 1)]
    assert single.keys() == ranks[0].keys() == ranks[1].keys()
    for name in single:
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name}: the processes' averaged gradients differ"
    flat_one = torch.cat([g.flatten() for g in single.values()])
    flat_two = torch.cat([ranks[0][name].flatten() for name in single])
    assert float((flat_two - flat_one).norm() / flat_one.norm()) < 1e-3

    Trainer(load_config(path), out_dir=tmp_path / "one").train()
    torchrun("-m", "surround_depth_ros.tools.cli", "train", str(path), "--out", str(tmp_path / "two"))
    losses = [
        [h["loss"] for h in json.loads((tmp_path / run / "history.json").read_text())["train"]]
        for run in ("one", "two")
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)
    assert {p.name for p in (tmp_path / "two").iterdir()} >= {"last.pt", "train_state.pt", "history.json"}


if __name__ == "__main__":  # the torchrun worker: each process saves its gradients of step 0
    out = Path(sys.argv[2])
    gradients = first_step_gradients(Path(sys.argv[1]), out)
    torch.save(gradients, out / f"gradients{os.environ['RANK']}.pt")
