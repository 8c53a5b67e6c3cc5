"""What an ONNX candidate of `dlkit.verify` is: its precision (float, int8 static or dynamic, fp16), the int8
target it was quantized for, and, for a QDQ int8 candidate, its least accurate quantized nodes."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from dlkit.core.precision import Precision

TOP_NODES = 10


@dataclass(frozen=True)
class NodeError:
    """A quantized node and the signal-to-quantization-noise ratio of its int8 inputs (lower loses more)."""

    name: str
    op_type: str
    sqnr_db: float

    def to_dict(self) -> dict:
        return asdict(self)


def _prepared_like(float_model, qdq_model):
    """The float model prepared as the int8 one was, so that each int8 weight meets the float tensor it was
    quantized from: plainly, or laid out channels-last for int8 (dlkit's static mode for convolutional models,
    which reorders the rows of the weights after a Flatten under the same initializer name: measured against the
    unordered ones, that layer read -2.9 dB). The preparation whose node names the int8 model shares wins."""
    from dlkit.quantization import graph_preparation as preparation

    names = {n.name for n in qdq_model.graph.node}
    best = None
    for channels_last in (False, True):
        prepared, _, _ = preparation.prepare(float_model, channels_last=channels_last)
        shared = len({n.name for n in prepared.graph.node} & names)
        if best is None or shared > best[0]:
            best = (shared, prepared)
    return best[1]


def quantized_nodes(path: Path, info: Precision, reference, paths, feeds, notes: list[str]) -> tuple[NodeError, ...]:
    """A QDQ int8 candidate's quantized nodes with the lowest SQNR (`info` from `precision`), else none."""
    if not info.qdq:
        return ()
    import onnx

    model = onnx.load(str(path))
    floats = [Path(reference)] if isinstance(reference, (str, os.PathLike)) and \
        Path(reference).suffix.lower() == ".onnx" else []
    floats += [p for p in paths if p != path]
    for candidate in floats:
        float_model = onnx.load(str(candidate))
        if any(n.op_type in ("DequantizeLinear", "DynamicQuantizeLinear") for n in float_model.graph.node):
            continue
        try:
            from dlkit.quantization import quantizers

            ranked = quantizers.rank_sensitive_nodes(_prepared_like(float_model, model), model, feeds, already=())
        except Exception as err:  # a ranking failure must not hide the figures
            notes.append(f"per-node SQNR of {path.name} failed ({type(err).__name__}: {str(err)[:120]})")
            return ()
        return tuple(NodeError(n.name, n.op_type, n.sqnr_db) for n in ranked[:TOP_NODES])
    notes.append(f"no float ONNX model to rank {path.name}'s nodes against; pass the float export as a reference "
                 "or another candidate for per-node SQNR")
    return ()
