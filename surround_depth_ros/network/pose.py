"""Semi-SMD's extrinsic-anchored pose: one pose network for a reference camera, reaching every camera through the rig.

Where the data has no ego poses (a bag without odometry), the photometric loss still needs the
car's motion. A small network looks at the reference camera's image now and at a neighbouring
time and predicts that camera's motion as a twist; the twist divided by the time between the
two captures is a velocity, and under constant velocity over the short window the base pose at
any capture time t is T_base_cam_ref . exp(v * t) . inv(T_base_cam_ref). Every camera and every
capture time (the rig's cameras fire staggered) gets its pose from that one velocity, and
the extrinsics, which are metric, carry the scale.
"""

from __future__ import annotations

import torch
from torch import nn

from surround_depth_ros.network.encoders import ConvNormAct
from surround_depth_ros.network.student import ImageNormalisation


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def se3_exp(twist: torch.Tensor) -> torch.Tensor:
    """(..., 6) twists (rotation vector w, translational part u) -> (..., 4, 4) rigid transforms exp([w, u]).

    R = I + A W + B W^2, t = (I + B W + C W^2) u with W = [w]x, A = sin(th)/th, B = (1 - cos th)/th^2,
    C = (th - sin th)/th^3; Taylor series below 1e-3 rad keep it finite and differentiable at 0.
    """
    w, u = twist[..., :3], twist[..., 3:]
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]
    theta = theta2.clamp(min=1e-12).sqrt()
    small = theta2 < 1e-6
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp(min=1e-12))
    c = torch.where(small, 1.0 / 6 - theta2 / 120, (theta - torch.sin(theta)) / (theta2 * theta).clamp(min=1e-18))
    W = skew(w)
    W2 = W @ W
    eye = torch.eye(3, dtype=twist.dtype, device=twist.device).expand_as(W)
    R = eye + a * W + b * W2
    t = ((eye + b * W + c * W2) @ u[..., None])[..., 0]
    out = torch.zeros((*twist.shape[:-1], 4, 4), dtype=twist.dtype, device=twist.device)
    out[..., :3, :3] = R
    out[..., :3, 3] = t
    out[..., 3, 3] = 1
    return out


class PoseNet(nn.Module):
    """Two RGB images (uint8 or floats in [0, 1]; normalised inside) -> the twist of the camera between captures.

    The twist is that of T_cam(first) <- cam(second), i.e. the second camera pose in the first one's
    frame. Outputs are scaled by 0.01 so that training starts from (almost) no motion (monodepth2).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.normalise = ImageNormalisation()
        channels = [6, width, 2 * width, 4 * width, 8 * width, 8 * width]
        self.encoder = nn.Sequential(
            *(ConvNormAct(cin, cout, 3, 2, act=nn.ReLU) for cin, cout in zip(channels, channels[1:], strict=False))
        )
        self.head = nn.Conv2d(channels[-1], 6, 1)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """first, second (B, 3, H, W) -> (B, 6) twists."""
        x = self.encoder(torch.cat([self.normalise(first), self.normalise(second)], dim=1))
        return 0.01 * self.head(x).mean(dim=(2, 3))


def extrinsic_anchored_poses(
    net: PoseNet,
    reference_now: torch.Tensor,
    reference_adjacent: torch.Tensor,
    times: torch.Tensor,
    T_base_cam_reference: torch.Tensor,
) -> torch.Tensor:
    """Base poses T_world_base (B, 1 + S, N, 4, 4) at every capture, world = base at the reference capture now.

    reference_now (B, 3, H, W) and reference_adjacent (B, S, 3, H, W): the reference camera's
    images (uint8 or floats in [0, 1]); times (B, 1 + S, N) seconds after the reference camera's capture now (row 0
    the current frame set, its reference entry 0); T_base_cam_reference (B, 4, 4). The velocity is the
    mean over neighbours of twist / time between the reference captures.
    """
    batch, sets = reference_adjacent.shape[:2]
    dt = times[:, 1:, 0] - times[:, :1, 0]  # (B, S) time from now to each neighbour's reference capture
    if (dt.abs() < 1e-6).any():
        raise ValueError("a neighbour was captured at the same time as the current frame set: no motion to learn")
    twists = net(reference_now.repeat_interleave(sets, dim=0), reference_adjacent.flatten(0, 1))
    twists = twists.unflatten(0, (batch, sets))
    velocity = (twists / dt[..., None]).mean(dim=1)  # (B, 6) per second, in the reference camera's frame
    camera_motion = se3_exp(velocity[:, None, None, :] * times[..., None])  # (B, 1 + S, N, 4, 4)
    E = T_base_cam_reference[:, None, None]
    return E @ camera_motion @ torch.linalg.inv(E)
