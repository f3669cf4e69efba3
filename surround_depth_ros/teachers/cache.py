"""Teacher predictions cached on disk: a large teacher runs once per frame set, not once per epoch.

One file per frame set, keyed by the frame set's name, the teacher's identity (weights, config,
input size) and the image size, so a changed teacher or resolution never reuses stale targets.
Tensors are stored in `dtype` (float16 by default, half the disk); the first call returns the
same rounded values as every later one, so epoch 1 and epoch 2 train on identical targets.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch

from surround_depth_ros.teachers.base import Teacher, TeacherOutput

CACHE_FORMAT = "surround_depth_ros.teacher_cache/1"


class CachedTeacher:
    """Wraps a `Teacher`; `predict(images, names)` loads what is cached and runs the teacher on the rest."""

    def __init__(self, teacher: Teacher, cache_dir: str | Path, dtype: torch.dtype = torch.float16) -> None:
        self.teacher = teacher
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype
        self.hits = 0
        self.misses = 0

    @property
    def identity(self) -> str:
        return self.teacher.identity

    def _key(self, name: str, shape: tuple[int, ...], saliency: bool) -> str:
        return f"{self.teacher.identity}|{name}|{'x'.join(map(str, shape))}|saliency={saliency}|{self.dtype}"

    def _path(self, key: str) -> Path:
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"

    def _load(self, key: str) -> TeacherOutput | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError):  # truncated or foreign file: recompute
            return None
        if data.get("format") != CACHE_FORMAT or data.get("key") != key:
            return None
        return TeacherOutput.from_tensors(data["kind"], data["tensors"])

    def _store(self, key: str, output: TeacherOutput) -> None:
        path = self._path(key)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tensors = {k: v.contiguous().clone() for k, v in output.to_tensors().items()}
        torch.save({"format": CACHE_FORMAT, "key": key, "kind": output.kind, "tensors": tensors}, tmp)
        os.replace(tmp, path)  # atomic: a reader never sees half a file

    def predict(
        self,
        images: torch.Tensor,
        names: Sequence[str],
        radar: torch.Tensor | None = None,
        adjacency: torch.Tensor | None = None,
        saliency: bool = False,
    ) -> TeacherOutput:
        """Teacher output for images (B, N, 3, H, W) in [0, 1] of the frame sets `names` (B unique names)."""
        if len(names) != images.shape[0]:
            raise ValueError(f"{len(names)} frame-set names for a batch of {images.shape[0]}")
        if any(not name for name in names) or len(set(names)) != len(names):
            raise ValueError(f"frame-set names must be non-empty and unique to key the cache, got {list(names)}")
        keys = [self._key(name, tuple(images.shape[1:]), saliency) for name in names]
        items: list[TeacherOutput | None] = [self._load(key) for key in keys]
        missing = [i for i, item in enumerate(items) if item is None]
        self.hits += len(names) - len(missing)
        self.misses += len(missing)
        if missing:
            index = torch.tensor(missing)
            fresh = self.teacher.predict(
                images[index], None if radar is None else radar[index], adjacency, saliency=saliency
            ).map(lambda t: t.to("cpu", self.dtype))
            for j, i in enumerate(missing):
                items[i] = fresh.map(lambda t, j=j: t[j : j + 1])
                self._store(keys[i], items[i])
        device = images.device
        first = items[0]
        merged = {k: torch.cat([item.to_tensors()[k] for item in items]) for k in first.to_tensors()}
        return TeacherOutput.from_tensors(first.kind, merged).map(lambda t: t.to(device, torch.float32))
