"""Depth Anything V2 (or any Hugging Face depth-estimation model) as a teacher, from a local directory only.

The foundation-model teacher of 2512.08700. Weights are never downloaded: the directory must be
a `save_pretrained` folder (config.json + model.safetensors / pytorch_model.bin), e.g. a copy
of depth-anything/Depth-Anything-V2-Small-hf (Apache-2.0). Features for the relational losses
are the ViT backbone's hidden states at its output layers, reshaped to patch maps.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from surround_depth_ros.network.student import ImageNormalisation
from surround_depth_ros.teachers.base import ForwardResult, Teacher, TeacherOutput

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_model_dir(model_dir: str | Path) -> Path:
    """The directory, or an error saying what is missing from it."""
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"Depth Anything model directory {path} does not exist; give a local save_pretrained folder "
            "(config.json + model.safetensors), e.g. a copy of depth-anything/Depth-Anything-V2-Small-hf"
        )
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"Depth Anything model directory {path} has no config.json (a save_pretrained folder)")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(f"Depth Anything model directory {path} has none of the weight files {WEIGHT_FILES}")
    return path


class DepthAnythingTeacher(Teacher):
    """Relative inverse depth (or metric depth, for the metric fine-tunes) from a local Depth Anything model.

    Images are resized to `input_height` (rounded to the patch size) keeping the aspect ratio,
    normalised with ImageNet statistics, and the prediction resized back to the input size.
    """

    def __init__(self, model_dir: str | Path, input_height: int = 518, device: str | torch.device = "cpu") -> None:
        from transformers import AutoConfig, AutoModelForDepthEstimation

        self.model_dir = check_model_dir(model_dir)
        config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModelForDepthEstimation.from_pretrained(self.model_dir, local_files_only=True)
        self.model.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.normalise = ImageNormalisation().to(self.device)  # Depth Anything's processor uses ImageNet statistics
        self.patch = int(getattr(config, "patch_size", None) or config.backbone_config.patch_size)
        self.input_height = max(self.patch, round(input_height / self.patch) * self.patch)
        self.layers = list(getattr(config.backbone_config, "out_indices", None) or [-1])
        self.kind = "metric" if getattr(config, "depth_estimation_type", "relative") == "metric" else "relative_inverse"
        weights = sorted(p for p in self.model_dir.iterdir() if p.name in WEIGHT_FILES or p.suffix == ".safetensors")
        fingerprint = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
        for weight in weights:
            fingerprint.update(f"{weight.name}:{weight.stat().st_size}:{weight.stat().st_mtime_ns}".encode())
        self._identity = f"depth_anything:{self.model_dir.resolve()}:{fingerprint.hexdigest()[:16]}:{self.input_height}"

    @property
    def identity(self) -> str:
        return self._identity

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the model runs at for an input of height x width: multiples of the patch size."""
        scaled = max(self.patch, round(width * self.input_height / height / self.patch) * self.patch)
        return self.input_height, scaled

    def forward(
        self, images: torch.Tensor, radar: torch.Tensor | None, adjacency: torch.Tensor | None
    ) -> ForwardResult:
        batch, views, _, height, width = images.shape
        size = self.network_size(height, width)
        x = F.interpolate(images.flatten(0, 1).to(self.device), size=size, mode="bilinear", align_corners=False)
        out = self.model(pixel_values=self.normalise(x), output_hidden_states=True)
        depth = F.interpolate(out.predicted_depth[:, None], size=(height, width), mode="bilinear", align_corners=False)
        grid = (size[0] // self.patch, size[1] // self.patch)

        def to_map(tokens: torch.Tensor) -> torch.Tensor:
            patches = tokens[:, -grid[0] * grid[1] :]  # drop the class (and any register) tokens
            return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)

        hidden = [out.hidden_states[i] for i in self.layers]
        features = [to_map(h).unflatten(0, (batch, views)) for h in hidden]
        output = TeacherOutput(depth=depth.unflatten(0, (batch, views)), kind=self.kind, features=features)
        return ForwardResult(output, activation=hidden[-1], to_map=to_map)
