"""onnxruntime's quantizers and onnxconverter-common's fp16 converter behind one call, and the node ranking
the accuracy bound uses (onnxruntime's `qdq_loss_debug`: per-tensor signal-to-quantization-noise ratio)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from dlkit.core import dependencies as _deps
from dlkit.core.datasources import DataSource
from dlkit.core.sessions import all_nodes
from dlkit.errors import InvalidInputError, QuantizationError
from dlkit.quantization._onnxruntime_compat import HISTOGRAM_METHODS, histogram_batch, quiet
from dlkit_runtime.model import ort_message

_CALIB_BATCH = 32
COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "GRU", "LSTM", "RNN", "Attention"}  # reported when float


@dataclass(frozen=True)
class SensitiveNode:
    name: str
    op_type: str
    sqnr_db: float


class Quantizer:
    """Quantizes one prepared model again and again with different nodes kept in float."""

    def __init__(self, model: Any, mode: str, settings: Mapping[str, Any], calibration: DataSource | None,
                 calibration_stop: int, progress: Callable[[int, int], None] | None,
                 float_inputs: Sequence[str] = ()):
        self.model, self.mode, self.settings = model, mode, dict(settings)
        self.calibration, self.calibration_stop, self.progress = calibration, calibration_stop, progress
        self.float_inputs = tuple(float_inputs)  # float nodes (a final Softmax) that read their inputs unquantized

    def run(self, exclude_nodes: Sequence[str] = (), exclude_op_types: Sequence[str] = ()) -> Any:
        """The quantized ModelProto."""
        try:
            if self.mode == "fp16":
                return self._fp16(exclude_nodes, exclude_op_types)
            return unquantize_inputs(self._int8(exclude_nodes, exclude_op_types), self.float_inputs)
        except QuantizationError:
            raise
        except Exception as err:
            if type(err).__name__ == "InvalidArgument" and self.calibration is not None:  # onnxruntime's verdict
                raise InvalidInputError(f"the calibration data '{self.calibration.path}' does not run through the "
                                        f"model ({ort_message(err)}); give data the model accepts") from err
            raise QuantizationError(
                f"onnxruntime's {self.mode} quantizer failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}) "
                f"after pre-processing; try {self._alternatives()}"
            ) from err

    def _alternatives(self) -> str:
        """What to try when the quantizer failed. Never dynamic int8 for a convolutional model: onnxruntime's
        ConvInteger runs 5-10x slower than its static QDQ convolutions."""
        tries = ["--exclude-op-type for the failing op"]
        if self.mode == "dynamic":
            tries.insert(0, "--mode static with --calibration data")
        elif any(n.op_type in ("Conv", "ConvTranspose") for n in self.model.graph.node):
            if self.settings.get("method", "minmax") != "minmax":
                tries.insert(0, "--method minmax")
            tries.append("--mode fp16")
        elif self.mode == "static":
            tries.insert(0, "--mode dynamic")
        return ", ".join(tries[:-1]) + " or " + tries[-1] if len(tries) > 1 else tries[0]

    def _int8(self, exclude_nodes, exclude_op_types) -> Any:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
        s = self.settings
        op_types = _op_types(self.model, exclude_op_types)
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
            onnx.save(self.model, src)
            if self.mode == "dynamic":
                quantize_dynamic(src, dst, per_channel=s["per_channel"], reduce_range=s["reduce_range"],
                                 weight_type=types[s["weight_type"]], nodes_to_exclude=list(exclude_nodes),
                                 op_types_to_quantize=op_types,
                                 extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True})
            else:
                with quiet():  # the histogram calibrators print to stdout
                    self._static(src, dst, types, exclude_nodes, op_types)
            return onnx.load(str(dst))

    def _static(self, src, dst, types, exclude_nodes, op_types) -> None:
        from onnxruntime.quantization import QuantFormat, quantize_static

        s = self.settings
        quantize_static(src, dst, self._reader(), quant_format=QuantFormat.QDQ, per_channel=s["per_channel"],
                        reduce_range=s["reduce_range"], activation_type=types[s["activation_type"]],
                        weight_type=types[s["weight_type"]], nodes_to_exclude=list(exclude_nodes),
                        op_types_to_quantize=op_types, calibrate_method=_method(s["method"]),
                        extra_options={"ActivationSymmetric": s["symmetric"], "WeightSymmetric": True,
                                       "CalibTensorRangeSymmetric": s["symmetric"]},
                        calibration_cache_path=None)

    def _reader(self):
        from onnxruntime.quantization import CalibrationDataReader

        from dlkit.core import sessions

        source, stop, progress = self.calibration, self.calibration_stop, self.progress
        fixed = sessions.fixed_batch(sessions.graph_inputs(self.model))  # a fixed batch axis: batches of its size
        # the histogram methods need batches of one size (see _onnxruntime_compat); a fixed batch axis has one (its
        # short last batch padded by repeating a sample: counted twice in the histograms, the only way it runs)
        size = histogram_batch(stop, _CALIB_BATCH) if self.settings.get("method") in HISTOGRAM_METHODS \
            else _CALIB_BATCH

        class Reader(CalibrationDataReader):
            def __init__(self):
                self._batches = source.batches(fixed or size, 0, stop)
                if fixed:
                    self._batches = sessions.fixed_chunks(self._batches, fixed)
                self._done = 0

            def get_next(self):
                batch = next(self._batches, None)
                if batch is not None:
                    self._done = min(stop, self._done + len(next(iter(batch.values()))))
                    if progress is not None:
                        progress(self._done, stop)
                return batch

            def rewind(self):
                self.__init__()

        return Reader()

    def _fp16(self, exclude_nodes, exclude_op_types) -> Any:
        _deps.require("onnxconverter_common", "dlkit quantize --mode fp16")
        from onnxconverter_common import float16

        return float16.convert_float_to_float16(
            self.model, keep_io_types=True, node_block_list=list(exclude_nodes) or None,
            op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + list(exclude_op_types),
        )


def unquantize_inputs(model: Any, names: Sequence[str]) -> Any:
    """Drops the QuantizeLinear -> DequantizeLinear pair in front of each named float node when nothing else reads
    it: a final Softmax kept in float then reads the logits as its producer (an int8 Gemm or MatMul with a float
    output) computed them, without another 8-bit rounding. Changes `model` in place and returns it."""
    if not names:
        return model
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    drop = []
    for node in [n for n in graph.node if n.name in names]:
        for k, name in enumerate(node.input):
            dq = producers.get(name)
            q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear" or readers.get(dq.output[0]) != 1 or \
                    readers.get(q.output[0]) != 1 or name in outputs:
                continue
            node.input[k] = q.input[0]
            drop += [dq, q]
    for node in drop:
        graph.node.remove(node)
    used = {name for n in all_nodes(graph) for name in n.input}
    orphans = {name for n in drop for name in n.input[1:]} - used  # their scales and zero points
    keep = [t for t in graph.initializer if t.name not in orphans]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    listed = [i for i in graph.input if i.name not in orphans]
    del graph.input[:]
    graph.input.extend(listed)
    return model


def _op_types(model, exclude_op_types) -> list[str] | None:
    if not exclude_op_types:
        return None
    ops = {n.op_type for n in model.graph.node}
    return sorted(ops - set(exclude_op_types))


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def count_quantized(model: Any, mode: str) -> int:
    """Compute nodes that run quantized, in sub-graphs (Loop, If, Scan bodies) too: fed by DequantizeLinear
    (QDQ), integer kernels, or fp16."""
    nodes = list(all_nodes(model.graph))
    if mode == "fp16":
        return sum(1 for n in nodes if n.op_type not in ("Cast",))
    dq = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(1 for n in nodes if _is_int8(n, dq))


def float_compute_nodes(model: Any, mode: str) -> list[str]:
    """Names of compute nodes (Conv, MatMul, Gemm, GRU, ...) left in float, in sub-graphs too."""
    if mode == "fp16":
        return []
    nodes = list(all_nodes(model.graph))
    dq = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name or n.op_type for n in nodes if n.op_type in COMPUTE_OPS and not _is_int8(n, dq)]


def _is_int8(node, dq_outputs) -> bool:
    """Integer kernels, or a QDQ-fed op that onnxruntime fuses into an int8 kernel (a GRU fed by DQ stays float)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    if node.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
        return False
    if node.op_type.endswith("Integer") or node.op_type.startswith(("QLinear", "DynamicQuantize")):
        return True
    if node.op_type not in QDQRegistry and node.op_type not in QLinearOpsRegistry:
        return False
    if node.op_type in _WEIGHTED:  # fused only when both the data and the weights come dequantized
        return len(node.input) > 1 and node.input[0] in dq_outputs and node.input[1] in dq_outputs
    return any(i in dq_outputs for i in node.input)


_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def rank_sensitive_nodes(float_model: Any, qdq_model: Any, feeds: Mapping[str, np.ndarray],
                         already: Sequence[str]) -> list[SensitiveNode]:
    """Quantized nodes, most sensitive first.

    A node's score is the lowest signal-to-quantization-noise ratio (dB) of its quantized inputs, each measured
    as onnxruntime's `qdq_loss_debug` does (`compute_signal_to_quantization_noice_ratio`): the float tensor
    against its quantize-dequantize round trip, activations on real samples of the float model and weights as
    stored. Lower means more of the signal is lost in that node's int8 inputs.
    """
    from onnx import helper, numpy_helper

    from dlkit.core.sessions import run

    inits = {t.name: numpy_helper.to_array(t) for t in qdq_model.graph.initializer}
    float_inits = {t.name: numpy_helper.to_array(t) for t in float_model.graph.initializer}
    producers = {o: n for n in qdq_model.graph.node for o in n.output}
    activations = sorted({n.input[0] for n in qdq_model.graph.node
                          if n.op_type == "QuantizeLinear" and n.input[0] not in inits})
    probe = type(float_model)()
    probe.CopyFrom(float_model)
    known = {o.name for o in probe.graph.output}
    produced = {o for n in probe.graph.node for o in n.output} | {i.name for i in probe.graph.input}
    for name in activations:
        if name in produced and name not in known and name not in float_inits:
            probe.graph.output.append(helper.make_tensor_value_info(name, 1, None))
    values = run(probe, {k: v[:64] for k, v in feeds.items()}, "the check samples")
    values.update(float_inits)

    def sqnr(dq_node) -> float | None:
        """SQNR of the tensor behind one DequantizeLinear input of a node."""
        source = producers.get(dq_node.input[0])
        if source is not None and source.op_type == "QuantizeLinear":  # activation: T -> Q -> DQ
            tensor, scale, zero = (values.get(source.input[0]), inits.get(source.input[1]),
                                   inits.get(source.input[2]) if len(source.input) > 2 else None)
            if tensor is None or scale is None:
                return None
            zero = np.zeros((), np.int8) if zero is None else zero
            info = np.iinfo(zero.dtype)
            roundtrip = (np.clip(np.round(tensor / scale) + zero, info.min, info.max) - zero) * scale
        else:  # weight: int8 initializer -> DQ; the float weight keeps the name DQ's output was derived from
            stored, scale = inits.get(dq_node.input[0]), inits.get(dq_node.input[1])
            base = dq_node.output[0].removesuffix("_DequantizeLinear_Output")
            tensor = float_inits.get(base)
            if stored is None or scale is None or tensor is None or tensor.shape != stored.shape:
                return None
            zero = inits.get(dq_node.input[2]) if len(dq_node.input) > 2 else np.zeros_like(scale, np.int8)
            axis = next((a.i for a in dq_node.attribute if a.name == "axis"), 1)
            shape = [1] * stored.ndim
            if scale.ndim == 1 and stored.ndim:
                shape[axis] = -1
            roundtrip = (stored.astype(np.float64) - zero.reshape(shape)) * scale.reshape(shape)
        noise = float(np.sum((tensor.astype(np.float64) - roundtrip) ** 2))
        signal = float(np.sum(tensor.astype(np.float64) ** 2))
        return 10 * np.log10(signal / noise) if noise > 0 else float("inf")

    dq = {o for n in qdq_model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    ranked = []
    for node in qdq_model.graph.node:
        if not _is_int8(node, dq) or node.name in already:
            continue
        scores = [sqnr(producers[i]) for i in node.input if i in dq]
        scores = [x for x in scores if x is not None]
        if scores:
            ranked.append(SensitiveNode(node.name, node.op_type, float(min(scores))))
    return sorted(ranked, key=lambda n: n.sqnr_db)


def tail_nodes(prepared: Any, candidate: Any, feeds: Mapping[str, np.ndarray], excluded: Sequence[str], mode: str,
               count: int) -> list[SensitiveNode]:
    """The last `count` quantized nodes of the graph, most sensitive first (static: by SQNR; dynamic, which has no QDQ
    pairs to rank: the last compute nodes, from the output back)."""
    if mode == "static":
        order = {n.name: i for i, n in enumerate(candidate.graph.node)}
        ranked = rank_sensitive_nodes(prepared, candidate, feeds, excluded)
        tail = sorted(ranked, key=lambda n: order.get(n.name, 0))[-count:]
        return [n for n in ranked if n in tail]
    compute = [n for n in prepared.graph.node if n.op_type in COMPUTE_OPS and n.name not in excluded]
    return [SensitiveNode(n.name, n.op_type, float("nan")) for n in compute[::-1][:count]]
