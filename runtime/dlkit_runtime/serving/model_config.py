"""Triton's model configuration extension: GET /v2/models/{name}/config answers a model's configuration as Triton's
model_config.proto writes it in JSON, so that `tritonclient`'s `get_model_config` and the tools that read it (the
batch size, the inputs' types and dims) work against dlkit's server. Standard library only."""

from __future__ import annotations

import json
from typing import Any

from dlkit_runtime.serving.batching import Entry
from dlkit_runtime.serving.protocol import datatype
from dlkit_runtime.serving.settings import Settings
from dlkit_runtime.serving.text_http import advertised_inputs


def model_config(entry: Entry, settings: Settings) -> dict[str, Any]:
    """The configuration of a served model. A batching model has `max_batch_size` (the server's max_batch) and
    dims without the batch axis, as Triton lists them; a fixed-batch one has 0 and its whole shape. A dynamic
    axis is -1; a TYPE_STRING tensor is what the protocol calls BYTES (a text model's input: one string per sample,
    dims [1] reshaped to [])."""
    model, batched = entry.model, entry.batched
    layouts = model.metadata.get("input_layout") if isinstance(model.metadata.get("input_layout"), dict) else {}
    config: dict[str, Any] = {
        "name": entry.name, "platform": "onnxruntime_onnx", "backend": "onnxruntime",
        "version_policy": {"latest": {"num_versions": 1}}, "max_batch_size": settings.max_batch if batched else 0,
        "input": [_tensor(t, batched, layouts.get(t.name)) for t in advertised_inputs(model)],
        "output": [_tensor(t, batched, None) for t in model.outputs],
        "instance_group": [{"name": entry.name, "kind": "KIND_CPU" if model.providers[0] == "cpu" else "KIND_GPU",
                            "count": 1}],
    }
    if batched:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": int(settings.max_delay_ms * 1000),
                                      "default_queue_policy": {"max_queue_size": settings.max_queue}}
    if model.labels:
        config["parameters"] = {"labels": {"string_value": json.dumps(list(model.labels))}}
    return config


def _tensor(tensor, batched: bool, layout: str | None) -> dict[str, Any]:
    dims = [d if isinstance(d, int) else -1 for d in tensor.shape][1 if batched else 0:]
    described = {"name": tensor.name, "data_type": "TYPE_" + datatype(tensor.dtype).replace("BYTES", "STRING"),
                 "dims": dims or [1]}
    if not dims:  # one value per sample: Triton's dims cannot be empty, a reshape says so
        described["reshape"] = {"shape": []}
    if layout in ("NHWC", "NCHW"):
        described["format"] = f"FORMAT_{layout}"
    return described
