"""The float model's metadata read, and the quantized model's stamped: the source's metadata plus the quantization's."""

from __future__ import annotations

import json
from typing import Any


def read_metadata(model) -> dict[str, Any]:
    """A model's metadata props, JSON values decoded, "dlkit." keys without the prefix."""
    meta = {}
    for prop in model.metadata_props:
        key = prop.key[len("dlkit."):] if prop.key.startswith("dlkit.") else prop.key
        try:
            meta[key] = json.loads(prop.value)
        except ValueError:
            meta[key] = prop.value
    return meta


def stamp_metadata(source, candidate, mode, settings, figures, target, eval_batch) -> None:
    """The source's metadata plus the quantization's; dlkit as producer; only the opset domains in use."""
    import dlkit

    candidate.producer_name, candidate.producer_version = "dlkit", dlkit.__version__
    used = {n.domain for n in candidate.graph.node} | {""}
    keep = [o for o in candidate.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del candidate.opset_import[:]
    candidate.opset_import.extend(keep)
    del candidate.metadata_props[:]
    for prop in source.metadata_props:
        candidate.metadata_props.add(key=prop.key, value=prop.value)
    candidate.metadata_props.add(key="dlkit.quantization", value=json.dumps(
        {"mode": mode, "settings": dict(settings), "parity_vs_float": [f.to_dict() for f in figures],
         "target": None if target is None else target.to_dict(), "eval_batch_size": eval_batch}))
