"""Training losses: ground-truth supervision, the distillation losses of the four source papers, self-supervision.

Each loss is a plain function of tensors (or, with parameters, a small nn.Module), documented
with its paper and equation; `build_losses` turns a config mapping into a weighted `LossSet`.
"""

from surround_depth_ros.losses.cross_interaction import cross_interaction_kd_loss, cross_interaction_targets
from surround_depth_ros.losses.distribution import depth_distribution_kd_loss, log_spaced_centres
from surround_depth_ros.losses.radar_kd import PixelwiseFeatureKD, inter_depth_kd_loss, pairwise_kd_loss
from surround_depth_ros.losses.registry import LossConfig, LossInputs, LossSet, build_losses
from surround_depth_ros.losses.saliency import grad_cam, mean_depth_target, saliency_kd_loss
from surround_depth_ros.losses.self_supervised import curvature_consistency_loss, surround_photometric_loss
from surround_depth_ros.losses.supervised import affine_invariant_loss, bin_centre_loss, masked_l1_loss, silog_loss
from surround_depth_ros.losses.view_relational import find_view_overlap, view_relational_kd_loss

__all__ = [
    "LossConfig",
    "LossInputs",
    "LossSet",
    "PixelwiseFeatureKD",
    "affine_invariant_loss",
    "bin_centre_loss",
    "build_losses",
    "cross_interaction_kd_loss",
    "cross_interaction_targets",
    "curvature_consistency_loss",
    "depth_distribution_kd_loss",
    "find_view_overlap",
    "grad_cam",
    "inter_depth_kd_loss",
    "log_spaced_centres",
    "masked_l1_loss",
    "mean_depth_target",
    "pairwise_kd_loss",
    "saliency_kd_loss",
    "silog_loss",
    "surround_photometric_loss",
    "view_relational_kd_loss",
]
