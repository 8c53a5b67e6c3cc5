"""Candidates: the prepared model quantized, then quantized again each time a search keeps one more node in float,
every candidate measured against the float model."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from dlkit.core.datasources import DataSource
from dlkit.errors import QuantizationError
from dlkit.quantization.measurement import FloatReference, Measurement
from dlkit.quantization.quantizers import Quantizer, SensitiveNode, count_quantized
from dlkit.quantization.recipe import Recipe
from dlkit.quantization.results import KeptNode
from dlkit.quantization.sources import CheckSamples, Source


class Candidates:
    """One prepared model quantized again and again, each time with more nodes kept in float.

    Attributes:
        quantizer: the quantizer. reference: the float model's figures each candidate is measured against.
        excluded: the nodes kept in float (those asked for, the stem, then the searches'). exclude_op_types: the
        op types kept in float. kept: the nodes the searches kept in float, in order, with what each bought.
    """

    def __init__(self, quantizer: Quantizer, reference: FloatReference, excluded: list[str],
                 exclude_op_types: Sequence[str]):
        self.quantizer, self.reference = quantizer, reference
        self.excluded, self.exclude_op_types = excluded, exclude_op_types
        self.kept: list[KeptNode] = []

    @property
    def mode(self) -> str:
        return self.quantizer.mode

    def keep_in_float(self, node: SensitiveNode, *, with_accuracy: bool = True) -> Measurement:
        """Keeps `node` in float too, quantizes again and measures the new candidate."""
        self.excluded.append(node.name)
        candidate = self.quantizer.run(self.excluded, self.exclude_op_types)
        return self.reference.measure(candidate, with_accuracy=with_accuracy)


def quantize_first(source: Source, recipe: Recipe, calib: DataSource | None, check: CheckSamples,
                   evaluation: DataSource | None, *, exclude_nodes: Sequence[str], exclude_op_types: Sequence[str],
                   progress: Callable[[int, int], None] | None, device: Any, max_accuracy_drop: float | None,
                   max_output_error: float | None) -> tuple[Candidates, Measurement]:
    """Quantizes with the nodes asked for (and the graph's stem) kept in float, and measures that first candidate.

    Raises:
        QuantizationError: the quantizer failed, or quantized nothing. InvalidInputError: the float model or the
        candidate does not run on the check samples.
    """
    from dlkit.quantization.int8_layout import float_outputs

    # a final Softmax reads the logits in float
    final = float_outputs(recipe.prepared)[0] if recipe.mode == "static" else []
    quantizer = Quantizer(recipe.prepared, recipe.mode, recipe.settings, calib, check.calib_stop, progress,
                          float_inputs=final)
    excluded = list(exclude_nodes) + [name for name in recipe.stem if name not in exclude_nodes]
    candidate = quantizer.run(excluded, exclude_op_types)
    reference = FloatReference(recipe.prepared, check, evaluation, eval_batch=recipe.eval_batch, device=device,
                               max_accuracy_drop=max_accuracy_drop, max_output_error=max_output_error)
    if recipe.mode != "fp16" and count_quantized(candidate, recipe.mode) == 0:
        raise QuantizationError(f"nothing in '{source.path}' was quantized: no node onnxruntime's {recipe.mode} int8 "
                                "quantizer handles (Conv, MatMul, Gemm, ... with float32 weights) is left; check "
                                "--exclude-node/--exclude-op-type, or try --mode fp16")
    return Candidates(quantizer, reference, excluded, exclude_op_types), reference.measure(candidate)
