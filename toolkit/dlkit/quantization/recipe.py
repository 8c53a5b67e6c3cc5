"""How a model will be quantized: the options checked before any work, then the mode, the prepared graph, the
quantizer's settings and the batch its figures run at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlkit.core import sessions
from dlkit.core import targets as targets_
from dlkit.core.datasources import DataSource
from dlkit.errors import InvalidInputError

MODES = ("auto", "dynamic", "static", "fp16")
METHODS = ("minmax", "entropy", "percentile")
TYPES = ("int8", "uint8")
TARGETS = targets_.PRESETS  # onnxruntime's recommended (activation, weight) types and options per target


@dataclass(frozen=True)
class Recipe:
    """What quantize will do to the float model.

    Attributes:
        mode: "dynamic", "static" or "fp16"; reason: why that mode. target: the int8 target preset.
        settings: the quantizer settings. prepared: the float model prepared for quantizing; steps: what was done
        to it (a list: a cured collapse adds its note); stem: the first nodes kept in float.
        eval_batch: the batch size the candidates' figures are computed at.
    """

    mode: str
    reason: str
    target: targets_.Target
    settings: dict[str, Any]
    prepared: Any
    steps: list[str]
    stem: list[str]
    eval_batch: int


def check_options(mode, method, activation_type, weight_type, max_accuracy_drop, max_output_error,
                  deploy_batch_size, target, device, max_seconds=None) -> targets_.Target:
    """Checks the options before any work and resolves the int8 target.

    Raises:
        InvalidInputError: an unknown option value, device or target, uint8 weights for arm64, or a time budget
        that is not a positive number or has no bound to search for.
    """
    for value, allowed, option in ((mode, MODES, "mode"), (method, METHODS, "method"),
                                   (activation_type, TYPES, "activation type"), (weight_type, TYPES, "weight type")):
        if value is not None and value not in allowed:
            raise InvalidInputError(f"{option} {value!r} is not one of {', '.join(allowed)}")
    if deploy_batch_size is not None and (not isinstance(deploy_batch_size, int) or deploy_batch_size < 1):
        raise InvalidInputError(f"deploy_batch_size must be a positive integer, got {deploy_batch_size!r}")
    for value, option in ((max_accuracy_drop, "max_accuracy_drop"), (max_output_error, "max_output_error")):
        if value is not None and not 0 <= value < 1:
            raise InvalidInputError(f"{option} must be in [0, 1), got {value}")
    if max_seconds is not None:
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
            raise InvalidInputError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
        if max_accuracy_drop is None and max_output_error is None:
            raise InvalidInputError("max_seconds is the bound search's time budget; give --max-accuracy-drop or "
                                    "--max-output-error too")
    if device is not None:
        from dlkit.device import lookup

        lookup(device)  # an unknown device before any work
    int8_target = targets_.resolve(target)
    if int8_target.name == "arm64" and weight_type == "uint8":
        raise InvalidInputError("uint8 weights are slow or unsupported on ARM; use --weight-type int8 for arm64")
    return int8_target


def choose_recipe(float_model, calib: DataSource | None, mode: str, target: targets_.Target, *, per_channel: bool,
                  method: str, activation_type: str | None, weight_type: str | None,
                  deploy_batch_size: int | None) -> Recipe:
    """Chooses the mode, prepares the graph for it and settles the quantizer's settings.

    Raises:
        InvalidInputError: static quantization without calibration data.
    """
    from dlkit.quantization.graph_preparation import prepare

    mode, reason = _choose_mode(mode, float_model, calib)
    convolutional = any(n.op_type in ("Conv", "ConvTranspose") for n in float_model.graph.node)
    static = mode == "static"
    prepared, steps, stem = prepare(float_model, channels_last=static and convolutional, static=static)
    if mode == "static" and calib is None:
        raise InvalidInputError(f"static quantization needs calibration data ({reason}); pass --calibration DATA "
                                "(.npy, .npz or an image folder), or --mode dynamic")
    settings = _settings(target.name, per_channel, method, activation_type, weight_type, mode)
    eval_batch = deploy_batch_size or (1 if mode == "dynamic" else sessions.BATCH)
    return Recipe(mode, reason, target, settings, prepared, steps, stem, eval_batch)


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
