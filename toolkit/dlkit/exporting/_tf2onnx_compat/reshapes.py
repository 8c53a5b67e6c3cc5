"""tf2onnx workaround 7 (see the package docstring): two back-to-back `Reshape`s are merged only when the second's
shape means the same on the first one's input.

tf2onnx's `BackToBackOptimizer._optimize_reshape_reshape` (tf2onnx 1.17, unchanged on its main branch) rewires
`Reshape(Reshape(x, s1), s2)` to `Reshape(x, s2)` whatever `s2` holds. In ONNX a `0` in a shape copies that axis of
the Reshape's own input, and tf2onnx's `ReshapeOptimizer` writes such `0`s itself (a shape computed from the input's
`Shape` becomes a constant with `0` for an unknown axis it keeps). After the merge that `0` copies an axis of `x`
instead: a silently different shape, or a model onnxruntime refuses. The same bug, fixed elsewhere: coremltools'
`merge_consecutive_reshapes` (apple/coremltools#2790), onnxruntime's `ReshapeFusion` (microsoft/onnxruntime#28348).

KerasHub's MiT / SegFormer meets it in `SegFormerMultiheadAttention` with one head (every MiT's first stage): the keys
after the spatial-reduction convolution are `(B, M, C)` with both B and M unknown to tf2onnx; `reshape` to
`(B, M, 1, C)` then `transpose` to `(B, 1, M, C)` moves only the size-1 head axis, so tf2onnx's TransposeOptimizer
makes that transpose a `Reshape` whose shape `ReshapeOptimizer` folds to `[0, 1, -1, C]`. The merge then hangs it on
Dense's flattened `(B*M, C)` product: keys of shape `(B*M, 1, 1, C)`, and the `MatMul` with the queries `(B, 1, N, C)`
fails with "left operand cannot broadcast on dim 0", at any batch size.

Delete this module when tf2onnx checks the second shape for `0`s before merging (no upstream issue yet: its
`back_to_back_optimizer.py` still merges unconditionally).
"""

from __future__ import annotations

import contextlib
from typing import Iterator


def _copies_an_axis(reshape) -> bool:
    """Whether an ONNX `Reshape` node's shape is a constant holding a `0` that copies an axis of its input."""
    shape = reshape.inputs[1]
    if shape is None or not shape.is_const() or reshape.get_attr_value("allowzero", 0):
        return False
    return 0 in shape.get_tensor_value(as_list=False).ravel().tolist()


@contextlib.contextmanager
def safe_reshape_merging() -> Iterator[list[str]]:
    """While active, tf2onnx merges a `Reshape` into the `Reshape` that reads it only when the reader's shape copies no
    axis of its input (`0` entries); such pairs stay two nodes, which onnxslim and onnxruntime may still fold with the
    axis resolved. Yields the list of the reader Reshapes kept apart, filled as tf2onnx optimizes."""
    from tf2onnx.optimizer import back_to_back_optimizer

    table = back_to_back_optimizer._func_map  # op types -> handler, as `_register_func` fills it
    key = ("Reshape",)
    original = table[key]
    kept: list[str] = []

    def merge(g, node, consumer_nodes):
        if len(consumer_nodes) == 1 and consumer_nodes[0].type == "Reshape" and _copies_an_axis(consumer_nodes[0]):
            kept.append(consumer_nodes[0].name)
            return []
        return original(g, node, consumer_nodes)

    table[key] = merge
    try:
        yield kept
    finally:
        table[key] = original
