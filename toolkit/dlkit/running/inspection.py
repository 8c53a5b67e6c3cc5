"""`dlkit.inspect`: what an ONNX file holds: tensors, opsets, ops, parameters, metadata, quantization, placement."""

from __future__ import annotations

import collections
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from dlkit.core import catalogue
from dlkit.core.sessions import all_nodes
from dlkit.errors import InvalidInputError

_QDQ = {"QuantizeLinear", "DequantizeLinear"}
_QOPERATOR = {"QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QGemm", "QLinearConcat",
              "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu"}
_DYNAMIC = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM"}


@dataclass(frozen=True)
class InspectResult:
    """What `dlkit.inspect` found in an ONNX file.

    Attributes:
        path: the file.
        size_bytes: its size on disk.
        ir_version: the ONNX IR version.
        opsets: opset version per domain ("" is the default domain).
        producer: the program that wrote it, e.g. "tf2onnx 1.17.0".
        inputs, outputs: `TensorInfo`s as onnxruntime reads them.
        op_counts: nodes per op type, most frequent first.
        parameters: elements in the initializers (weights).
        parameter_bytes: their size in bytes, by dtype.
        metadata: `metadata_props`, dlkit's keys decoded as `dlkit_runtime.Model.metadata` does.
        quantization: None, or how it is quantized: "int8 QDQ", "int8 QOperator", "int8 dynamic", "fp16".
        providers: the execution providers the session really got.
        placement: per provider, the op types it ran (with counts) in one profiled run on random inputs.
        memory: its run-time memory (`dlkit.core.memory.RunMemory.to_dict()`: peak resident memory of loading it
            and one batch-1 inference in a fresh process here), judged against `target`'s budget when given.
    """

    path: str
    size_bytes: int
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: tuple
    outputs: tuple
    op_counts: dict[str, int]
    parameters: int
    parameter_bytes: dict[str, int]
    metadata: dict[str, Any]
    quantization: str | None
    providers: tuple[str, ...]
    placement: dict[str, dict[str, int]]
    memory: dict | None = None

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["inputs"] = [t.to_dict() for t in self.inputs]
        out["outputs"] = [t.to_dict() for t in self.outputs]
        out["providers"] = list(self.providers)
        return out


def inspect(model: str | os.PathLike, *, providers: str | Sequence[str] | None = None,
            placement: bool = True, memory: bool = True, target: str | None = None) -> InspectResult:
    """Describes an ONNX file and where its ops would run.

    Args:
        model: the `.onnx` file.
        providers: execution providers to place the ops on, as `dlkit_runtime.Model`. Defaults to None.
        placement: profile one run on random inputs to see which provider runs each op. Defaults to True.
        memory: measure the peak run-time memory (a fresh process loads it and runs one inference). Defaults to True.
        target: a device (`dlkit bundle --target`) whose threads it runs with and whose memory budget (the Pi
            Zero 2 W's 200 MB) `memory` is judged against. Defaults to None: one thread, no budget.

    Returns:
        An `InspectResult`.

    Raises:
        InvalidInputError: a missing or unreadable file, an unknown target.
        MissingDependencyError: the `onnx` package is not installed (`pip install 'dlkit[quantize]'`).

    Example:

    >>> result = dlkit.inspect("cnn.onnx")
    >>> result.op_counts
    {'Conv': 2, 'Relu': 3, ...}
    """
    from dlkit.core import dependencies as _deps
    from dlkit_runtime import Model
    from dlkit.core import metadata

    path = Path(model)
    if target is not None and target not in catalogue.DEVICES:
        raise InvalidInputError(f"target {target!r} is not one of {', '.join(catalogue.DEVICES)}")
    if not path.is_file():
        raise InvalidInputError(f"model '{path}' does not exist or is not a file; give an .onnx file")
    onnx = _deps.require("onnx", "dlkit inspect")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends
        raise InvalidInputError(f"'{path}' is not an ONNX model ({type(err).__name__}); give an .onnx file") from err
    nodes = list(all_nodes(proto.graph))
    counts = collections.Counter(n.op_type for n in nodes)
    params, by_dtype = 0, collections.Counter()
    for init in _all_initializers(proto.graph):
        numel = 1
        for d in init.dims:
            numel *= d
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
        except (KeyError, ValueError) as err:  # a damaged file: a type number ONNX does not define
            raise InvalidInputError(f"'{path}' is damaged: initializer '{init.name}' has data type {init.data_type}, "
                                    "which ONNX does not define; export or download the model again") from err
        params += numel
        by_dtype[str(dtype)] += numel * dtype.itemsize
    runtime = Model(path, providers=providers, threads=1)
    return InspectResult(
        path=str(path), size_bytes=path.stat().st_size, ir_version=int(proto.ir_version),
        opsets={o.domain: int(o.version) for o in proto.opset_import},
        producer=f"{proto.producer_name} {proto.producer_version}".strip(),
        inputs=runtime.inputs, outputs=runtime.outputs, op_counts=dict(counts.most_common()),
        parameters=int(params), parameter_bytes=dict(by_dtype),
        metadata=metadata.read(proto),
        quantization=_quantization(counts, by_dtype), providers=runtime.providers,
        placement=_placement(path, runtime) if placement else {},
        memory=_memory(path, runtime.inputs, target) if memory else None,
    )


def _memory(path: Path, inputs, target: str | None) -> dict:
    from dlkit.core.memory import run_memory

    spec = catalogue.DEVICES[target] if target else None
    threads = (spec.threads or os.cpu_count() or 1) if spec else 1
    return run_memory(path, inputs, threads=threads, budget_bytes=spec.memory_budget_bytes if spec else None).to_dict()


def _all_initializers(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _all_initializers(sub)


def _quantization(counts: collections.Counter, by_dtype: collections.Counter) -> str | None:
    if counts.keys() & _QOPERATOR:
        return "int8 QOperator"
    if counts.keys() & _DYNAMIC:
        return "int8 dynamic"
    if counts.keys() & _QDQ:
        return "int8 QDQ"
    floats = {k: v for k, v in by_dtype.items() if k.startswith("float")}
    if floats and max(floats, key=floats.get) == "float16":
        return "fp16"
    return None


def _placement(path: Path, runtime) -> dict[str, dict[str, int]]:
    """Profiles one run and counts, per provider, the op types onnxruntime gave it (after graph fusion)."""
    import onnxruntime as ort

    from dlkit_runtime.tensors import sample_inputs

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_profiling = True
    options.intra_op_num_threads = 1
    options.profile_file_prefix = os.path.join(tempfile.gettempdir(), f"dlkit_inspect_{os.getpid()}")
    session = ort.InferenceSession(str(path), sess_options=options, providers=runtime.session.get_providers())
    try:
        session.run(None, sample_inputs(runtime.inputs))
    except Exception:  # random inputs may be invalid for the graph (token ranges...): no placement then
        return {}
    finally:
        profile = Path(session.end_profiling())
    try:
        events = json.loads(profile.read_text(encoding="utf-8", errors="replace"))  # node names are not always UTF-8
    finally:
        profile.unlink(missing_ok=True)
    placed: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for event in events:
        args = event.get("args", {})
        if event.get("cat") == "Node" and "provider" in args and event.get("name", "").endswith("_kernel_time"):
            placed[args["provider"].replace("ExecutionProvider", "").lower()][args.get("op_name", "?")] += 1
    return {p: dict(c.most_common()) for p, c in placed.items()}
