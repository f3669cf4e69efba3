"""The training loop: a student, an optional (cached) teacher and the configured losses, step by step.

Everything random is a pure function of (seed, step): the batch order (one permutation per
epoch) and the colour jitter. So a run resumed from its last checkpoint replays exactly what
the uninterrupted run would have done, and two runs with one seed are the same run.
Outputs in `out_dir`: best.pt / last.pt (student checkpoints, loadable by the node),
train_state.pt (optimiser, schedule, loss adapters, history: what resume needs),
history.json, losses.png, validation.png.

Multi-GPU (or multi-process CPU) training: `torchrun --nproc_per_node N .venv/bin/surround-depth train
CONFIG` runs one trainer per process with DistributedDataParallel. Each step's global batch
(`optimizer.batch_size` frame sets) is split across the processes the way a DistributedSampler
splits an epoch (rank r takes every N-th frame set of the same seeded permutation), BatchNorm
normalises over the global batch, gradients are averaged, and only rank 0 validates and writes
files; so N processes train what one process would with the same global batch.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from surround_depth_ros.losses import LossInputs, build_losses
from surround_depth_ros.network.checkpoint import load_checkpoint, save_checkpoint
from surround_depth_ros.network.pose import PoseNet, extrinsic_anchored_poses
from surround_depth_ros.network.student import StudentOutput, SurroundDepthStudent
from surround_depth_ros.sensors.rig import CameraRig
from surround_depth_ros.training.config import DatasetConfig, OptimizerConfig, TeacherConfig, TrainingConfig
from surround_depth_ros.training.data import (
    ColourJitter,
    PreparedDataset,
    Sample,
    concat_samples,
    load_dataset,
    open_source,
)
from surround_depth_ros.training.distributed import DictOutput, convert_batchnorm, distributed_context, select
from surround_depth_ros.training.evaluate import evaluate_model
from surround_depth_ros.training.shards import ShardDataset

STATE_FORMAT = "surround_depth_ros.train_state/1"


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else the CPU; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def open_dataset(spec: DatasetConfig, size: tuple[int, int], cache: Path, desc: str) -> PreparedDataset | ShardDataset:
    """A shard directory (`spec.shards`, from `surround-depth prepare`) read lazily, else prepared in RAM."""
    return ShardDataset(spec.shards, size) if spec.shards else load_dataset(spec, size, cache, desc)


def build_teacher(config: TeacherConfig, out_dir: Path, device: torch.device) -> object:
    """The configured teacher wrapped in a disk cache (`CachedTeacher`)."""
    from surround_depth_ros.teachers import CachedTeacher, DepthAnythingTeacher, OwnFamilyTeacher

    if config.type == "own_family":
        teacher = OwnFamilyTeacher(config.checkpoint, device=device, output=config.output)
    else:
        teacher = DepthAnythingTeacher(config.model_dir, input_height=config.input_height, device=device)
    return CachedTeacher(teacher, config.cache_dir or out_dir / "teacher_cache")


def lr_factor(step: int, config: OptimizerConfig) -> float:
    """Linear warm-up to 1 over `warmup_steps`, then cosine decay to `min_lr_ratio` at `steps`."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> list[int]:
    """Frame sets of one step: consecutive slices of one seeded permutation per epoch (stateless, resumable)."""
    out = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(int(order[offset]))
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainResult:
    """The end of a run: steps done, best validation AbsRel (metric) and where things were written."""

    step: int
    best_abs_rel: float | None
    out_dir: Path
    last_validation: dict | None


class Trainer:
    """Builds everything a config describes and runs `train()`; `resume=True` continues from out_dir."""

    def __init__(
        self,
        config: TrainingConfig,
        out_dir: str | Path | None = None,
        device: str | None = None,
        train_set: PreparedDataset | None = None,
        rig: CameraRig | None = None,
    ) -> None:
        """`train_set` and `rig` replace the config's training data (benchmarks, tests); both or neither."""
        self.config = config
        self.out_dir = Path(out_dir or config.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.rank, self.world, self.device = distributed_context(resolve_device(device or config.device))
        if config.optimizer.batch_size % self.world:
            raise ValueError(f"batch_size {config.optimizer.batch_size} does not split over {self.world} processes")
        seed_everything(config.seed)
        self.student_config = config.model.student_config()
        size = self.student_config.input_size
        cache = Path(config.data_cache_dir) if config.data_cache_dir else self.out_dir / "data_cache"
        self._barrier(self.rank != 0)  # rank 0 prepares and caches the data, the others then read the cache
        self.train_set = train_set or open_dataset(config.train, size, cache, "train set")
        self.val_set = open_dataset(config.val, size, cache, "val set") if config.val else None
        self.unlabeled_set = open_dataset(config.unlabeled, size, cache, "unlabeled set") if config.unlabeled else None
        self._barrier(self.rank == 0)
        shards = self.train_set if isinstance(self.train_set, ShardDataset) else None
        train_spec = shards.spec if shards is not None else config.train  # shards: the spec they were prepared from
        # the rig is recorded in checkpoints: the engine compares focals
        self.rig = rig or (shards.rig if shards is not None else open_source(config.train, size).rig)
        self.model = SurroundDepthStudent(self.student_config).to(self.device)
        self.forward_model: Callable[..., StudentOutput] = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            convert_batchnorm(self.model)  # BatchNorm over the global batch, on any backend
            ids = [self.device.index] if self.device.type == "cuda" else None
            ddp = DistributedDataParallel(DictOutput(self.model), device_ids=ids, find_unused_parameters=True)
            self.forward_model = lambda *args, **kwargs: StudentOutput(**ddp(*args, **kwargs))
        self.losses = build_losses(config.losses).to(self.device)
        self.needs_saliency = "saliency" in self.losses.terms
        self.teacher = build_teacher(config.teacher, self.out_dir, self.device) if config.teacher else None
        neighbours = list(train_spec.neighbours) if train_set is None else self._neighbour_offsets(self.train_set)
        # the temporal attention trains on the previous frame's real features, as the node feeds it
        self.previous = neighbours.index(-1) if self.student_config.temporal and -1 in neighbours else None
        sets = [d for d in (self.train_set, self.unlabeled_set) if d is not None]
        poses_missing = any(d.poses_missing for d in sets)
        self.pose_net = PoseNet().to(self.device) if neighbours and poses_missing else None
        params = [*self.model.parameters(), *self.losses.parameters()]
        params += [*self.pose_net.parameters()] if self.pose_net is not None else []
        opt = config.optimizer
        self.optimizer = torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, opt))
        self.jitter = ColourJitter(config.augmentation.colour_jitter)
        self.adjacency = self.train_set.adjacency.to(self.device)
        self.step = 0
        self.history: list[dict] = []
        self.validations: list[dict] = []
        self.best: float | None = None

    @staticmethod
    def _neighbour_offsets(dataset: PreparedDataset) -> list[int]:
        """A dataset handed in directly (tests, benchmarks) states no offsets: assume [-1, 1, ...] order."""
        count = 0 if dataset.adjacent is None else dataset.adjacent.shape[1]
        return [-1, 1][:count] if count <= 2 else list(range(1, count + 1))

    # ------------------------------------------------------------------ one step
    def batch(self, step: int) -> Sample:
        """The frame sets of one step: labeled ones from `train`, plus the `unlabeled_ratio` share from `unlabeled`."""
        size, seed = self.config.optimizer.batch_size, self.config.seed
        if self.unlabeled_set is None:
            return self.train_set.batch(batch_indices(step, size, len(self.train_set), seed))
        extra = min(size - 1, max(1, round(size * self.config.unlabeled_ratio)))
        labeled = self.train_set.batch(batch_indices(step, size - extra, len(self.train_set), seed))
        unlabeled = self.unlabeled_set.batch(batch_indices(step, extra, len(self.unlabeled_set), seed + 1))
        return concat_samples(labeled, unlabeled)

    def poses(self, batch: Sample, clean: torch.Tensor, adjacent: torch.Tensor) -> torch.Tensor | None:
        """T_world_base (B, 1 + S, N, 4, 4) at every capture: the data's where known, else the pose network's."""
        if batch.poses is None:
            return None
        poses = batch.poses.to(self.device)
        missing = torch.isnan(poses).flatten(1).any(dim=1)
        if not missing.any():
            return poses
        if self.pose_net is None:  # no neighbours: one instant, the stagger cannot be compensated
            return None
        estimated = extrinsic_anchored_poses(
            self.pose_net,
            clean[:, 0],
            adjacent[:, :, 0],
            batch.times.to(self.device),
            batch.extrinsics[:, 0].to(self.device),
        )
        return torch.where(missing[:, None, None, None, None], estimated, poses)

    def loss_inputs(
        self,
        batch: Sample,
        step: int,
        jittered: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, LossInputs]:
        """Forward the student on a batch and gather what every loss may read.

        The student sees colour-jittered images (`jittered`, else drawn here from the step's generator);
        the photometric loss and the teacher see the clean ones.
        """
        generator = generator or torch.Generator().manual_seed(self.config.seed * 7_919 + step)
        images01 = (jittered if jittered is not None else self.jitter(batch.images, generator)).to(self.device)
        clean = (batch.images.float() / 255.0).to(self.device)
        adjacent = None if batch.adjacent is None else (batch.adjacent.float() / 255.0).to(self.device)
        radar = batch.radar.to(self.device) if batch.radar is not None else None
        student_radar = radar if self.student_config.radar else None
        previous = None
        if self.previous is not None:
            with torch.no_grad():
                prev_images = self.jitter(batch.adjacent[:, self.previous], generator).to(self.device)
                previous = self.model(prev_images, self.adjacency).temporal_features
        out = self.forward_model(images01, self.adjacency, radar=student_radar, prev_features=previous, return_aux=True)
        gt = batch.depth.to(self.device)
        cfg = self.student_config
        gt = torch.where((gt >= cfg.min_depth) & (gt <= cfg.max_depth), gt, torch.zeros_like(gt))
        teacher = None
        if self.teacher is not None:
            teacher = self.teacher.predict(
                clean, batch.name.split("|"), radar=radar, adjacency=self.adjacency, saliency=self.needs_saliency
            )
        poses = self.poses(batch, clean, adjacent) if "photometric" in self.losses.terms else None
        count = 0 if adjacent is None or poses is None else adjacent.shape[1]
        inputs = LossInputs(
            depth=out.depth,
            gt_depth=gt,
            bin_logits=out.bin_logits,
            bin_centres=out.bin_centres,
            features=out.features,
            decoder_features=out.decoder_features,
            image_features=out.image_features,
            radar_features=out.radar_features,
            intermediate_depths=out.intermediate_depths,
            teacher=teacher,
            images=clean,
            intrinsics=batch.intrinsics.to(self.device),
            extrinsics=batch.extrinsics.to(self.device),
            camera_pairs=self.adjacency,
            adjacent_images=[adjacent[:, s] for s in range(count)],
            poses=None if poses is None else poses[:, 0],
            adjacent_poses=[poses[:, 1 + s] for s in range(count)],
        )
        return out.depth, inputs

    def backward(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Gradients of one step's loss in every trainable parameter (averaged over processes); (total, parts)."""
        self.model.train()
        batch = self.batch(step)
        # jitter is drawn for the global batch, then each process takes its share: N processes = 1 process
        generator = torch.Generator().manual_seed(self.config.seed * 7_919 + step)
        jittered = self.jitter(batch.images, generator)
        if self.world > 1:
            rows = list(range(self.rank, batch.images.shape[0], self.world))
            batch, jittered = select(batch, rows), jittered[rows]
        _, inputs = self.loss_inputs(batch, step, jittered, generator)
        total, parts = self.losses(inputs)
        if not torch.isfinite(total):
            raise FloatingPointError(f"step {step}: loss is {float(total)} ({parts}); lower optimizer.lr")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        return self._synchronise(total, parts) if self.world > 1 else (total, parts)

    def train_step(self, step: int) -> dict[str, float]:
        """One optimiser step; returns the weighted loss parts, the total and the learning rate."""
        opt = self.config.optimizer
        total, parts = self.backward(step)
        if opt.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], opt.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.schedule.step()
        return {"step": step, "lr": lr, "loss": float(total.detach()), **parts}

    def _barrier(self, wait: bool) -> None:
        if self.world > 1 and wait:
            import torch.distributed as dist

            dist.barrier()

    def _synchronise(self, total: torch.Tensor, parts: dict[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
        """Average what DDP does not: gradients of the loss adapters and the pose network, and the logged losses."""
        import torch.distributed as dist

        extra = [*self.losses.parameters(), *(self.pose_net.parameters() if self.pose_net is not None else [])]
        for p in extra:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= self.world
        logged = torch.tensor([float(total.detach()), *parts.values()], dtype=torch.float64)
        dist.all_reduce(logged)
        logged /= self.world
        return logged[0], dict(zip(parts, logged[1:].tolist(), strict=True))

    # ------------------------------------------------------------------ validation and files
    def validate(self, dataset: PreparedDataset | None = None) -> dict:
        dataset = dataset or self.val_set
        v = self.config.validation
        return evaluate_model(
            self.model, dataset, v.min_depth, v.max_depth, self.device, self.config.optimizer.batch_size
        )

    def save(self, validation: dict | None) -> None:
        """last.pt (and best.pt when validation improved) plus the resume state and the plots (rank 0 only)."""
        if self.rank != 0:
            return
        extra = {"training": {"step": self.step, "config": self.config.to_dict()}}
        mean = validation["metric"]["mean"] if validation is not None else None
        if mean is not None:
            extra["training"]["validation"] = mean
            score = mean["abs_rel"]
            if self.best is None or score < self.best:
                self.best = score
                save_checkpoint(
                    self.out_dir / "best.pt", self.model, rig=self.rig, adjacency=self.adjacency.cpu(), extra=extra
                )
        save_checkpoint(self.out_dir / "last.pt", self.model, rig=self.rig, adjacency=self.adjacency.cpu(), extra=extra)
        state = {
            "format": STATE_FORMAT,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "losses": self.losses.state_dict(),
            "best": self.best,
            "history": json.dumps(self.history),
            "validations": json.dumps(self.validations),
        }
        if self.pose_net is not None:
            state["pose_net"] = self.pose_net.state_dict()
        tmp = self.out_dir / "train_state.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out_dir / "train_state.pt")
        (self.out_dir / "history.json").write_text(
            json.dumps({"train": self.history, "validation": self.validations}, indent=1)
        )
        plot_history(self.history, self.validations, self.out_dir)

    def resume(self) -> None:
        """Continue from out_dir/last.pt + train_state.pt (weights, optimiser, schedule, adapters, history)."""
        state_path, weights_path = self.out_dir / "train_state.pt", self.out_dir / "last.pt"
        if not state_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(
                f"cannot resume: {weights_path} or {state_path} is missing (train without --resume)"
            )
        model, _ = load_checkpoint(weights_path, self.student_config)
        self.model.load_state_dict(model.state_dict())
        state = torch.load(state_path, map_location=self.device, weights_only=True)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{state_path} is not a training state file of this version ({STATE_FORMAT})")
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.losses.load_state_dict(state["losses"])
        if self.pose_net is not None:
            self.pose_net.load_state_dict(state["pose_net"])
        self.step, self.best = int(state["step"]), state["best"]
        self.history, self.validations = json.loads(state["history"]), json.loads(state["validations"])

    def train(self, resume: bool = False, until: int | None = None) -> TrainResult:
        """Train to `optimizer.steps` (or stop at `until`), validating and saving every `validation.every` steps."""
        if resume:
            self.resume()
        total = self.config.optimizer.steps
        stop = min(total, until) if until is not None else total
        every = self.config.validation.every
        validation = None
        bar = tqdm(
            range(self.step, stop), initial=self.step, total=total, desc="training", unit="step", disable=self.rank != 0
        )
        started = time.perf_counter()
        for step in bar:
            record = self.train_step(step)
            self.step = step + 1
            if step % self.config.log_every == 0 or self.step == stop:
                record["seconds"] = time.perf_counter() - started
                self.history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.1e}")
            if self.step % every == 0 or self.step == stop:
                validation = self.validate() if self.val_set is not None and self.rank == 0 else None
                mean = validation["metric"]["mean"] if validation is not None else None
                if mean is not None:
                    self.validations.append({"step": self.step, **mean})
                    bar.write(
                        f"step {self.step}: val AbsRel {mean['abs_rel']:.4f} RMSE {mean['rmse']:.3f} "
                        f"d1 {mean['a1']:.3f}"
                    )
                self.save(validation)
        bar.close()
        return TrainResult(self.step, self.best, self.out_dir, validation)


def plot_history(history: list[dict], validations: list[dict], out_dir: Path) -> None:
    """losses.png (total and every weighted part, log scale) and validation.png (AbsRel, RMSE, delta1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if history:
        fig, ax = plt.subplots(figsize=(7, 4))
        steps = [h["step"] for h in history]
        keys = [k for k in history[0] if k not in ("step", "lr", "seconds")]
        for key in keys:
            values = [max(abs(h.get(key, np.nan)), 1e-8) for h in history]
            ax.plot(steps, values, label=key, linewidth=2 if key == "loss" else 1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("weighted loss")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / "losses.png", dpi=90)
        plt.close(fig)
    if validations:
        fig, axes = plt.subplots(1, 3, figsize=(10, 3))
        steps = [v["step"] for v in validations]
        for ax, key, label in zip(axes, ("abs_rel", "rmse", "a1"), ("AbsRel", "RMSE (m)", "delta < 1.25"), strict=True):
            ax.plot(steps, [v[key] for v in validations], marker="o")
            ax.set_title(label)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / "validation.png", dpi=90)
        plt.close(fig)
