"""`dlkit.quantize`: int8 (dynamic, or static QDQ calibrated on real data) or fp16, with the cost measured.

Every quantization ends by comparing the quantized model with the float one on samples held back from
calibration (or the evaluation data, or random ones); outputs that collapse are an error, never a file.
With a bound (`max_accuracy_drop`, `max_output_error`) the most sensitive nodes are kept in float until it holds.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from dlkit.core import files as _files
from dlkit.core import sessions
from dlkit.quantization import evaluation as figures_
from dlkit.core import targets as targets_
from dlkit.core.datasources import DataSource, open_data
from dlkit.errors import InvalidInputError, QuantizationError, ToleranceError
from dlkit.quantization.results import KeptNode, QuantizeResult  # noqa: F401  (re-exported)
from dlkit_runtime import cpu

MODES = ("auto", "dynamic", "static", "fp16")
METHODS = ("minmax", "entropy", "percentile")
TYPES = ("int8", "uint8")
_CURED_COSINE = 0.98  # a retry cures a collapse only when it brings the outputs this close to the float model's
_COLLAPSE_RETRIES = 3  # the last quantized nodes, kept in float by sensitivity, before a collapse is an error
TARGETS = targets_.PRESETS  # onnxruntime's recommended (activation, weight) types and options per target


def quantize(
    model: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    mode: str = "auto",
    calibration: str | os.PathLike | None = None,
    eval_data: str | os.PathLike | None = None,
    target: str | None = None,
    per_channel: bool = True,
    method: str = "minmax",
    activation_type: str | None = None,
    weight_type: str | None = None,
    exclude_nodes: Sequence[str] = (),
    exclude_op_types: Sequence[str] = (),
    max_accuracy_drop: float | None = None,
    max_output_error: float | None = None,
    calibration_samples: int = 1000,
    deploy_batch_size: int | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
    device: str | None = None,
) -> QuantizeResult:
    """Quantizes an ONNX model to int8 or fp16 and measures what it cost.

    Args:
        model: any valid `.onnx` file (dlkit's exports or others').
        output: where to write. Defaults to MODEL.int8.onnx (or .fp16.onnx).
        mode: "auto" (the default: static for convolutional models, dynamic for MLPs and recurrent models
            without calibration data, static with it), "dynamic", "static" or "fp16".
        calibration: `.npy`, `.npz` or an image folder for static calibration.
        eval_data: `.npz` with inputs and labels `y` (or a labelled image folder) for accuracy figures.
        target: where the int8 model will run, for onnxruntime's type pairs that keep its int8 arithmetic exact
            there: "host" (the default: this CPU, detected), "x86-vnni", "x86-avx2", "arm64", "gpu", or a bundle's
            device ("rpi4", "rpi5", "aarch64": arm64; "x86_64": x86-avx2, exact on every x86 CPU).
        per_channel: per-channel weight scales. Defaults to True.
        method: calibration method, "minmax", "entropy" or "percentile". Defaults to "minmax".
        activation_type, weight_type: "int8" or "uint8". Defaults to the target's.
        exclude_nodes, exclude_op_types: nodes to keep in float, by name or op type.
        max_accuracy_drop: the largest top-1 accuracy drop allowed (0.01 = one point); needs labelled eval_data.
        max_output_error: the largest relative output error allowed, without labels.
        calibration_samples: calibration samples to use at most. Defaults to 1000.
        deploy_batch_size: the batch size the model will run at when deployed; a dynamic int8 model's figures are
            computed at it, since its activation scales come from the batch. Defaults to None: 1 for dynamic int8
            (a device answering one request at a time), 64 otherwise (the figures do not depend on it).
        force: replace an existing output. progress: called with (done, total) during calibration.
        seed: seed of random check samples.
        device: compute the quantized model's figures (the check samples, eval_data's accuracy, the collapse check
            and the bound) on this emulated device ("rpi4", "rpi5", "aarch64"; `dlkit.device`), with its own int8
            kernels. The float model's figures stay on this host. Defaults to None: this host.

    Returns:
        A `QuantizeResult`.

    Raises:
        InvalidInputError: a bad path, option or data (before any work). QuantizationError: the quantizers failed.
        ToleranceError: outputs collapsed, or the bound cannot be met even with every node in float.

    Example:
        >>> r = dlkit.quantize("cnn.onnx", calibration="mnist.npz", eval_data="mnist_test.npz")
        >>> r.mode, r.accuracy_drop < 0.005
        ('static', True)
    """
    from dlkit.quantization import graph_preparation as preparation
    from dlkit.quantization import quantizers

    started = time.perf_counter()
    _validate(mode, method, activation_type, weight_type, max_accuracy_drop, max_output_error, deploy_batch_size)
    if device is not None:
        from dlkit.device import lookup

        lookup(device)  # an unknown device before any work
    int8_target = targets_.resolve(target)
    if int8_target.name == "arm64" and weight_type == "uint8":
        raise InvalidInputError("uint8 weights are slow or unsupported on ARM; use --weight-type int8 for arm64")
    source_path = Path(model)
    float_model, data_files = preparation.load_onnx(source_path)
    suffix = ".fp16.onnx" if mode == "fp16" else ".int8.onnx"
    default = source_path.with_name(source_path.name.removesuffix(".onnx") + suffix)
    out_path = _files.output_path(output if output is not None else default, suffix=suffix, force=force)
    source_files = [source_path, *data_files]
    if any(out_path.resolve() == f.resolve() for f in source_files):
        raise InvalidInputError(f"output '{out_path}' is one of the input model's files; choose another path (inputs "
                                "are never overwritten)")
    _check_float32(float_model, source_path)
    inputs = sessions.graph_inputs(float_model)
    metadata = _metadata(float_model)
    calib = open_data(calibration, inputs, metadata=metadata, what="calibration data") if calibration else None
    evaluation = open_data(eval_data, inputs, metadata=metadata, what="eval data") if eval_data else None
    if max_accuracy_drop is not None and (evaluation is None or evaluation.labels is None):
        raise InvalidInputError("max_accuracy_drop needs labelled eval data: --eval-data with inputs and labels 'y' "
                                "(or use --max-output-error without labels)")

    mode, reason = _choose_mode(mode, float_model, calib)
    convolutional = any(n.op_type in ("Conv", "ConvTranspose") for n in float_model.graph.node)
    prepared, steps, stem = preparation.prepare(float_model, channels_last=mode == "static" and convolutional,
                                                static=mode == "static")
    if mode == "static" and calib is None:
        raise InvalidInputError(f"static quantization needs calibration data ({reason}); pass --calibration DATA "
                                "(.npy, .npz or an image folder), or --mode dynamic")
    settings = _settings(int8_target.name, per_channel, method, activation_type, weight_type, mode)
    eval_batch = deploy_batch_size or (1 if mode == "dynamic" else sessions.BATCH)

    calib_stop = 0 if calib is None else min(calib.count, calibration_samples)
    check, check_source = figures_.check_samples(calib, evaluation, inputs, calib_stop, seed)
    if calib is not None and evaluation is None and calib.count > 1:
        calib_stop = min(calib_stop, calib.count - len(next(iter(check.values()))))

    with _evaluator(device) as emulator:  # the candidate's figures: this host, or the emulated device
        from dlkit.quantization.int8_layout import float_outputs

        final = float_outputs(prepared)[0] if mode == "static" else []  # a final Softmax reads the logits in float
        quantizer = quantizers.Quantizer(prepared, mode, settings, calib, calib_stop, progress, float_inputs=final)
        excluded = list(exclude_nodes) + [name for name in stem if name not in exclude_nodes]
        candidate = quantizer.run(excluded, exclude_op_types)
        what = ("random samples; pass real ones with --calibration or --eval-data" if check_source == "random"
                else f"the check samples from {check_source}")
        reference = sessions.run(prepared, check, what)
        if mode != "fp16" and quantizers.count_quantized(candidate, mode) == 0:
            raise QuantizationError(f"nothing in '{source_path}' was quantized: no node onnxruntime's {mode} int8 "
                                    "quantizer handles (Conv, MatMul, Gemm, ... with float32 weights) is left; check "
                                    "--exclude-node/--exclude-op-type, or try --mode fp16")
        figures, error = figures_.compare(reference, sessions.run(candidate, check, what, batch=eval_batch, device=emulator))
        accuracy = (figures_.accuracy(prepared, candidate, evaluation, batch=eval_batch, device=emulator)
                    if evaluation is not None and evaluation.labels is not None else None)

        kept: list[KeptNode] = []
        bound, metric = figures_.bound(max_accuracy_drop, max_output_error, accuracy, error)
        if bound is not None and metric > bound:
            ranking = quantizers.rank_sensitive_nodes(prepared, candidate, check, excluded)
            for node in ranking:
                excluded.append(node.name)
                candidate = quantizer.run(excluded, exclude_op_types)
                figures, error = figures_.compare(reference, sessions.run(candidate, check, what, batch=eval_batch, device=emulator))
                if accuracy is not None:
                    accuracy = figures_.accuracy(prepared, candidate, evaluation, float_accuracy=accuracy[0],
                                                 batch=eval_batch, device=emulator)
                _, metric = figures_.bound(max_accuracy_drop, max_output_error, accuracy, error)
                kept.append(KeptNode(node.name, node.op_type, node.sqnr_db, metric))
                if metric <= bound:
                    break
            else:
                if not kept:  # the ranking reads QDQ pairs: only static int8 has them
                    fix = {"static": "keep nodes in float with --exclude-node/--exclude-op-type",
                           "fp16": "keep the float32 model"}.get(
                        mode, "use --mode static with --calibration data, which can keep sensitive nodes in float")
                    raise ToleranceError(f"the bound {bound:g} is not met ({metric:.4g}) and {mode} mode has no nodes to "
                                         f"rank and keep in float; loosen the bound or {fix}")
                raise ToleranceError(f"the bound {bound:g} cannot be met: with all {len(kept)} sensitive nodes kept in "
                                     f"float the figure is {metric:.4g}; loosen the bound or use --mode fp16")
        problem = figures_.collapse(reference, figures, error)
        if problem and mode in ("static", "dynamic"):  # before giving up: the graph's tail in float, one node at a time
            for node in quantizers.tail_nodes(prepared, candidate, check, excluded, mode, _COLLAPSE_RETRIES):
                excluded.append(node.name)
                candidate = quantizer.run(excluded, exclude_op_types)
                figures, error = figures_.compare(reference, sessions.run(candidate, check, what, batch=eval_batch, device=emulator))
                kept.append(KeptNode(node.name, node.op_type, node.sqnr_db, error))
                cosine = min(f.cosine_similarity for f in figures)
                if figures_.collapse(reference, figures, error) is None and cosine >= _CURED_COSINE:
                    problem = None
                    steps.append(f"outputs collapsed in int8; {len(kept)} sensitive node(s) at the end of the graph kept in "
                                 "float cured it")
                    if accuracy is not None:
                        accuracy = figures_.accuracy(prepared, candidate, evaluation, float_accuracy=accuracy[0],
                                                     batch=eval_batch, device=emulator)
                    break
        if problem:
            tried = (f" (still, with {len(kept)} sensitive node(s) at the end of the graph kept in float: cosine "
                     f"similarity {min(f.cosine_similarity for f in figures):.3f})") if kept else ""
            raise ToleranceError(problem + tried)

    int8 = mode != "fp16"
    _copy_metadata(float_model, candidate, mode, settings, figures, int8_target if int8 else None, eval_batch)
    computed_on = {"where": "host", "emulated": False, "cpu": dict(int8_target.host)} if emulator is None \
        else emulator.computed_on()
    kernels = None if emulator is None else cpu.CpuKind.from_dict(computed_on["cpu"])
    warning = targets_.mismatch(int8_target.name, settings, kernels) if int8 else None
    data = candidate.SerializeToString()
    _files.write_atomic(out_path, data)
    return QuantizeResult(
        path=str(out_path), mode=mode, reason=reason, target=int8_target.name if int8 else None, settings=settings,
        nodes_quantized=quantizers.count_quantized(candidate, mode),
        nodes_float=tuple(quantizers.float_compute_nodes(candidate, mode)),
        kept_in_float=tuple(kept), size_before_bytes=sum(f.stat().st_size for f in source_files), size_after_bytes=len(data),
        parity=figures, num_samples=len(next(iter(check.values()))), check_source=check_source, output_error=error,
        float_accuracy=None if accuracy is None else accuracy[0],
        quantized_accuracy=None if accuracy is None else accuracy[1],
        accuracy_drop=None if accuracy is None else accuracy[0] - accuracy[1],
        preparation=tuple(steps), seconds=round(time.perf_counter() - started, 3),
        target_reason=int8_target.reason if int8 else "", host_cpu=int8_target.host, eval_batch_size=eval_batch,
        warnings=(warning,) if warning else (),
        float_weights_bytes=figures_.weight_bytes(prepared), computed_on=computed_on,
    )


def _evaluator(device: str | None):
    """The emulated device's process for the figures, or a stand-in for this host (None)."""
    import contextlib

    if device is None:
        return contextlib.nullcontext()
    from dlkit.device import Emulator

    return Emulator(device)


def _validate(mode, method, activation_type, weight_type, max_accuracy_drop, max_output_error,
              deploy_batch_size) -> None:
    for value, allowed, option in ((mode, MODES, "mode"), (method, METHODS, "method"),
                                   (activation_type, TYPES, "activation type"), (weight_type, TYPES, "weight type")):
        if value is not None and value not in allowed:
            raise InvalidInputError(f"{option} {value!r} is not one of {', '.join(allowed)}")
    if deploy_batch_size is not None and (not isinstance(deploy_batch_size, int) or deploy_batch_size < 1):
        raise InvalidInputError(f"deploy_batch_size must be a positive integer, got {deploy_batch_size!r}")
    for value, option in ((max_accuracy_drop, "max_accuracy_drop"), (max_output_error, "max_output_error")):
        if value is not None and not 0 <= value < 1:
            raise InvalidInputError(f"{option} must be in [0, 1), got {value}")


def _check_float32(model, path: Path) -> None:
    """int8 and fp16 both start from float32 weights; an fp16 or already-int8 model has nothing left to gain."""
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    kinds = {t.data_type for t in model.graph.initializer if len(t.dims) >= 1 and math.prod(t.dims) > 1}
    if TensorProto.INT8 in kinds or TensorProto.UINT8 in kinds:
        if TensorProto.FLOAT not in kinds:
            raise InvalidInputError(f"'{path}' holds int8 weights, not float32: it is quantized already; quantize the "
                                    "float32 model it was made from")
    elif kinds & floats and TensorProto.FLOAT not in kinds:  # no float weights at all: nodes may generate them
        held = "float16" if TensorProto.FLOAT16 in kinds else "no float32"
        raise InvalidInputError(f"'{path}' holds {held} weights, not float32; quantize the float32 model it was "
                                "made from")


def _metadata(model) -> dict[str, Any]:
    meta = {}
    for prop in model.metadata_props:
        key = prop.key[len("dlkit."):] if prop.key.startswith("dlkit.") else prop.key
        try:
            meta[key] = json.loads(prop.value)
        except ValueError:
            meta[key] = prop.value
    return meta


def _choose_mode(mode: str, model, calib: DataSource | None) -> tuple[str, str]:
    ops = {n.op_type for n in model.graph.node}
    if mode != "auto":
        return mode, f"{mode} was asked for"
    if ops & {"Conv", "ConvTranspose"}:
        return "static", ("convolutional model: static QDQ (dynamic quantization makes convolutions slower on CPU "
                          "and ConvInteger is missing on some builds)")
    if calib is not None:
        return "static", "calibration data given: static QDQ quantizes activations too"
    kind = "recurrent" if ops & {"GRU", "LSTM", "RNN", "Loop", "Scan"} else "MLP"
    return "dynamic", f"{kind} model without calibration data: dynamic int8 weights"


def _settings(target, per_channel, method, activation_type, weight_type, mode) -> dict[str, Any]:
    preset = TARGETS[target]
    settings = {
        "per_channel": per_channel,
        "method": method,
        "activation_type": activation_type or preset["activation_type"],
        "weight_type": weight_type or preset["weight_type"],
        "reduce_range": preset["reduce_range"],
        "symmetric": preset["symmetric"],
    }
    if mode == "dynamic":  # DynamicQuantizeLinear's activations are uint8, whatever the preset
        settings.pop("method")
        settings["activation_type"] = "uint8"
    if mode == "fp16":
        return {"keep_io_types": True}
    return settings


def _copy_metadata(source, candidate, mode, settings, figures, target, eval_batch) -> None:
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
