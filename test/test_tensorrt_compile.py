"""`compile_arguments` against `torch_tensorrt.dynamo.compile` of each Torch-TensorRT release: fp16 builds are fp16.

The releases' signatures are written out below from their source (pytorch/TensorRT,
py/torch_tensorrt/dynamo/_compiler.py at tags v2.4.0 ... v2.11.0 and main), with the parameters
that do not bear on precision left out; `**kwargs` is in every one. What each release does with
them (`Release.engine_precision`) is read from the same source:
- 2.4, 2.5: no `use_explicit_typing`; TensorRT's weak typing, where `enabled_precisions` (default
  {fp32}) lists the kernel precisions TensorRT may choose.
- 2.6-2.9: `use_explicit_typing` (default False); True is strong typing (the graph's dtypes decide),
  and then anything but {fp32} in `enabled_precisions` raises AssertionError.
- 2.10, 2.11: the same with `use_explicit_typing` default True.
- main (after 2.11): neither parameter; strong typing always; unknown keywords land in `**kwargs`,
  ignored.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from surround_depth_ros.inference.tensorrt_backend import compile_arguments

F32 = frozenset({torch.float32})


def compile_2_4(
    exported_program: Any,
    inputs: tuple,
    *,
    device: Any = None,
    disable_tf32: bool = False,
    enabled_precisions: Any = F32,
    min_block_size: int = 5,
    use_python_runtime: bool = False,
    **kwargs: Any,
) -> None: ...


def compile_2_5(
    exported_program: Any,
    inputs: Any = None,
    *,
    arg_inputs: Any = None,
    kwarg_inputs: Any = None,
    device: Any = None,
    enabled_precisions: Any = F32,
    min_block_size: int = 5,
    cache_built_engines: bool = False,
    **kwargs: Any,
) -> None: ...


def compile_2_6_to_2_9(
    exported_program: Any,
    inputs: Any = None,
    *,
    arg_inputs: Any = None,
    kwarg_inputs: Any = None,
    device: Any = None,
    enabled_precisions: Any = F32,
    min_block_size: int = 5,
    use_explicit_typing: bool = False,
    use_fp32_acc: bool = False,
    **kwargs: Any,
) -> None: ...


def compile_2_10_2_11(
    exported_program: Any,
    inputs: Any = None,
    *,
    arg_inputs: Any = None,
    kwarg_inputs: Any = None,
    device: Any = None,
    enabled_precisions: Any = F32,
    min_block_size: int = 5,
    use_explicit_typing: bool = True,
    use_fp32_acc: bool = False,
    enable_autocast: bool = False,
    autocast_low_precision_type: Any = None,
    **kwargs: Any,
) -> None: ...


def compile_main(
    exported_program: Any,
    inputs: Any = None,
    *,
    arg_inputs: Any = None,
    kwarg_inputs: Any = None,
    device: Any = None,
    min_block_size: int = 5,
    use_fp32_acc: bool = False,
    enable_autocast: bool = False,
    autocast_low_precision_type: Any = None,
    **kwargs: Any,
) -> None: ...


@dataclass(frozen=True)
class Release:
    name: str
    compile: Callable[..., None]

    def engine_precision(self, graph: str, arguments: dict[str, Any]) -> str:
        """The precision of the engine this release builds from a `graph` ("fp16": model and inputs cast to half)."""
        signature = inspect.signature(self.compile)
        bound = signature.bind("exported program", ["example inputs"], **arguments)
        bound.apply_defaults()
        values = bound.arguments
        assert not values["kwargs"], f"{self.name} would ignore {sorted(values['kwargs'])} silently"
        strong = values.get("use_explicit_typing", "enabled_precisions" not in signature.parameters)
        if strong:
            if "enabled_precisions" in values and set(values["enabled_precisions"]) != F32:
                raise AssertionError("enabled_precisions should not be used when use_explicit_typing=True")
            return graph
        return "fp16" if graph == "fp16" and torch.float16 in values["enabled_precisions"] else "fp32"


RELEASES = [
    Release("2.4", compile_2_4),
    Release("2.5", compile_2_5),
    Release("2.6-2.9", compile_2_6_to_2_9),
    Release("2.10-2.11", compile_2_10_2_11),
    Release("main", compile_main),
]


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.name)
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_every_release_builds_the_asked_precision(release, precision):
    arguments = compile_arguments(inspect.signature(release.compile).parameters, precision)
    assert arguments["min_block_size"] == 1
    assert release.engine_precision(precision, arguments) == precision


def test_the_rule_before_built_fp32_on_2_6_to_2_9():
    """`enabled_precisions` only without `use_explicit_typing`: 2.6-2.9 got neither, so weak typing with fp32 only."""
    before = {"min_block_size": 1}
    assert Release("2.6-2.9", compile_2_6_to_2_9).engine_precision("fp16", before) == "fp32"


def test_the_release_model_is_faithful_to_the_documented_pitfalls():
    with pytest.raises(AssertionError, match="enabled_precisions should not be used"):
        RELEASES[3].engine_precision("fp16", {"enabled_precisions": {torch.float16}})
    with pytest.raises(AssertionError, match="would ignore"):
        RELEASES[4].engine_precision("fp16", {"enabled_precisions": {torch.float16}})
    assert RELEASES[3].engine_precision("fp16", {}) == "fp16"  # strong typing by default from 2.10
