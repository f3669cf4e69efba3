"""`DepthEngine`: the stages from camera images to metric depth per camera, whatever runs the network.

Pre-processing (upload the uint8 images once, resize them on the device to RGB in [0, 1], radar maps;
the network normalises its input itself), the network run, and post-processing (the canonical-camera
placement, clamping to the model's range, NaN where invalid, the resize back to each camera's size)
live here, so every backend sees the same tensors; `core.pipeline.SurroundDepthPipeline.process`
composes them for the node, the tools, the benchmarks and the tests.
Resizing uses the CPU's vectorised uint8 antialiased kernel on channels-last views of the images.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from surround_depth_ros.base.geometry import resize_intrinsics
from surround_depth_ros.base.threads import POSTPROCESS_THREADS, torch_threads
from surround_depth_ros.inference.backend import Backend, elapsed_progress
from surround_depth_ros.inference.backend_factory import BACKENDS, auto_backend, build_backend
from surround_depth_ros.inference.cache import default_cache_dir
from surround_depth_ros.inference.staging import StagingBuffer
from surround_depth_ros.network.attention import ring_adjacency
from surround_depth_ros.network.checkpoint import load_checkpoint, weights_checksum
from surround_depth_ros.network.student import MEAN, ExportableStudent, SurroundDepthStudent
from surround_depth_ros.sensors.radar import RADAR_CHANNELS

LOG = logging.getLogger(__name__)
RESOLUTIONS = ("network", "camera")  # of `SurroundDepthPipeline`'s maps: the network's output size or each camera's


class Placement(NamedTuple):
    """Where one camera image lies in the network input: resized to height x width with its top-left pixel at
    (top, left). K: the intrinsics of the whole network input in network pixels (a virtual camera
    with the camera's optical frame)."""

    top: int
    left: int
    height: int
    width: int
    K: np.ndarray

    def fills(self, input_size: tuple[int, int]) -> bool:
        """True when the image is plainly resized to the whole input (no border)."""
        return (self.top, self.left, self.height, self.width) == (0, 0, *input_size)


def canonical_placement(
    K: np.ndarray, size: tuple[int, int], K_trained: np.ndarray, input_size: tuple[int, int]
) -> Placement:
    """Where a camera image goes in the network input so that it looks like its slot's training camera.

    The network learned metric depth from apparent size at the training camera's focal lengths
    (`K_trained`, network pixels). Along an image axis where the camera sees narrower (a longer
    focal length in network pixels), the image is resized to the training focal length and its
    principal point put on the training one, leaving a border: Metric3D's canonical camera,
    which needs no depth factor. Along an axis where it sees as wide or wider, the image fills
    the input as the plain resize does, with no depth factor: shrinking it into a border, or
    multiplying depth by the focal ratio (the label transform), made the DDAD sample worse than
    no rescaling with this student (docs/sync_and_tf.md). Positions are whole pixels, so a camera
    within half a network pixel of the training one is resized plainly, exactly as before.
    """
    H, W = size
    K_net = resize_intrinsics(K, input_size[1] / W, input_size[0] / H)
    box = []
    for axis, n, m in ((1, H, input_size[0]), (0, W, input_size[1])):
        extent = int(min(m, max(1, round(n * K_trained[axis, axis] / K[axis, axis]))))
        principal = (K[axis, 2] + 0.5) * extent / n - 0.5
        offset = int(np.clip(round(K_trained[axis, 2] - principal), 0, m - extent))
        box.append((offset, extent))
        K_net[axis, axis] = K[axis, axis] * extent / n
        K_net[axis, 2] = principal + offset
    (top, height), (left, width) = box
    return Placement(top, left, height, width, K_net)


def _pairs(adjacency: torch.Tensor | np.ndarray | list | tuple) -> frozenset[tuple[int, int]]:
    return frozenset(tuple(sorted(p)) for p in torch.as_tensor(adjacency, dtype=torch.long).reshape(-1, 2).tolist())


def _size_groups(sizes: list[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(sizes):
        groups.setdefault(size, []).append(index)
    return groups


class DepthEngine:
    """Runs a student checkpoint (or model) on one frame set of camera images at a time.

    `adjacency` (E, 2) defaults to the checkpoint's, else a ring over the cameras in order
    (`set_adjacency` replaces it with the live rig's); `n_views` to the checkpoint rig's camera
    count, else 6. Pixels whose confidence is below `min_confidence` become NaN. Temporal models
    keep the previous frame's features (`reset()` forgets them).
    """

    def __init__(
        self,
        source: str | Path | SurroundDepthStudent,
        backend: str = "auto",
        device: str | torch.device | None = None,
        precision: str = "fp32",
        adjacency: torch.Tensor | np.ndarray | list | None = None,
        n_views: int | None = None,
        cache_dir: str | Path | None = None,
        min_confidence: float = 0.0,
        onnx_provider: str | None = None,
        channels_last: bool | None = None,
        threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
        if isinstance(source, (str, Path)):
            model, self.info = load_checkpoint(source)
        else:
            model, self.info = source.eval(), None
        self.config = model.config
        rig = self.info.rig if self.info else None
        self.n_views = n_views or (len(rig.cameras) if rig else 6)
        if adjacency is None and self.info is not None and self.info.adjacency is not None:
            adjacency = self.info.adjacency
        if adjacency is None:
            LOG.warning(
                "no camera adjacency given: assuming the %d cameras are listed in order around the vehicle",
                self.n_views,
            )
            adjacency = ring_adjacency(self.n_views)
        self.input_size = self.info.input_size if self.info else self.config.input_size
        self.adjacency = _pairs(adjacency)
        self.module = ExportableStudent(model, torch.as_tensor(adjacency), self.n_views, self.input_size)
        self.checksum = self.info.checksum if self.info else weights_checksum(model.state_dict())
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.backend_name = auto_backend(self.device) if backend == "auto" else backend
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        # CPU threads: `threads` for the network (None: torch's count / ONNX Runtime: the cores), one for the
        # elementwise pre/post-processing (see surround_depth_ros.base.threads).
        self.threads = POSTPROCESS_THREADS if self.device.type == "cpu" else None
        self._backend_options = (precision, onnx_provider, channels_last, threads)
        self.backend = self._build_backend(self.module)
        self.min_confidence = min_confidence
        self._staging: dict[tuple[int, int, int], StagingBuffer] = {}
        self._warm = False  # warm_up was called: a backend rebuilt for a new adjacency is warmed too
        self._border = torch.tensor(MEAN).view(3, 1, 1).to(self.device)
        self._previous: torch.Tensor | None = None
        h, w = self.input_size
        self._trained_K = (
            None if rig is None else [resize_intrinsics(c.K, w / c.width, h / c.height) for c in rig.cameras]
        )
        LOG.info(
            "depth engine: preset %s, backend %s on %s, %s", self.config.name, self.backend_name, self.device, precision
        )

    def _build_backend(self, module: ExportableStudent) -> Backend:
        return build_backend(
            self.backend_name, module, self.device, self.checksum, self.cache_dir, *self._backend_options
        )

    def set_adjacency(self, adjacency: torch.Tensor | np.ndarray | list | tuple) -> bool:
        """Let cross-view attention pair the cameras the live rig pairs (slot numbering, `Binding.adjacency`).

        The neighbour table is baked into the network (static shapes for export), so a different
        set of pairs rebuilds it and the backend: at once for torch; ONNX Runtime and TensorRT load
        the cache file of this adjacency, exported / built the first time it is seen. The temporal
        state is forgotten. The same pairs in any order change nothing. Returns True when rebuilt.
        """
        pairs = _pairs(adjacency)
        if pairs == self.adjacency:
            return False
        table = torch.tensor(sorted(pairs), dtype=torch.long).reshape(-1, 2)
        module = ExportableStudent(self.module.model, table, self.n_views, self.input_size)  # a bad pair fails here
        backend = self._build_backend(module)
        if self._warm:
            self._warm_up(backend, module)
        self.backend, self.module, self.adjacency = backend, module, pairs
        self.reset()
        LOG.info("depth engine: cross-view attention over the live rig's pairs %s", sorted(pairs))
        return True

    def warm_up(self) -> float:
        """Run the network once on example inputs now, so that the first frame set does not pay for first-run work.

        What a back-end does on its first run: ONNX Runtime's TensorRT provider builds (or loads)
        its engine, minutes on a first start; CUDA loads its kernels and cuDNN chooses algorithms.
        Called at start-up (`pipeline_from_settings`, before the node subscribes); afterwards
        `set_adjacency` warms the back-end it builds for a new rig before using it. Returns seconds.
        """
        self._warm = True
        return self._warm_up(self.backend, self.module)

    def _warm_up(self, backend: Backend, module: ExportableStudent) -> float:
        LOG.info("depth engine: warming up the %s back-end on %s", backend.name, self.device)
        started = time.perf_counter()
        with elapsed_progress(f"warming up the {backend.name} back-end"):
            backend.run(module.example_inputs(device=self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the first run's work is done here, not in the first frame set
        elapsed = time.perf_counter() - started
        LOG.info("depth engine: %s back-end ready in %.1f s", backend.name, elapsed)
        return elapsed

    def reset(self) -> None:
        """Forget the previous frame (temporal models): call on a jump in time or a new sequence."""
        self._previous = None

    def upload(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """The camera images (N HxWx3 uint8 RGB) on the engine's device, each copied once as uint8.

        On the CPU these are views of the arrays; on CUDA they pass through pinned staging memory
        (kept per image size, `StagingBuffer`) so that the copy to the GPU is asynchronous.
        """
        if len(images) != self.n_views:
            raise ValueError(f"expected {self.n_views} camera images, got {len(images)}")
        for index, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                what = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                raise ValueError(f"camera {index}: expected an HxWx3 uint8 RGB image, got {what}")
        if self.device.type == "cpu":
            with warnings.catch_warnings():
                # Read-only buffers (a DDS message, a bag) are viewed, never written: every later op makes new tensors.
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return [torch.from_numpy(image) for image in images]
        uploaded: list[torch.Tensor | None] = [None] * len(images)
        for size, indices in _size_groups([im.shape[:2] for im in images]).items():
            key = (len(indices), *size)
            if key not in self._staging:
                self._staging[key] = StagingBuffer((*key, 3), self.device)
            staging = self._staging[key]
            host = staging.host()  # waits, if need be, until the previous set's copy out of it has run
            for slot, i in enumerate(indices):
                host[slot].numpy()[...] = images[i]
            on_device = staging.upload()
            for slot, i in enumerate(indices):
                uploaded[i] = on_device[slot]
        return uploaded

    def network_images(self, images: list[torch.Tensor], placements: list[Placement] | None = None) -> torch.Tensor:
        """(1, N, 3, h, w) network input of uploaded images: resized (antialiased) on the device, RGB in [0, 1].

        The network normalises its input itself (`ImageNormalisation`), so this is all the engine
        does. With `placements` each image is resized to its placement and the border is the mean
        colour (`MEAN`: 0 after the network's normalisation, as Metric3D pads); without, it fills the input.
        """
        h, w = self.input_size
        batch = torch.empty((self.n_views, 3, h, w), dtype=torch.float32, device=self.device)
        with torch_threads(self.threads):
            for i, image in enumerate(images):
                x = image.permute(2, 0, 1)[None]  # channels-last: what the uint8 resize kernel is fastest on
                if self.device.type != "cpu":
                    x = x.float()  # CUDA interpolation has no uint8 kernel; the CPU's uint8 one is the fastest there
                top, left, height, width = placements[i][:4] if placements is not None else (0, 0, h, w)
                if tuple(x.shape[-2:]) != (height, width):
                    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
                # x / 255 as the network's own uint8 path computes it, so both inputs give the same depth; from
                # channels-first bytes, as the batch is laid out (6 x 1600x900 -> 352x640: 9.1 -> 6.6 ms)
                x = x.contiguous()
                if (height, width) == (h, w):
                    torch.div(x, 255.0, out=batch[i : i + 1])
                else:
                    batch[i].copy_(self._border.expand(3, h, w))
                    batch[i, :, top : top + height, left : left + width] = x[0] / 255.0
        return batch[None]

    def preprocess(
        self, images: list[np.ndarray], radar: np.ndarray | torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """The network inputs for `images` (N HxWx3 uint8 RGB) and optional radar maps (N, 4, H, W)."""
        return self.network_inputs(self.network_images(self.upload(images)), radar)

    def network_inputs(self, batch: torch.Tensor, radar: np.ndarray | torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The backend's inputs from an image batch (`network_images`) and radar maps (N, 4, H, W) or None."""
        inputs = [batch]
        if self.config.radar:
            inputs.append(self._radar_input(radar))
        elif radar is not None:
            raise ValueError(f"preset {self.config.name!r} has no radar branch; pass radar=None")
        return tuple(inputs)

    def _radar_input(self, radar: np.ndarray | torch.Tensor | None) -> torch.Tensor:
        expected = (self.n_views, len(RADAR_CHANNELS), *self.input_size)
        if radar is None:
            return torch.zeros((1, *expected), device=self.device)
        maps = torch.as_tensor(radar, dtype=torch.float32)
        if tuple(maps.shape) != expected:
            raise ValueError(
                f"radar maps must be {expected} (views, channels {RADAR_CHANNELS}, the network's input size); got "
                f"{tuple(maps.shape)}: render them at engine.input_size"
            )
        return maps.to(self.device)[None]

    def run_network(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Depth and confidence (N, 1, H, W) at network resolution; keeps temporal state."""
        if self.config.temporal:
            if self._previous is None:  # first frame: the previous frame is this one (as in the model's forward)
                zeros = torch.zeros((1, self.n_views, *self.module.temporal_feature_shape()), device=self.device)
                self._previous = self.backend.run((*inputs, zeros))[2]
            outputs = self.backend.run((*inputs, self._previous))
            self._previous = outputs[2]
        else:
            outputs = self.backend.run(inputs)
        return outputs[0][0].to(self.device), outputs[1][0].to(self.device)

    def _checked_intrinsics(self, intrinsics: np.ndarray) -> np.ndarray:
        if self._trained_K is None:
            raise ValueError("intrinsics were given but the model records no training rig to compare them with")
        K = np.asarray(intrinsics, dtype=np.float64).reshape(-1, 3, 3)
        if len(K) != self.n_views:
            raise ValueError(f"expected {self.n_views} intrinsics matrices (N, 3, 3), got {len(K)}")
        return K

    def placements(self, intrinsics: np.ndarray, sizes: list[tuple[int, int]]) -> list[Placement]:
        """Where each view's image goes in the network input (`canonical_placement` into its slot's camera).

        On the DDAD sample (cameras 0.6-1.4x the training focal length per network pixel, resized
        anisotropically) this scored AbsRel 0.461 against 0.505 plainly resized and 0.567 with the
        old depth factor; nuScenes cameras are resized plainly as before (docs/sync_and_tf.md).
        """
        K = self._checked_intrinsics(intrinsics)
        return [
            canonical_placement(k, size, trained, self.input_size)
            for k, size, trained in zip(K, sizes, self._trained_K, strict=True)
        ]

    def mask(
        self,
        depth: torch.Tensor,
        confidence: torch.Tensor,
        placements: list[Placement] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clamp to the model's range; NaN depth and 0 confidence where the output is not finite or not confident.

        The border around images placed by `placements` (one per view) is NaN.
        """
        border = None
        if placements is not None and not all(view.fills(self.input_size) for view in placements):
            border = torch.ones((len(placements), 1, *self.input_size), dtype=torch.bool, device=self.device)
            for i, (top, left, height, width, _) in enumerate(placements):
                border[i, :, top : top + height, left : left + width] = False
        with torch_threads(self.threads):
            # 0 where both maps are finite, NaN elsewhere (x - x is NaN for NaN and inf): two subtractions and
            # an add instead of two `isfinite`, each of which takes several passes (default preset: 7.3 -> 2.4 ms)
            invalid = depth - depth
            invalid += confidence - confidence
            if self.min_confidence > 0:
                invalid.masked_fill_(confidence < self.min_confidence, float("nan"))
            if border is not None:
                invalid.masked_fill_(border, float("nan"))
            depth = depth.clamp(self.config.min_depth, self.config.max_depth).add_(invalid)  # clamp keeps NaN
            return depth, confidence.clamp(0.0, 1.0).add_(invalid).nan_to_num_(nan=0.0)

    def resize(
        self, maps: torch.Tensor, sizes: list[tuple[int, int]], placements: list[Placement] | None = None
    ) -> torch.Tensor | list[torch.Tensor]:
        """(N, 1, h, w) maps bilinearly resized on the device to each camera's size: (N, H, W) when all sizes agree.

        `placements` (one per map) crops each map to where its image lies first. Bilinear
        interpolation keeps clamped values in range and spreads NaN by at most one pixel, so
        masking before the resize touches 7x fewer pixels for 1600x900 cameras.
        """
        full = (0, 0, *maps.shape[-2:])
        boxes = [full] * len(sizes) if placements is None else [tuple(p[:4]) for p in placements]
        groups = _size_groups(list(zip(sizes, boxes, strict=True)))
        resized = {}
        with torch_threads(self.threads):
            for (size, (top, left, height, width)), indices in groups.items():
                crop = maps[indices, :, top : top + height, left : left + width]
                resized[size, (top, left, height, width)] = (
                    F.interpolate(crop, size=size, mode="bilinear", align_corners=False)[:, 0]
                    if size != (height, width)
                    else crop[:, 0]
                )
        if len(groups) == 1:
            return next(iter(resized.values()))
        out: list[torch.Tensor | None] = [None] * len(sizes)
        for key, indices in groups.items():
            for j, i in enumerate(indices):
                out[i] = resized[key][j]
        return torch.stack(out) if len(set(sizes)) == 1 else out


def host_arrays(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """numpy arrays of tensors: views on the CPU; from a GPU, through one copy of them all packed together."""
    if all(t.device.type == "cpu" for t in tensors):
        return [t.contiguous().numpy() for t in tensors]
    flat = torch.cat([t.contiguous().reshape(-1).view(torch.uint8) for t in tensors])
    host = torch.empty(flat.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(flat)
    arrays, start = [], 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        arrays.append(host[start : start + nbytes].view(t.dtype).reshape(t.shape).numpy())
        start += nbytes
    return arrays
