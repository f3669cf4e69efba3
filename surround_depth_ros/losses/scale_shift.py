"""Per-image scale-and-shift normalisation: what makes a relative teacher comparable to a metric student.

A relative depth (or inverse depth) model is right only up to an unknown per-image scale s > 0 and
shift b. Mapping x -> (x - t(x)) / s(x) with a location t and spread s that move with the data
(median / mean absolute deviation, MiDaS' choice, robust to outliers; or mean / std) removes both exactly.
"""

from __future__ import annotations

import torch

from surround_depth_ros.evaluation.metrics import masked_median

NORMALISATIONS = ("median_mad", "mean_std")


def scale_shift_statistics(
    values: torch.Tensor, valid: torch.Tensor, method: str = "median_mad"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Location (M,) and spread (M,) of each row of `values` (M, P) over `valid`; spread >= 1e-6."""
    if method not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {method!r}")
    values = torch.where(valid, values, torch.zeros_like(values))
    count = valid.sum(dim=1).clamp(min=1)
    if method == "median_mad":
        location = torch.nan_to_num(masked_median(values, valid), nan=0.0)
        spread = torch.where(valid, (values - location[:, None]).abs(), torch.zeros_like(values)).sum(dim=1) / count
    else:
        location = values.sum(dim=1) / count
        spread = (
            torch.where(valid, (values - location[:, None]) ** 2, torch.zeros_like(values)).sum(dim=1) / count
        ).sqrt()
    return location, spread.clamp(min=1e-6)


def normalise_scale_shift(values: torch.Tensor, valid: torch.Tensor, method: str = "median_mad") -> torch.Tensor:
    """(M, ...) values normalised per row with its own statistics over `valid` (same shape); invalid entries 0."""
    flat, flat_valid = values.flatten(1), valid.expand_as(values).flatten(1)
    location, spread = scale_shift_statistics(flat, flat_valid, method)
    out = (flat - location[:, None]) / spread[:, None]
    return torch.where(flat_valid, out, torch.zeros_like(out)).reshape(values.shape)
