"""Frame sets -> training tensors at the network's resolution, with geometry kept consistent.

Images are resized the way `DepthEngine` resizes them at run time (bilinear with antialiasing),
so the network trains on what it will see. Intrinsics follow the resize (pixel centres at
integers, `geometry.resize_intrinsics`). Ground truth is never interpolated: each output pixel
takes the nearest valid depth among the input pixels whose centres it covers (min-pooling), so
every value is a real measurement seen along (within a pixel of) the output pixel's ray.
Rendering or projecting a dataset is slow, so prepared tensors are cached on disk.
Unlabeled frame sets (depth withheld, or a bag without lidar) carry depth 0 everywhere, so the
ground-truth losses skip them; with `neighbours` every sample also carries the frame sets at those
offsets, each camera's capture time and, when the source knows them, the ego poses (Semi-SMD).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from surround_depth_ros.base import geometry
from surround_depth_ros.datasets.registry import open_frame_source
from surround_depth_ros.datasets.synthetic import SyntheticWorlds
from surround_depth_ros.evaluation.ground_truth import lidar_depth_maps
from surround_depth_ros.losses.masked import resize_masked
from surround_depth_ros.sensors.frameset import FrameSet
from surround_depth_ros.sensors.radar import radar_to_maps
from surround_depth_ros.sensors.rig import CameraRig, resize_camera
from surround_depth_ros.training.config import DatasetConfig

PREPARED_FORMAT = "surround_depth_ros.prepared/2"


def resize_images(images: Sequence[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """N HxWx3 uint8 RGB images -> (N, 3, h, w) uint8 at size (h, w), as the inference engine resizes them."""
    out = []
    for index, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"camera {index}: expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        if tuple(image.shape[:2]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out.append(x[0])
    return torch.stack(out)


def min_pool_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize metric depth (..., H, W) to size (h, w) keeping measured values (0 / NaN / inf = none).

    Shrinking: each output pixel holds the minimum valid depth among the input pixels whose
    centres fall in it (output pixel of input u = floor((u + 0.5) * w / W), the convention of
    `geometry.resize_intrinsics`). Enlarging an axis: nearest pixel by centre. Empty -> 0.
    """
    height, width = int(size[0]), int(size[1])
    lead = depth.shape[:-2]
    x = depth.reshape(-1, 1, *depth.shape[-2:]).float()
    x = torch.where(torch.isfinite(x) & (x > 0), x, torch.zeros_like(x))
    big = (max(height, x.shape[-2]), max(width, x.shape[-1]))
    if big != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=big, mode="nearest-exact")
    if big != (height, width):
        H, W = x.shape[-2:]
        rows = torch.div((torch.arange(H) * 2 + 1) * height, 2 * H, rounding_mode="floor")
        cols = torch.div((torch.arange(W) * 2 + 1) * width, 2 * W, rounding_mode="floor")
        target = (rows[:, None] * width + cols[None, :]).reshape(-1)
        flat = torch.where(x > 0, x, torch.full_like(x, torch.inf)).reshape(x.shape[0], -1)
        pooled = torch.full((x.shape[0], height * width), torch.inf)
        pooled.scatter_reduce_(1, target.expand(x.shape[0], -1), flat, reduce="amin")
        x = torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled)).reshape(-1, 1, height, width)
    return x.reshape(*lead, height, width)


@dataclass
class Sample:
    """One frame set at the training resolution (h, w); N views, S temporal neighbours.

    images (N, 3, h, w) uint8; depth (N, 1, h, w) float32 metres, 0 = none (all 0: unlabeled);
    intrinsics (N, 3, 3) at (h, w); extrinsics T_base_cam (N, 4, 4); radar (N, 4, h, w) maps or None;
    adjacent (S, N, 3, h, w) uint8 frame sets at the dataset's `neighbours` offsets; times (1 + S, N)
    seconds of each camera's capture (current set first) after camera 0 of the current set;
    poses (1 + S, N, 4, 4) T_world_base at each capture, world = base at camera 0's current capture,
    NaN where the source has no ego pose (a pose network stands in).
    """

    name: str
    images: torch.Tensor
    depth: torch.Tensor
    intrinsics: torch.Tensor
    extrinsics: torch.Tensor
    radar: torch.Tensor | None = None
    adjacent: torch.Tensor | None = None
    times: torch.Tensor | None = None
    poses: torch.Tensor | None = None


def capture_times_and_poses(frame: FrameSet, neighbours: Sequence[FrameSet]) -> tuple[torch.Tensor, torch.Tensor]:
    """times (1 + S, N) seconds and poses (1 + S, N, 4, 4) relative to camera 0 of `frame` (see `Sample`)."""
    sets = [frame, *neighbours]
    origin = frame.camera_stamps_ns[0]
    times = np.stack([(f.camera_stamps_ns - origin) * 1e-9 for f in sets])
    poses = np.full((len(sets), len(frame.rig.cameras), 4, 4), np.nan)
    if all(f.T_world_base is not None for f in sets):
        T_ref_world = geometry.invert_transform(frame.T_world_base[0])
        poses = np.stack([T_ref_world @ np.asarray(f.T_world_base, dtype=np.float64) for f in sets])
    return torch.from_numpy(times).float(), torch.from_numpy(poses).float()


def prepare_frameset(
    frame: FrameSet,
    size: tuple[int, int],
    radar: bool = False,
    labeled: bool = True,
    neighbours: Sequence[FrameSet] = (),
) -> Sample:
    """A FrameSet resized to size (h, w): images, min-pooled ground truth (0 when not `labeled`), intrinsics,
    radar maps, and the temporal neighbours' images with every capture time and ego pose."""
    height, width = size
    if labeled:
        gt = frame.depth if frame.depth is not None else lidar_depth_maps(frame)
        depth = torch.stack([min_pool_depth(torch.as_tensor(np.asarray(d, dtype=np.float32)), size) for d in gt])
    else:
        depth = torch.zeros(len(frame.rig.cameras), height, width)
    K = np.stack([geometry.resize_intrinsics(c.K, width / c.width, height / c.height) for c in frame.rig.cameras])
    maps = None
    if radar:
        scaled = CameraRig(
            [resize_camera(c, width, height) for c in frame.rig.cameras],
            frame.rig.radars,
            frame.rig.base_frame,
        )
        poses_known = frame.T_world_base is not None and all(s.T_world_base is not None for s in frame.radar)
        target = frame.T_world_base[0] if poses_known else None
        maps = torch.from_numpy(radar_to_maps(frame.radar, scaled, target_pose=target))
    times, poses = capture_times_and_poses(frame, neighbours)
    images = resize_images(frame.images, size)
    adjacent = torch.stack([resize_images(f.images, size) for f in neighbours]) if neighbours else None
    return Sample(
        name=frame.name,
        images=images,
        depth=depth[:, None],
        intrinsics=torch.from_numpy(K).float(),
        extrinsics=torch.from_numpy(frame.rig.extrinsics()).float(),
        radar=maps,
        adjacent=adjacent if adjacent is not None else images.new_zeros((0, *images.shape)),
        times=times,
        poses=poses,
    )


def concat_samples(first: Sample, second: Sample) -> Sample:
    """Two batches as one (labeled and unlabeled frame sets mixed); optional tensors must agree in presence."""
    values = {}
    for name in ("images", "depth", "intrinsics", "extrinsics", "radar", "adjacent", "times", "poses"):
        a, b = getattr(first, name), getattr(second, name)
        if (a is None) != (b is None):
            raise ValueError(f"cannot mix batches: only one has {name} (prepare both datasets alike)")
        if a is not None and a.shape[1:] != b.shape[1:]:
            raise ValueError(f"cannot mix batches: {name} {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
        values[name] = None if a is None else torch.cat([a, b])
    return Sample(f"{first.name}|{second.name}", **values)


OPTIONAL_FIELDS = ("radar", "adjacent", "times", "poses")


class PreparedDataset(torch.utils.data.Dataset):
    """Prepared samples stacked in memory; `batch(indices)` gives the tensors of several frame sets."""

    def __init__(self, samples: Sequence[Sample], camera_names: Sequence[str], adjacency: Sequence) -> None:
        if not samples:
            raise ValueError("dataset is empty: no frame sets were prepared")
        self.names = [s.name for s in samples]
        if len(set(self.names)) != len(self.names):
            raise ValueError("frame-set names must be unique (they key the teacher cache)")
        self.images = torch.stack([s.images for s in samples])
        self.depth = torch.stack([s.depth for s in samples])
        self.intrinsics = torch.stack([s.intrinsics for s in samples])
        self.extrinsics = torch.stack([s.extrinsics for s in samples])
        for name in OPTIONAL_FIELDS:
            values = [getattr(s, name) for s in samples]
            setattr(self, name, torch.stack(values) if all(v is not None for v in values) else None)
        self.camera_names = list(camera_names)
        self.adjacency = torch.as_tensor(np.asarray(adjacency, dtype=np.int64).reshape(-1, 2))

    @property
    def poses_missing(self) -> bool:
        """Whether some frame set lacks ego poses (then a pose network estimates them)."""
        return self.poses is not None and bool(torch.isnan(self.poses).any())

    def __len__(self) -> int:
        return len(self.names)

    def _optional(self, index: int | torch.Tensor) -> dict[str, torch.Tensor | None]:
        return {name: None if getattr(self, name) is None else getattr(self, name)[index] for name in OPTIONAL_FIELDS}

    def __getitem__(self, index: int) -> Sample:
        return Sample(
            self.names[index],
            self.images[index],
            self.depth[index],
            self.intrinsics[index],
            self.extrinsics[index],
            **self._optional(index),
        )

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the prepared images."""
        return tuple(self.images.shape[-2:])

    def batch(self, indices: Sequence[int]) -> Sample:
        """Several frame sets stacked: every tensor gets a leading batch dimension; names joined by '|'."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return Sample(
            "|".join(self.names[i] for i in index.tolist()),
            self.images[index],
            self.depth[index],
            self.intrinsics[index],
            self.extrinsics[index],
            **self._optional(index),
        )

    def resized(self, size: tuple[int, int]) -> PreparedDataset:
        """The same frame sets at another size (h, w): images as the engine resizes, depth min-pooled, K scaled."""
        height, width = size
        sy, sx = height / self.size[0], width / self.size[1]
        samples = []
        for i in range(len(self)):
            s = self[i]
            images = F.interpolate(s.images, size=size, mode="bilinear", antialias=True, align_corners=False)
            radar = None
            if s.radar is not None:
                radar = resize_masked(s.radar, s.radar[:, :1] > 0, size)[0]  # returns averaged, never with empties
            K = geometry.resize_intrinsics(s.intrinsics.double(), sx, sy).float()
            adjacent = None
            if s.adjacent is not None:
                flat = s.adjacent.flatten(0, 1)
                resized = F.interpolate(flat, size=size, mode="bilinear", antialias=True, align_corners=False)
                adjacent = resized.reshape(*s.adjacent.shape[:3], *size)
            depth = min_pool_depth(s.depth, size)
            samples.append(Sample(s.name, images, depth, K, s.extrinsics, radar, adjacent, s.times, s.poses))
        return PreparedDataset(samples, self.camera_names, self.adjacency)

    def save(self, path: Path, key: str) -> None:
        tensors = {"images": self.images, "depth": self.depth, "intrinsics": self.intrinsics}
        tensors.update(extrinsics=self.extrinsics, adjacency=self.adjacency)
        tensors.update({name: getattr(self, name) for name in OPTIONAL_FIELDS if getattr(self, name) is not None})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        payload = {"format": PREPARED_FORMAT, "key": key, "names": self.names, "cameras": self.camera_names}
        torch.save({**payload, "tensors": tensors}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, key: str) -> PreparedDataset | None:
        """The cached dataset, or None when absent, of another key or unreadable (then it is rebuilt)."""
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a truncated or foreign file is rebuilt, not trusted
            return None
        if not isinstance(data, dict) or data.get("format") != PREPARED_FORMAT or data.get("key") != key:
            return None
        t = data["tensors"]
        self = cls.__new__(cls)
        self.names, self.camera_names = list(data["names"]), list(data["cameras"])
        self.images, self.depth, self.intrinsics = t["images"], t["depth"], t["intrinsics"]
        self.extrinsics, self.adjacency = t["extrinsics"], t["adjacency"]
        for name in OPTIONAL_FIELDS:
            setattr(self, name, t.get(name))
        return self


@dataclass
class FramesWithNeighbours:
    """Frame sets of one dataset spec, each with its temporal neighbours, the rig they share and how many.

    `at(position)` is the pair at one position of `frames` without reading the others, where the source can
    seek (synthetic worlds, nuScenes, DDAD; not a bag): what lets several processes prepare one dataset."""

    frames: Iterable[tuple[FrameSet, list[FrameSet]]]
    rig: CameraRig
    count: int
    at: Callable[[int], tuple[FrameSet, list[FrameSet]]] | None = None


def with_neighbours(frames: Iterable[FrameSet], offsets: Sequence[int]) -> Iterator[tuple[FrameSet, list[FrameSet]]]:
    """Each frame set of a sequence with the ones at `offsets` (in frame sets) around it; the ends, which
    lack a neighbour, are skipped. One pass with a window of the offsets' span (bags stream, never seek)."""
    low, high = min([0, *offsets]), max([0, *offsets])
    window: deque[FrameSet] = deque(maxlen=high - low + 1)
    for frame in frames:
        window.append(frame)
        if len(window) == window.maxlen:
            yield window[-low], [window[o - low] for o in offsets]


def _world_at(source: SyntheticWorlds, position: int) -> tuple[FrameSet, list[FrameSet]]:
    """The pair `source.with_neighbours()` yields at `position`."""
    reader = source.readers[position // source.frames]
    index = source.first + (position % source.frames) * source.stride
    return reader[index], [reader[index + o] for o in source.neighbours]


def _sequence_at(source: Sequence[FrameSet], offsets: Sequence[int], position: int) -> tuple[FrameSet, list[FrameSet]]:
    """The pair `with_neighbours(source, offsets)` yields at `position`."""
    index = position - min([0, *offsets])
    return source[index], [source[index + o] for o in offsets]


def open_source(spec: DatasetConfig, size: tuple[int, int], **options: Any) -> FramesWithNeighbours:
    """The frame sets a dataset spec names (any type of the source registry), with neighbours, at most `limit`.

    A synthetic world is rendered at the training size (h, w) unless `render_size` says otherwise, without
    lidar (its depth is exact). `options` go to the reader (e.g. a bag's topic names)."""
    if spec.type == "synthetic":
        spec = replace(spec, render_size=spec.render_size or [size[1], size[0]])
        options = {"lidar": False, **options}
    source = open_frame_source(spec, **options)
    if isinstance(source, SyntheticWorlds):  # neighbours are frames of each world's stream: none is missing
        at = functools.partial(_world_at, source)
        frames = FramesWithNeighbours(source.with_neighbours(), source.rig, len(source), at)
    else:  # neighbours are frame sets of the sequence: its ends lack some
        span = max([0, *spec.neighbours]) - min([0, *spec.neighbours])
        at = functools.partial(_sequence_at, source, spec.neighbours) if hasattr(source, "__getitem__") else None
        count = max(0, len(source) - span)
        frames = FramesWithNeighbours(with_neighbours(source, spec.neighbours), source.rig, count, at)
    if spec.limit is not None and spec.limit < frames.count:
        limited = zip(range(spec.limit), frames.frames, strict=False)  # range first: no extra read
        frames = FramesWithNeighbours((pair for _, pair in limited), frames.rig, spec.limit, frames.at)
    return frames


def dataset_key(spec: DatasetConfig, size: tuple[int, int]) -> str:
    """What the prepared tensors depend on: the spec, the size and the data format."""
    text = json.dumps({"spec": asdict(spec), "size": list(size), "format": PREPARED_FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load_dataset(
    spec: DatasetConfig, size: tuple[int, int], cache_dir: str | Path | None = None, desc: str = "preparing"
) -> PreparedDataset:
    """Prepared tensors of a dataset spec at size (h, w), read from `cache_dir` when prepared before."""
    size = (int(size[0]), int(size[1]))
    key = dataset_key(spec, size)
    path = Path(cache_dir) / f"{spec.type}_{key}.pt" if cache_dir else None
    if path is not None:
        cached = PreparedDataset.load(path, key)
        if cached is not None:
            return cached
    rendered = (spec.render_size[1], spec.render_size[0]) if spec.type == "synthetic" and spec.render_size else size
    if rendered != size:
        # rendering is the slow part: prepare once at the render size, derive every training size from it
        dataset = load_dataset(spec, rendered, cache_dir, desc).resized(size)
    else:
        source = open_source(spec, size)
        samples = [
            prepare_frameset(frame, size, spec.radar, spec.labeled, neighbours)
            for frame, neighbours in tqdm(
                source.frames, total=source.count, desc=f"{desc} {spec.type}", unit="frameset"
            )
        ]
        dataset = PreparedDataset(samples, source.rig.camera_names, source.rig.adjacency())
    if path is not None:
        dataset.save(path, key)
    return dataset


class ColourJitter:
    """Per-view brightness, contrast and saturation jitter of +-`strength`: photometric, so geometry is untouched."""

    def __init__(self, strength: float) -> None:
        self.strength = float(strength)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 (B, N, 3, H, W) -> float [0, 1], each view with its own factors drawn from `generator`."""
        x = images.float() / 255.0
        if self.strength <= 0:
            return x
        shape = (*x.shape[:2], 1, 1, 1)

        def factor() -> torch.Tensor:
            return 1.0 + (torch.rand(shape, generator=generator) * 2 - 1) * self.strength

        brightness, contrast, saturation = factor(), factor(), factor()
        x = x * brightness.to(x)
        mean = x.mean(dim=(2, 3, 4), keepdim=True)
        x = (x - mean) * contrast.to(x) + mean
        grey = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 1, 3, 1, 1)).sum(2, keepdim=True)
        x = (x - grey) * saturation.to(x) + grey
        return x.clamp(0.0, 1.0)
