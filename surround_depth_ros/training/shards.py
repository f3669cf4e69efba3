"""Prepared frame sets on disk: shards of plain `.npy` files and a JSON manifest with their hashes.

A dataset at scale (nuScenes trainval at 352x640: about 270 GB prepared) fits in no trainer's RAM, so
`surround-depth prepare` writes it once, by N processes, into a directory that training reads lazily.

- **Storage: one `.npy` file per field per shard**, read with `np.load(mmap_mode="r", allow_pickle=False)`:
  random access to one frame set without reading the rest, pages the kernel can drop (resident memory does
  not grow with the dataset), no pickle (a shard cannot run code when read), and no new dependency.
  zarr or webdataset would add one and, compressed, CPU work per step; safetensors holds no object arrays
  either but is one more format for what `.npy` already does.
- **Images** (and temporal neighbours' images) uint8, as the student takes them.
- **Depth float16 metres** (0 = none), not uint16 millimetres: DDAD's lidar reaches 200 m and the nuScenes
  benchmark 80 m, past uint16's 65.5 m; float16's step is relative (2^-11, 0.05 %: 0.5 mm at 1 m, 4 cm at
  80 m), which is what log-depth losses and AbsRel measure.
- **Sparse stays sparse**: depth and radar maps of a shard are stored as (pixel index uint32, values
  float16) with per-frame-set offsets when fewer than a third of the pixels hold a value (projected lidar:
  a few %), dense otherwise (the synthetic world's exact depth), whichever is smaller.
- Intrinsics, extrinsics, capture times and poses float32, exactly as prepared.
- **Manifest** (`manifest.json`): the dataset key and spec, size, rig, camera names, adjacency, counts,
  frame-set names, and the sha256 of every shard file. Each file is written under a temporary name and
  renamed (`base.atomic_file`), and a shard enters the manifest (rewritten the same way) only once its files
  are complete, so a killed prepare never leaves a shard the manifest trusts; rerunning rewrites only the
  shards that are missing or whose hashes do not match.
- **Verification is lazy, per shard and process**: the first read of a shard hashes its files, so opening a
  270 GB set reads nothing, yet no frame set of a damaged shard is ever used (`ShardError` names the file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surround_depth_ros.base.atomic_file import atomic_path
from surround_depth_ros.sensors.rig import CameraRig, rig_from_dict, rig_to_dict
from surround_depth_ros.training.config import DatasetConfig
from surround_depth_ros.training.data import FramesWithNeighbours, Sample, dataset_key, open_source, prepare_frameset

SHARD_FORMAT = "surround_depth_ros.shards/1"
MANIFEST = "manifest.json"
DENSE_FIELDS = {"images": np.uint8, "intrinsics": np.float32, "extrinsics": np.float32}
OPTIONAL_DENSE = {"adjacent": np.uint8, "times": np.float32, "poses": np.float32}
MAPS = ("depth", "radar")  # float maps kept sparse when sparse, as float16
SPARSE_BELOW = 1 / 3  # 4-byte index + 2-byte value per pixel beats 2 bytes a pixel below this share


class ShardError(ValueError):
    """A shard directory that cannot be used: the message names the file and what to do."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


# ---------------------------------------------------------------------------------------------- writing


def _encode_map(values: np.ndarray) -> dict[str, np.ndarray]:
    """(K, N, C, h, w) float maps -> the arrays of the smaller layout (see the module docstring)."""
    filled = (values != 0).any(axis=2)  # (K, N, h, w)
    if filled.mean() >= SPARSE_BELOW:
        return {"": values.astype(np.float16)}
    channels = values.shape[2]
    per_pixel = values.transpose(0, 1, 3, 4, 2).reshape(len(values), -1, channels)
    pixels = [np.flatnonzero(f) for f in filled.reshape(len(values), -1)]
    offsets = np.cumsum([0, *(len(p) for p in pixels)]).astype(np.int64)
    picked = [frame[p] for frame, p in zip(per_pixel, pixels, strict=True)]
    return {
        "_pixels": np.concatenate(pixels).astype(np.uint32),
        "_values": np.concatenate(picked).astype(np.float16),
        "_offsets": offsets,
    }


def write_shard(directory: Path, index: int, samples: list[Sample]) -> dict[str, Any]:
    """Write the samples as shard `index` (every file atomically); its manifest entry with the files' sha256."""
    folder = directory / shard_name(index)
    arrays: dict[str, np.ndarray] = {}
    for name, dtype in {**DENSE_FIELDS, **OPTIONAL_DENSE}.items():
        if all(getattr(s, name) is not None for s in samples):
            arrays[name] = np.stack([getattr(s, name).numpy() for s in samples]).astype(dtype)
    for name in MAPS:
        if all(getattr(s, name) is not None for s in samples):
            encoded = _encode_map(np.stack([getattr(s, name).numpy() for s in samples]))
            arrays.update({name + suffix: array for suffix, array in encoded.items()})
    files = {}
    for name, array in arrays.items():
        with atomic_path(folder / f"{name}.npy") as tmp:
            np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
        files[f"{name}.npy"] = file_sha256(folder / f"{name}.npy")
    missing = "poses" in arrays and bool(np.isnan(arrays["poses"]).any())
    return {"index": index, "count": len(samples), "names": [s.name for s in samples], "files": files} | {
        "poses_missing": missing
    }


def entry_is_intact(directory: Path, entry: dict[str, Any]) -> bool:
    """Whether every file of a manifest entry exists with its recorded hash."""
    folder = directory / shard_name(entry["index"])
    return all((folder / f).is_file() and file_sha256(folder / f) == h for f, h in entry["files"].items())


class _Worker:
    """One process's source, opened once; frames at any position (seeking where the source can, else streaming
    forward: shards are handed out in order, so a stream is read once per process)."""

    def __init__(self, spec: DatasetConfig, size: tuple[int, int]) -> None:
        self.spec, self.size = spec, size
        self.source: FramesWithNeighbours = open_source(spec, size)
        self.stream: Iterator | None = None
        self.position = 0

    def pairs(self, start: int, stop: int) -> Iterator[tuple]:
        if start >= stop:
            return
        if self.source.at is not None:
            yield from (self.source.at(p) for p in range(start, stop))
            return
        if self.stream is None or self.position > start:
            self.source, self.position = open_source(self.spec, self.size), 0
            self.stream = iter(self.source.frames)
        for pair in self.stream:
            self.position += 1
            if self.position > start:
                yield pair
            if self.position >= stop:
                return

    def shard(self, directory: Path, index: int, shard_size: int, count: int, entry: dict | None) -> dict:
        if entry is not None and entry_is_intact(directory, entry):
            return {**entry, "reused": True}
        start, stop = index * shard_size, min(count, (index + 1) * shard_size)
        spec = self.spec
        samples = [
            prepare_frameset(frame, self.size, spec.radar, spec.labeled, neighbours)
            for frame, neighbours in self.pairs(start, stop)
        ]
        return write_shard(directory, index, samples)


_WORKER: _Worker | None = None


def _start_worker(spec: DatasetConfig, size: tuple[int, int]) -> None:
    global _WORKER  # noqa: PLW0603 - one source per pool process, opened once
    torch.set_num_threads(1)  # N processes share the cores: one thread each
    _WORKER = _Worker(spec, size)


def _run_task(task: tuple) -> dict:
    return _WORKER.shard(*task)


def _manifest_header(spec: DatasetConfig, size: tuple[int, int], shard_size: int, source: FramesWithNeighbours) -> dict:
    return {
        "format": SHARD_FORMAT,
        "key": dataset_key(spec, size),
        "spec": asdict(spec),
        "size": list(size),
        "shard_size": shard_size,
        "count": source.count,
        "cameras": source.rig.camera_names,
        "adjacency": [list(pair) for pair in source.rig.adjacency()],
        "rig": rig_to_dict(source.rig),
    }


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a shard directory; ShardError when absent or of another format."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardError(f"{path} does not exist: not a directory written by `surround-depth prepare`") from None
    except (OSError, ValueError) as error:
        raise ShardError(f"{path} cannot be read: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != SHARD_FORMAT:
        raise ShardError(f"{path} is not a shard manifest of this version ({SHARD_FORMAT})")
    return manifest


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    with atomic_path(directory / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


def prepare_shards(
    spec: DatasetConfig,
    size: tuple[int, int],
    directory: str | Path,
    processes: int = 1,
    shard_size: int = 64,
    progress: Callable[[int, bool, int], None] | None = None,
) -> dict[str, Any]:
    """Prepare a dataset spec at size (h, w) into `directory` with `processes` processes; its manifest.

    Shards already in the manifest with matching hashes are kept (a rerun resumes). `progress(frame sets,
    reused, total)` is called in this process as each shard is done. ShardError when `directory` holds another
    dataset's shards.
    """
    directory, size = Path(directory), (int(size[0]), int(size[1]))
    source = open_source(spec, size)  # the rig and count; the frames are read by the workers
    header = _manifest_header(spec, size, shard_size, source)
    manifest = {**header, "complete": False, "shards": {}}
    if (directory / MANIFEST).is_file():
        old = read_manifest(directory)
        if any(old.get(k) != header[k] for k in ("key", "size", "shard_size")):
            raise ShardError(
                f"{directory} holds shards of another dataset, size or shard size; choose another --out or delete it"
            )
        manifest["shards"] = old.get("shards", {})
    directory.mkdir(parents=True, exist_ok=True)
    count = math.ceil(source.count / shard_size)
    tasks = [(directory, k, shard_size, source.count, manifest["shards"].get(str(k))) for k in range(count)]
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with context.Pool(processes, initializer=_start_worker, initargs=(spec, size)) as pool:
        for entry in pool.imap_unordered(_run_task, tasks):
            reused = entry.pop("reused", False)
            manifest["shards"][str(entry["index"])] = entry
            if not reused:
                _write_manifest(directory, manifest)
            if progress is not None:
                progress(entry["count"], reused, source.count)
    manifest["shards"] = {str(k): manifest["shards"][str(k)] for k in range(count)}
    manifest["complete"] = True
    _write_manifest(directory, manifest)
    return manifest


# ---------------------------------------------------------------------------------------------- reading


class ShardDataset(torch.utils.data.Dataset):
    """The frame sets of a shard directory, read lazily through memory maps: the interface `PreparedDataset`
    gives the trainer (`len`, `[i]` -> `Sample`, `batch`, `size`, `camera_names`, `adjacency`, `poses_missing`),
    plus the `spec` and `rig` it was prepared from."""

    def __init__(self, directory: str | Path, size: tuple[int, int] | None = None) -> None:
        """ShardError when the directory is incomplete or prepared at another size (h, w) than `size`."""
        self.directory = Path(directory)
        manifest = read_manifest(self.directory)
        if not manifest.get("complete"):
            raise ShardError(f"{self.directory}: prepare did not finish; rerun `surround-depth prepare` to resume it")
        self._size = (int(manifest["size"][0]), int(manifest["size"][1]))
        if size is not None and tuple(size) != self._size:
            raise ShardError(
                f"{self.directory} holds frame sets at {self._size[0]}x{self._size[1]} (HxW), the model takes "
                f"{size[0]}x{size[1]}: prepare the data at the model's size"
            )
        self.entries = [e for _, e in sorted(manifest["shards"].items(), key=lambda kv: int(kv[0])) if e["count"]]
        if not self.entries:
            raise ShardError(f"{self.directory}: no frame set was prepared")
        self.starts = np.cumsum([0, *(e["count"] for e in self.entries)])
        self.names = [name for e in self.entries for name in e["names"]]
        self.camera_names = list(manifest["cameras"])
        self.adjacency = torch.as_tensor(np.asarray(manifest["adjacency"], dtype=np.int64).reshape(-1, 2))
        self.spec = DatasetConfig(**manifest["spec"])
        self.rig: CameraRig = rig_from_dict(manifest["rig"], str(self.directory / MANIFEST))
        self._open: dict[int, dict[str, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for DataLoader workers without the memory maps (each process maps and verifies its own)."""
        return {**self.__dict__, "_open": {}}

    def __len__(self) -> int:
        return len(self.names)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the prepared images."""
        return self._size

    @property
    def poses_missing(self) -> bool:
        """Whether some frame set lacks ego poses (then a pose network estimates them)."""
        return any(e["poses_missing"] for e in self.entries)  # recorded at prepare: no shard is read for it

    def _arrays(self, shard: int) -> dict[str, np.ndarray]:
        """Shard `shard`'s arrays, memory-mapped after its files are checked against the manifest's hashes."""
        if shard not in self._open:
            entry = self.entries[shard]
            folder = self.directory / shard_name(entry["index"])
            for name, expected in entry["files"].items():
                path = folder / name
                if not path.is_file():
                    raise ShardError(f"{path} is missing; rerun `surround-depth prepare` to rewrite it")
                if file_sha256(path) != expected:
                    raise ShardError(
                        f"{path} does not match the sha256 in the manifest (damaged or changed); "
                        "rerun `surround-depth prepare` to rewrite it"
                    )
            self._open[shard] = {
                name.removesuffix(".npy"): np.load(folder / name, mmap_mode="r", allow_pickle=False)
                for name in entry["files"]
            }
        return self._open[shard]

    def _map(self, arrays: dict[str, np.ndarray], name: str, row: int) -> torch.Tensor | None:
        """One frame set's depth or radar maps (N, C, h, w) float32, dense whatever their layout on disk."""
        if name in arrays:
            return torch.from_numpy(np.array(arrays[name][row], dtype=np.float32))
        if f"{name}_values" not in arrays:
            return None
        offsets, channels = arrays[f"{name}_offsets"], arrays[f"{name}_values"].shape[1]
        views, (height, width) = len(self.camera_names), self._size
        dense = np.zeros((views * height * width, channels), dtype=np.float32)
        span = slice(offsets[row], offsets[row + 1])
        dense[arrays[f"{name}_pixels"][span]] = arrays[f"{name}_values"][span]
        return torch.from_numpy(dense.reshape(views, height, width, channels).transpose(0, 3, 1, 2).copy())

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.directory} has {len(self)} frame sets, asked for {index}")
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        arrays, row = self._arrays(shard), index - int(self.starts[shard])

        def dense(name: str) -> torch.Tensor | None:
            return torch.from_numpy(np.array(arrays[name][row])) if name in arrays else None

        return Sample(
            self.names[index],
            images=dense("images"),
            depth=self._map(arrays, "depth", row),
            intrinsics=dense("intrinsics"),
            extrinsics=dense("extrinsics"),
            radar=self._map(arrays, "radar", row),
            adjacent=dense("adjacent"),
            times=dense("times"),
            poses=dense("poses"),
        )

    def batch(self, indices: Any) -> Sample:  # noqa: ANN401 - any sequence of ints, a range included
        """Several frame sets stacked: every tensor gets a leading batch dimension; names joined by '|'."""
        samples = [self[int(i)] for i in indices]
        values = {}
        for field in dataclasses.fields(Sample)[1:]:  # every tensor after the name
            parts = [getattr(s, field.name) for s in samples]
            values[field.name] = None if parts[0] is None else torch.stack(parts)
        return Sample("|".join(s.name for s in samples), **values)
