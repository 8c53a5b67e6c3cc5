"""The quantized model's metadata: the source's plus the quantization's (read with `dlkit.core.metadata`)."""

from __future__ import annotations

import json

from dlkit.core import metadata


def stamp_metadata(source, candidate, mode, settings, figures, target, eval_batch, payoff=None) -> None:
    """The source's metadata plus the quantization's; dlkit as producer; only the opset domains in use."""
    _keep_io_shapes(source, candidate)
    used = {n.domain for n in candidate.graph.node} | {""}
    keep = [o for o in candidate.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del candidate.opset_import[:]
    candidate.opset_import.extend(keep)
    props = {p.key: p.value for p in source.metadata_props if p.key != "dlkit.quantization"}
    props["dlkit.quantization"] = json.dumps(
        {"mode": mode, "settings": dict(settings), "parity_vs_float": [f.to_dict() for f in figures],
         "target": None if target is None else target.to_dict(), "eval_batch_size": eval_batch,
         "payoff": None if payoff is None else payoff.to_dict()})
    metadata.stamp(candidate, props)


def _keep_io_shapes(source, candidate) -> None:
    """The float model's input and output shapes, on the same tensors of the quantized one: the quantizer's symbolic
    shape inference writes expressions such as `floor(1.0*N)` for a batch axis that is plain `N`."""
    for ours, theirs in ((candidate.graph.input, source.graph.input), (candidate.graph.output, source.graph.output)):
        shapes = {v.name: v.type for v in theirs if v.type.HasField("tensor_type")}
        for value in ours:
            if value.name in shapes and value.type.tensor_type.elem_type == shapes[value.name].tensor_type.elem_type:
                value.type.CopyFrom(shapes[value.name])
