"""Running an in-memory ONNX model for dlkit's own checks: a quiet CPU session, batched runs, tensor infos."""

from __future__ import annotations

import contextlib
import io
from typing import Any, Iterable, Mapping

import numpy as np

from dlkit.errors import InvalidInputError
from dlkit.core.tensors import TensorInfo
from dlkit_runtime.model import ort_message

BATCH = 64  # samples per run when comparing models


def session(model: Any, threads: int | None = None):
    """A CPU `InferenceSession` for a ModelProto, with onnxruntime's logging limited to errors; `threads`: its
    intra-op and inter-op threads (default: onnxruntime's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = options.inter_op_num_threads = threads
    with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints its fallback banner with print()
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def batches(samples: Mapping[str, np.ndarray], size: int = BATCH) -> Iterable[dict[str, np.ndarray]]:
    """Slices of `size` samples along the first axis of every array."""
    count = len(next(iter(samples.values())))
    for start in range(0, count, size):
        yield {k: v[start:start + size] for k, v in samples.items()}


def fixed_batch(inputs) -> int | None:
    """The batch size a model fixes on axis 0 of every input (model zoos' batch 1), or None when it is dynamic."""
    dims = {i.shape[0] if i.shape and isinstance(i.shape[0], int) and i.shape[0] > 0 else None for i in inputs}
    return dims.pop() if len(dims) == 1 and None not in dims else None


def padded(part: Mapping[str, np.ndarray], size: int) -> tuple[dict[str, np.ndarray], int]:
    """`part` grown to `size` samples by repeating its last one (a fixed-batch model's short last batch), and how
    many samples are real: outputs beyond them are dropped."""
    count = len(next(iter(part.values())))
    if count >= size:
        return dict(part), count
    return {k: np.concatenate([v, np.repeat(v[-1:], size - count, axis=0)]) for k, v in part.items()}, count


def fixed_chunks(parts: Iterable[Mapping[str, np.ndarray]], size: int) -> Iterable[dict[str, np.ndarray]]:
    """Batches of any sizes regrouped into batches of exactly `size` samples, the last one padded."""
    pending: dict[str, list] = {}
    held = 0
    for part in parts:
        for k, v in part.items():
            pending.setdefault(k, []).append(v)
        held += len(next(iter(part.values())))
        while held >= size:
            joined = {k: np.concatenate(v) for k, v in pending.items()}
            yield {k: v[:size] for k, v in joined.items()}
            pending = {k: [v[size:]] for k, v in joined.items()}
            held -= size
    if held:
        yield padded({k: np.concatenate(v) for k, v in pending.items()}, size)[0]


def run(model: Any, feeds: Mapping[str, np.ndarray], what: str = "these samples", *,
        batch: int = BATCH, device: Any = None) -> dict[str, np.ndarray]:
    """All outputs of a ModelProto on `feeds`, keyed by output name: run in batches and concatenated when every
    output has the batch axis first, else in one call. A model whose batch axis is fixed runs in batches of that
    size, the last one padded and its extra outputs dropped. `device`: a `dlkit.device.Emulator` to run it on.

    Raises:
        InvalidInputError: onnxruntime cannot run the model on `feeds` (`what` names them in the message).
    """
    if device is not None:
        with on_device(model, device) as remote:
            try:
                return predict(remote, dict(feeds), batch)
            except InvalidInputError as err:
                raise InvalidInputError(f"{err} ({what})") from err
    import onnxruntime as ort

    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    options = ort.RunOptions()
    options.log_severity_level = 4  # a failed run raises below; no second report in the log

    def call(batch):
        try:
            return sess.run(names, batch, options)
        except Exception as err:
            raise InvalidInputError(f"onnxruntime could not run the model on {what} ({ort_message(err)}); give data "
                                    "the model accepts (values and sizes)") from err

    return in_batches(lambda part: dict(zip(names, call(part))), feeds, batch, fixed_batch(graph_inputs(model)))


def predict(model, batch: dict, size: int | None) -> dict:
    """A `dlkit_runtime.Model`'s outputs on `batch`, run `size` samples at a time when a size is given and every
    output has the batch axis first (a dynamic int8 model's outputs depend on the batch it runs in), and in batches
    of the model's own size when it fixes its batch axis."""
    count = len(next(iter(batch.values())))
    fixed = fixed_batch(model.inputs)  # a fixed batch axis: batches of its size, the last padded
    size = fixed or size
    if size is None or (size >= count and not fixed) or (fixed and count == fixed):
        return model.predict(batch)
    return in_batches(model.predict, batch, size, fixed)


def in_batches(call, feeds: Mapping[str, np.ndarray], size: int, fixed: int | None) -> dict[str, np.ndarray]:
    """`call` (feeds -> outputs by name) on `feeds`, `size` samples at a time (a fixed batch axis: batches of
    `fixed`, the last padded and its extra outputs dropped), concatenated; in one call when an output has no batch
    axis first."""
    parts = []
    for part in batches(feeds, fixed or size):
        feed, real = padded(part, fixed) if fixed else (part, len(next(iter(part.values()))))
        out = call(feed)
        if any(v.ndim == 0 or v.shape[0] != len(next(iter(feed.values()))) for v in out.values()):
            return call(dict(feeds))  # an output without a batch axis first: the samples whole
        parts.append({k: v[:real] for k, v in out.items()})
    if not parts:
        return call(dict(feeds))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


@contextlib.contextmanager
def on_device(model: Any, device: Any):
    """A ModelProto loaded on an emulated device (`dlkit.device.Emulator`), from a temporary file, as a model with
    `inputs` and `predict`; unloaded and deleted afterwards."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="dlkit-candidate-") as folder:
        path = Path(folder) / "candidate.onnx"
        path.write_bytes(model.SerializeToString())
        remote = device.load(path)
        try:
            yield remote
        finally:
            device.unload(remote)


def all_nodes(graph: Any) -> Iterable[Any]:
    """Every node of an ONNX graph, those in the sub-graphs of Loop, If and Scan too."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from all_nodes(sub)


def graph_tensors(values) -> tuple[TensorInfo, ...]:
    """`TensorInfo`s of graph inputs or outputs (ValueInfoProtos)."""
    import onnx

    out = []
    for value in values:
        tensor = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        out.append(TensorInfo(value.name, dtype, dims))
    return tuple(out)


def graph_inputs(model: Any) -> tuple[TensorInfo, ...]:
    """The inputs a caller feeds: graph inputs that are not initializers."""
    names = {t.name for t in model.graph.initializer}
    return graph_tensors([i for i in model.graph.input if i.name not in names])
