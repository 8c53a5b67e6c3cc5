"""Making any valid ONNX model ready for onnxruntime's quantizers, whoever exported it.

- nodes without a name get one (`OpType_k`): exclusions, rankings and reports address nodes by name;
- an opset older than 13 is upgraded with onnx's version converter (per-channel QDQ needs 13);
- weights made by `Constant` nodes become initializers, and constant sub-graphs (`ConstantOfShape`, ...) are
  folded by onnxslim, so the quantizers see weights where they look for them;
- initializers listed among the graph inputs (old exporters) stop being inputs;
- onnxruntime's own pre-processing (`quant_pre_process`: shape inference and graph optimization) runs last.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from dlkit.core import dependencies as _deps
from dlkit.errors import InvalidInputError
from dlkit.core.sessions import all_nodes

MIN_OPSET = 13


def load_onnx(path: str | os.PathLike) -> tuple[Any, list[Path]]:
    """Loads and checks an ONNX file, with one-line errors for what is not one.

    Returns:
        The ModelProto (external weights loaded) and the files beside it that held those weights.
    """
    onnx = _deps.require("onnx", "dlkit quantize")
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"model '{path}' does not exist; give an .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # DecodeError and friends
        raise InvalidInputError(f"'{path}' is not an ONNX model ({type(err).__name__}); give an .onnx file") from err
    data_files = external_files(model, path)
    for data_file in data_files:
        if not data_file.is_file():
            raise InvalidInputError(f"model '{path}' keeps its weights in '{data_file}', which is missing; keep that "
                                    "file beside the .onnx file")
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as err:
        raise InvalidInputError(f"the external weights of '{path}' cannot be read ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''}); re-save the model") from err
    if not model.graph.node:
        raise InvalidInputError(f"'{path}' is not an ONNX model (it has no graph); give an .onnx file")
    try:
        _read_text(model)
    except UnicodeError as err:  # protobuf decodes a proto2 string when it is read, not when it is parsed
        raise InvalidInputError(f"'{path}' is a damaged ONNX file: a name or metadata entry is not UTF-8 text "
                                f"({err.reason}); re-save or re-export the model") from err
    try:
        onnx.checker.check_model(model)
    except Exception as err:
        raise InvalidInputError(f"'{path}' fails onnx.checker: {str(err).splitlines()[0]}; fix or re-export it") from err
    return model, data_files


def _read_text(model: Any) -> None:
    """Reads every text field the quantizers will read (names, types, domains, metadata), in sub-graphs too.

    Raises:
        UnicodeDecodeError: one is not UTF-8 (protobuf hands proto2 strings that are not over as bytes).
    """
    from dlkit.core.sessions import all_nodes

    graph = model.graph
    texts = [model.producer_name, model.producer_version, model.domain, model.doc_string,
             *(t for p in model.metadata_props for t in (p.key, p.value)), *(o.domain for o in model.opset_import),
             *(v.name for v in (*graph.input, *graph.output, *graph.value_info)), *(t.name for t in graph.initializer)]
    for node in all_nodes(graph):
        texts += [node.name, node.op_type, node.domain, *node.input, *node.output, *(a.name for a in node.attribute)]
    for text in texts:
        if not isinstance(text, str):
            text.decode("utf-8")  # raises for the bytes protobuf could not decode
        elif not text.isascii():
            text.encode("utf-8")


def external_files(model: Any, path: Path) -> list[Path]:
    """The files beside `path` that hold the model's external tensors (onnx's `save_as_external_data`)."""
    from onnx import TensorProto

    names: list[str] = []
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if location and location not in names:
                names.append(location)
    return [Path(path).parent / name for name in names]


def prepare(model: Any, *, channels_last: bool = False, static: bool = False) -> tuple[Any, list[str], list[str]]:
    """Returns the model ready to quantize, one line per change made, and the nodes to keep in float.

    Args:
        model: the ONNX ModelProto (not changed).
        channels_last: also lay out convolutional models for onnxruntime's int8 (NHWC) kernels, keeping a
            first convolution with few input channels in float (`int8_layout.float_stem`).
        static: the model is for static int8: a small classifier head stays float (`int8_layout.float_head`).
    """
    onnx = _deps.require("onnx", "dlkit quantize")
    steps: list[str] = []
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    model = copy
    named = name_nodes(model)
    if named:
        steps.append(f"{named} unnamed node(s) named after their op type")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset < MIN_OPSET:
        from onnx import version_converter

        model = version_converter.convert_version(model, MIN_OPSET)
        steps.append(f"upgraded opset {opset} -> {MIN_OPSET} (IR version {model.ir_version})")
    moved = _constants_to_initializers(model)
    if moved:
        steps.append(f"{moved} Constant node(s) turned into initializers")
    dropped = _initializers_out_of_inputs(model)
    if dropped:
        steps.append(f"{dropped} initializer(s) removed from the graph inputs")
    if moved or any(n.op_type == "ConstantOfShape" for n in model.graph.node):
        onnxslim = _deps.require("onnxslim", "dlkit quantize")
        before = len(model.graph.node)
        model = onnxslim.slim(model)
        steps.append(f"folded constant sub-graphs: {before} -> {len(model.graph.node)} nodes")
    keep_float: list[str] = []
    if channels_last:
        from dlkit.quantization.int8_layout import average_pools_as_convolutions, channels_last_for_int8, float_stem

        keep_float, stem_steps = float_stem(model)
        steps += stem_steps + channels_last_for_int8(model, keep_float)
        steps += average_pools_as_convolutions(model, keep_float)
    model = _ort_preprocess(onnx, model, steps)
    name_nodes(model)  # onnxruntime's fusions may leave new nodes unnamed
    if static:  # on the pre-processed graph: the names the quantizer will see
        from dlkit.quantization.int8_layout import float_head, float_outputs

        head, head_steps = float_head(model)
        keep_float += head
        steps += head_steps
        final, final_steps = float_outputs(model)
        steps += [step for name, step in zip(final, final_steps) if name not in keep_float]
        keep_float += [name for name in final if name not in keep_float]
    return model, steps, keep_float


def name_nodes(model: Any) -> int:
    """Names every unnamed node, in sub-graphs too, `OpType_k` with k unused; returns how many were named."""
    nodes = list(all_nodes(model.graph))
    taken = {n.name for n in nodes if n.name}
    named = 0
    for k, node in enumerate(nodes):
        if node.name:
            continue
        name, extra = f"{node.op_type}_{k}", 0
        while name in taken:
            extra += 1
            name = f"{node.op_type}_{k}_{extra}"
        node.name = name
        taken.add(name)
        named += 1
    return named


def _constants_to_initializers(model: Any) -> int:
    from onnx import numpy_helper

    graph = model.graph
    moved = 0
    for node in list(graph.node):
        if node.op_type != "Constant" or len(node.attribute) != 1 or node.attribute[0].name != "value":
            continue
        tensor = numpy_helper.to_array(node.attribute[0].t)
        graph.initializer.append(numpy_helper.from_array(tensor, node.output[0]))
        graph.node.remove(node)
        moved += 1
    return moved


def _initializers_out_of_inputs(model: Any) -> int:
    graph = model.graph
    names = {t.name for t in graph.initializer}
    keep = [i for i in graph.input if i.name not in names]
    dropped = len(graph.input) - len(keep)
    if dropped:
        del graph.input[:]
        graph.input.extend(keep)
    return dropped


def _ort_preprocess(onnx: Any, model: Any, steps: list[str]) -> Any:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(model, str(out))
            steps.append("onnxruntime pre-processing: symbolic shape inference and graph optimization")
        except Exception as err:  # symbolic shape inference gives up on some graphs; the rest still helps
            quant_pre_process(model, str(out), skip_symbolic_shape=True)
            steps.append(f"onnxruntime pre-processing without symbolic shape inference ({type(err).__name__})")
        return onnx.load(str(out))
