"""How far an exported or accelerated model may stray from PyTorch fp32, and the check itself.

Depth is compared relatively (|d - d_ref| / d_ref, a metre matters more at 2 m than at 60 m),
confidence absolutely. fp32 artifacts (ONNX, ExportedProgram) only reorder float arithmetic:
1e-4 relative. fp16 engines carry ~3 significant digits through ~60 layers: 2e-2 relative.
"""

from __future__ import annotations

import torch

TOLERANCES = {"fp32": {"depth": 1e-4, "confidence": 1e-3}, "fp16": {"depth": 2e-2, "confidence": 2e-2}}
TOLERANCES["bf16"] = {"depth": 5e-2, "confidence": 5e-2}  # 8-bit mantissa


def output_errors(reference: tuple[torch.Tensor, ...], outputs: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """Max relative depth error and max absolute confidence error against the reference."""
    ref_depth, ref_conf = reference[0].float().cpu(), reference[1].float().cpu()
    depth, conf = outputs[0].float().cpu(), outputs[1].float().cpu()
    return {
        "depth": float(((depth - ref_depth).abs() / ref_depth).max()),
        "confidence": float((conf - ref_conf).abs().max()),
    }


def within_tolerance(errors: dict[str, float], precision: str) -> bool:
    """True when every error is finite and within the precision's tolerance."""
    limits = TOLERANCES[precision]
    return all(errors[k] <= limits[k] for k in limits)  # NaN compares False
