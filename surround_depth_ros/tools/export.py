"""Export a student to ONNX, ExportedProgram (.pt2) and Torch-TensorRT, verifying each against PyTorch fp32.

Every artifact is run on the same inputs as the PyTorch model and its largest relative depth
error and absolute confidence error are printed with the tolerance (surround_depth_ros.inference.verify);
the command exits non-zero when one is off. `--build-engine` only installs the Torch-TensorRT
engine into the engine cache (ahead of time, on the target GPU), so that the node starts fast.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from surround_depth_ros.inference.backend import BackendUnavailable
from surround_depth_ros.inference.cache import default_cache_dir
from surround_depth_ros.inference.verify import TOLERANCES, output_errors, within_tolerance
from surround_depth_ros.network.attention import ring_adjacency
from surround_depth_ros.network.checkpoint import load_checkpoint, weights_checksum
from surround_depth_ros.network.student import PRESETS, ExportableStudent, SurroundDepthStudent
from surround_depth_ros.tools.errors import UsageError

FORMATS = ("onnx", "pt2", "tensorrt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="student checkpoint (.pt) to export")
    source.add_argument("--preset", choices=sorted(PRESETS), help="export a freshly initialised preset")
    parser.add_argument("--output-dir", type=Path, default=Path("out/export"), help="where artifacts are written")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, help="default: onnx pt2, plus tensorrt with a GPU")
    parser.add_argument("--views", type=int, help="cameras per frame set (default: the checkpoint rig's, else 6)")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp16", help="Torch-TensorRT precision")
    parser.add_argument("--build-engine", action="store_true", help="only build the TensorRT engine into the cache")
    parser.add_argument("--cache-dir", type=Path, help="engine cache (default $SURROUND_DEPTH_CACHE or ~/.cache/...)")


def _load(args: argparse.Namespace) -> tuple[ExportableStudent, str, str]:
    """The exportable model, its weights checksum and a file stem."""
    if args.checkpoint is not None:
        model, info = load_checkpoint(args.checkpoint)
        n_views = args.views or (len(info.rig.cameras) if info.rig else 6)
        adjacency = info.adjacency if info.adjacency is not None else ring_adjacency(n_views)
        module = ExportableStudent(model, torch.as_tensor(adjacency), n_views, info.input_size)
        return module, info.checksum, args.checkpoint.stem
    torch.manual_seed(0)
    model = SurroundDepthStudent(PRESETS[args.preset]).eval()
    n_views = args.views or 6
    return ExportableStudent(model, ring_adjacency(n_views), n_views), weights_checksum(model.state_dict()), args.preset


def _report(name: str, reference: tuple, outputs: tuple, precision: str) -> bool:
    errors = output_errors(reference, outputs)
    ok = within_tolerance(errors, precision)
    limits = TOLERANCES[precision]
    print(
        f"{name:<9} max rel. depth error {errors['depth']:.2e} (tolerance {limits['depth']:.0e}), "
        f"max confidence error {errors['confidence']:.2e} (tolerance {limits['confidence']:.0e}): "
        + ("OK" if ok else "FAILED")
    )
    return ok


def export_onnx_artifact(module: ExportableStudent, inputs: tuple, path: Path) -> tuple:
    from surround_depth_ros.inference.onnx_backend import OnnxRuntimeBackend, export_onnx

    export_onnx(module, path, inputs)
    return OnnxRuntimeBackend(path).run(inputs)


def export_pt2_artifact(module: ExportableStudent, inputs: tuple, path: Path) -> tuple:
    torch.export.save(torch.export.export(module, inputs), str(path))
    with torch.no_grad():
        return torch.export.load(str(path)).module()(*inputs)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    module, checksum, stem = _load(args)
    cache_dir = args.cache_dir or default_cache_dir()
    inputs = module.example_inputs()
    if args.build_engine:
        from surround_depth_ros.inference.tensorrt_backend import TensorRTBackend

        try:
            backend = TensorRTBackend(module, inputs, checksum, cache_dir, "cuda", args.precision)
        except BackendUnavailable as error:
            raise UsageError(f"cannot build a TensorRT engine: {error}") from error
        with torch.no_grad():
            reference = module(*inputs)
        print(f"          engine {backend.path}")
        return 0 if _report("tensorrt", reference, backend.run(inputs), args.precision) else 1
    formats = args.formats or ["onnx", "pt2"] + ["tensorrt"] * torch.cuda.is_available()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        reference = module(*inputs)
    shape = "x".join(str(v) for v in inputs[0].shape[1:])
    print(f"exporting {stem} ({module.model.config.name}) for inputs {module.input_names}, images {shape}")
    ok = True
    for fmt in formats:
        if fmt == "onnx":
            path = args.output_dir / f"{stem}.onnx"
            ok &= _report("onnx", reference, export_onnx_artifact(module, inputs, path), "fp32")
        elif fmt == "pt2":
            path = args.output_dir / f"{stem}.pt2"
            ok &= _report("pt2", reference, export_pt2_artifact(module, inputs, path), "fp32")
        else:
            from surround_depth_ros.inference.tensorrt_backend import TensorRTBackend

            try:
                backend = TensorRTBackend(module, inputs, checksum, args.output_dir, "cuda", args.precision)
            except BackendUnavailable as error:
                print(f"tensorrt  skipped: {error}")
                ok = False
                continue
            ok &= _report("tensorrt", reference, backend.run(inputs), args.precision)
            path = backend.path
        print(f"          wrote {path}")
    return 0 if ok else 1
