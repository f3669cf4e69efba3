"""The surround-view student: shared encoder -> radar FiLM -> cross-view / temporal attention -> decoder -> bins.

One model carries what the four source papers' students have (see ../shared/RESEARCH.md):
bin-based hybrid regression (2512.08700), cross-view and temporal attention (Semi-SMD),
intermediate depth heads and a MobileNetV2 radar encoder (LiRCDepth), FiLM fusion and the
point-wise DASPP decoder (XD-RCDepth). Presets name the configurations people use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from surround_depth_ros.network.attention import CrossViewAttention, TemporalAttention, neighbour_table
from surround_depth_ros.network.bins import BinHead, DepthHead
from surround_depth_ros.network.decoders import DECODERS, DepthDecoder
from surround_depth_ros.network.encoders import ENCODERS, build_encoder
from surround_depth_ros.network.radar_branch import RadarBranch
from surround_depth_ros.sensors.radar import RADAR_CHANNELS

# ImageNet statistics of RGB in [0, 1]: the networks see (rgb / 255 - MEAN) / STD, computed by `ImageNormalisation`.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ImageNormalisation(nn.Module):
    """RGB (..., 3, H, W) as uint8 or floats in [0, 1] -> (rgb - mean) / std, inside the model that needs it.

    A model that owns its normalisation takes raw images from every caller (engine, trainer,
    evaluation, teachers), so no caller can forget it or apply other statistics. The statistics are
    non-persistent buffers: they follow `.to()` / `.half()` and are no part of the state dict, so
    checkpoints written before this module existed load unchanged.
    """

    def __init__(self, mean: tuple[float, float, float] = MEAN, std: tuple[float, float, float] = STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.to(self.mean.dtype) / 255.0
        return (images - self.mean) / self.std


@dataclass(frozen=True)
class StudentConfig:
    """Everything that fixes the architecture (and so the checkpoint's weight layout)."""

    name: str = "custom"
    encoder: str = "mobilenetv2"
    width: float = 1.0
    decoder: str = "unet"
    decoder_channels: tuple[int, int, int, int] = (96, 64, 32, 16)  # strides 16, 8, 4, 2
    n_bins: int = 64
    min_depth: float = 0.5
    max_depth: float = 80.0
    log_bins: bool = True
    bin_temperature: float = 1.0
    radar: bool = False
    radar_width: float = 0.5
    cross_view: bool = True
    temporal: bool = False
    attention_heads: int = 4
    max_cameras: int = 8
    input_height: int = 352
    input_width: int = 640

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        if self.encoder not in ENCODERS:
            raise ValueError(
                f"config {self.name!r}: unknown encoder {self.encoder!r}; choose one of {sorted(ENCODERS)}"
            )
        if self.decoder not in DECODERS:
            raise ValueError(f"config {self.name!r}: unknown decoder {self.decoder!r}; choose one of {list(DECODERS)}")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(
                f"config {self.name!r}: need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}"
            )
        if self.input_height < 8 or self.input_width < 8:
            raise ValueError(f"config {self.name!r}: input size {self.input_height}x{self.input_width} is too small")

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the network is run at."""
        return self.input_height, self.input_width

    def to_dict(self) -> dict:
        """Plain types only (for checkpoints loaded with weights_only=True, and for JSON)."""
        data = dataclasses.asdict(self)
        data["decoder_channels"] = list(self.decoder_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> StudentConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown student config keys {unknown}; this version knows {sorted(known)}")
        return cls(**data)


PRESETS: dict[str, StudentConfig] = {
    # For tests: every feature on (radar FiLM, cross-view attention), well under 0.5 M parameters.
    "tiny": StudentConfig(
        name="tiny",
        width=0.25,
        decoder_channels=(32, 24, 16, 8),
        n_bins=16,
        radar=True,
        radar_width=0.25,
        attention_heads=2,
        input_height=64,
        input_width=112,
    ),
    # The vehicle model: cameras only, cross-view attention, U-Net decoder.
    "default": StudentConfig(name="default", width=1.0, decoder_channels=(96, 64, 32, 16), n_bins=64),
    # Radar-camera (XD-RCDepth style): FiLM at four scales and the point-wise DASPP decoder.
    "radar": StudentConfig(name="radar", width=1.0, decoder="daspp", decoder_channels=(96, 64, 32, 16), radar=True),
    # Spatial-temporal (Semi-SMD style): the default plus attention to the previous frame.
    "temporal": StudentConfig(name="temporal", width=1.0, decoder_channels=(96, 64, 32, 16), temporal=True),
    # A bigger model of the same family, to serve as the radar-camera teacher.
    "large": StudentConfig(
        name="large",
        encoder="resnet18",
        width=1.0,
        decoder_channels=(256, 128, 64, 32),
        n_bins=128,
        radar=True,
        radar_width=1.0,
        attention_heads=8,
    ),
}


def preset(name: str) -> StudentConfig:
    """The preset called `name`, with a clear error listing the others."""
    if name not in PRESETS:
        raise KeyError(f"no student preset {name!r}; presets are {sorted(PRESETS)}")
    return PRESETS[name]


@dataclass
class StudentOutput:
    """Depth and confidence (B, N, 1, H, W) at input resolution; the rest only with return_aux.

    Bin tensors are at the bin head's resolution, half the input (h = H/2, w = W/2 rounded up).
    """

    depth: torch.Tensor
    confidence: torch.Tensor
    bin_centres: torch.Tensor | None = None  # (B, N, K) metres
    bin_logits: torch.Tensor | None = None  # (B, N, K, h, w)
    bin_probs: torch.Tensor | None = None  # (B, N, K, h, w)
    features: list[torch.Tensor] = field(default_factory=list)  # decoder inputs, strides 2..32, (B, N, C, h, w)
    image_features: list[torch.Tensor] = field(default_factory=list)  # image encoder (before FiLM), strides 2..32
    radar_features: list[torch.Tensor] = field(default_factory=list)  # radar encoder, strides 2..32 (radar presets)
    decoder_features: list[torch.Tensor] = field(default_factory=list)  # strides 16, 8, 4, 2
    intermediate_depths: list[torch.Tensor] = field(default_factory=list)  # strides 8, 4, 2, (B, N, 1, h, w)
    temporal_features: torch.Tensor | None = None  # feed as prev_features next frame (temporal models)


class SurroundDepthStudent(nn.Module):
    """All views share the encoder and decoder; attention mixes views at stride 32."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        self.normalise = ImageNormalisation()
        self.encoder = build_encoder(config.encoder, config.width)
        channels = self.encoder.channels
        self.radar = RadarBranch(channels, config.radar_width, config.max_depth) if config.radar else None
        heads = config.attention_heads
        self.cross_view = CrossViewAttention(channels[4], heads, config.max_cameras) if config.cross_view else None
        self.temporal = TemporalAttention(channels[4], heads) if config.temporal else None
        self.decoder = DepthDecoder(channels, config.decoder_channels, config.decoder)
        depth_range = (config.min_depth, config.max_depth, config.log_bins)
        self.depth_heads = nn.ModuleList(DepthHead(config.decoder_channels[i], *depth_range) for i in (1, 2))
        self.bin_head = BinHead(
            config.decoder_channels[3], channels[4], config.n_bins, *depth_range, temperature=config.bin_temperature
        )

    def forward(
        self,
        images: torch.Tensor,
        adjacency: torch.Tensor,
        radar: torch.Tensor | None = None,
        prev_features: torch.Tensor | None = None,
        return_aux: bool = False,
    ) -> StudentOutput:
        """images (B, N, 3, H, W) RGB, uint8 or floats in [0, 1] (the model normalises them); adjacency (E, 2)
        camera index pairs; radar (B, N, 4, H, W) maps (depth, rcs, vx, vy; 0 = no return) or None (no returns)."""
        self.check_inputs(images, radar, prev_features)
        table, mask = neighbour_table(adjacency, images.shape[1])
        return self.predict(images, table.to(images.device), mask.to(images.device), radar, prev_features, return_aux)

    def check_inputs(
        self, images: torch.Tensor, radar: torch.Tensor | None, prev_features: torch.Tensor | None
    ) -> None:
        """Clear errors for shapes the model cannot take."""
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (batch, views, 3, height, width), got {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"images must be uint8 RGB or floats in [0, 1], got dtype {images.dtype}")
        if images.shape[1] > self.config.max_cameras:
            raise ValueError(
                f"{images.shape[1]} views exceed preset {self.config.name!r}'s max_cameras={self.config.max_cameras}"
            )
        if radar is not None:
            if not self.config.radar:
                raise ValueError(
                    f"preset {self.config.name!r} has no radar branch; pass radar=None or use a radar preset"
                )
            expected = (*images.shape[:2], len(RADAR_CHANNELS), *images.shape[3:])
            if tuple(radar.shape) != expected:
                raise ValueError(f"radar maps must be {expected} (channels {RADAR_CHANNELS}), got {tuple(radar.shape)}")
        if prev_features is not None and not self.config.temporal:
            raise ValueError(f"preset {self.config.name!r} is not temporal; pass prev_features=None")

    def predict(
        self,
        images: torch.Tensor,
        table: torch.Tensor,
        mask: torch.Tensor,
        radar: torch.Tensor | None = None,
        prev_features: torch.Tensor | None = None,
        return_aux: bool = False,
    ) -> StudentOutput:
        """The forward pass with a prepared neighbour table (static shapes: what export traces)."""
        b, n, _, h, w = images.shape
        x = self.normalise(images.flatten(0, 1))
        image_features = self.encoder(x)
        features, radar_features = image_features, []
        if self.radar is not None:
            maps = radar.flatten(0, 1) if radar is not None else x.new_zeros(b * n, len(RADAR_CHANNELS), h, w)
            features, radar_features = self.radar(image_features, maps)
        bottleneck = features[4]
        if self.cross_view is not None:
            bottleneck = self.cross_view(bottleneck.unflatten(0, (b, n)), table, mask).flatten(0, 1)
        temporal_features = None
        if self.temporal is not None:
            temporal_features = bottleneck.unflatten(0, (b, n))
            previous = temporal_features if prev_features is None else prev_features
            bottleneck = self.temporal(temporal_features, previous).flatten(0, 1)
        # The decoder consumes the per-view (B, N, ...) views that return_aux hands out, so that
        # gradients w.r.t. them exist (Grad-CAM saliency KD differentiates through them).
        per_view = [f.unflatten(0, (b, n)) for f in (*features[:4], bottleneck)]
        decoded = self.decoder([f.flatten(0, 1) for f in per_view])
        bins = self.bin_head(decoded[3], bottleneck)
        depth = F.interpolate(bins.depth, size=(h, w), mode="bilinear", align_corners=False).unflatten(0, (b, n))
        confidence = F.interpolate(bins.confidence, size=(h, w), mode="bilinear", align_corners=False)
        output = StudentOutput(depth, confidence.unflatten(0, (b, n)), temporal_features=temporal_features)
        if return_aux:

            def views(x: torch.Tensor) -> torch.Tensor:
                return x.unflatten(0, (b, n))

            output.bin_centres, output.bin_logits, output.bin_probs = map(
                views, (bins.centres, bins.logits, bins.probs)
            )
            output.features = per_view
            output.image_features = [views(f) for f in image_features]
            output.radar_features = [views(f) for f in radar_features]
            output.decoder_features = [views(f) for f in decoded]
            heads = [head(decoded[i]) for head, i in zip(self.depth_heads, (1, 2), strict=True)]
            output.intermediate_depths = [views(d) for d in (*heads, bins.depth)]
        return output


class ExportableStudent(nn.Module):
    """The inference forward with the rig's neighbour table baked in, returning plain tensors.

    Inputs, in order: images (RGB floats in [0, 1]; the graph normalises them), then radar (radar
    presets), then prev_features (temporal presets);
    outputs: depth, confidence, then temporal_features (temporal presets). Names in
    `input_names` / `output_names`. Static shapes, no Python control flow on data: this is what
    goes through torch.export, torch.onnx.export and Torch-TensorRT.
    """

    def __init__(
        self,
        model: SurroundDepthStudent,
        adjacency: torch.Tensor,
        n_views: int,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if n_views > model.config.max_cameras:
            raise ValueError(
                f"{n_views} views exceed preset {model.config.name!r}'s max_cameras={model.config.max_cameras}"
            )
        self.model = model
        self.input_size = tuple(input_size or model.config.input_size)
        table, mask = neighbour_table(adjacency, n_views)
        self.register_buffer("table", table)
        self.register_buffer("mask", mask)
        self.n_views = n_views
        config = model.config
        self.input_names = ["images"] + ["radar"] * config.radar + ["prev_features"] * config.temporal
        self.output_names = ["depth", "confidence"] + ["temporal_features"] * config.temporal

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.input_names, inputs, strict=True))
        out = self.model.predict(named["images"], self.table, self.mask, named.get("radar"), named.get("prev_features"))
        return (out.depth, out.confidence) + ((out.temporal_features,) if self.model.config.temporal else ())

    def example_inputs(self, batch: int = 1, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """Inputs of the right static shapes (random [0, 1] images, empty radar, zero previous features)."""
        config = self.model.config
        h, w = self.input_size
        shapes = {"images": (batch, self.n_views, 3, h, w), "radar": (batch, self.n_views, len(RADAR_CHANNELS), h, w)}
        if config.temporal:
            shapes["prev_features"] = (batch, self.n_views, *self.temporal_feature_shape())
        generator = torch.Generator().manual_seed(0)
        return tuple(
            (torch.rand(shapes[name], generator=generator) if name == "images" else torch.zeros(shapes[name])).to(
                device
            )
            for name in self.input_names
        )

    def temporal_feature_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one view's temporal features at the input size."""
        h, w = self.input_size
        for _ in range(5):  # five stride-2 stages, each rounding up
            h, w = (h + 1) // 2, (w + 1) // 2
        return self.model.encoder.channels[4], h, w
