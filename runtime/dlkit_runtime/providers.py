"""Execution providers by short name: the user's preference list -> onnxruntime's names and options.

A provider the installed onnxruntime lacks is skipped with a `ProviderWarning` (or `ProviderError` under
`strict=True`); the next one in the list is used. CPU is always the last resort.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

from dlkit_runtime.errors import InvalidInputError, ProviderError

# short name -> onnxruntime's name, in the priority order of the docs
SHORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "acl": "ACLExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "qnn": "QNNExecutionProvider",
}
_LONG_NAMES = {long: short for short, long in SHORT_NAMES.items()}

# what to install when a provider is missing
_INSTALL_HINTS = {
    "cuda": "CUDA needs the onnxruntime-gpu package instead of onnxruntime: "
            "pip uninstall onnxruntime && pip install onnxruntime-gpu",
    "tensorrt": "TensorRT needs the onnxruntime-gpu package (instead of onnxruntime) and TensorRT's libraries",
    "openvino": "install onnxruntime-openvino instead of onnxruntime",
    "dml": "install onnxruntime-directml instead of onnxruntime (Windows)",
    "qnn": "install onnxruntime-qnn instead of onnxruntime (Qualcomm devices)",
    "coreml": "CoreML is in the onnxruntime wheels for macOS only",
}


class ProviderWarning(UserWarning):
    """A requested execution provider is not available and the next one is used."""


def short_name(name: str) -> str:
    """`CUDAExecutionProvider` -> `cuda`; unknown names are returned unchanged."""
    return _LONG_NAMES.get(name, name)


def parse(providers: str | Sequence[str] | None) -> list[str]:
    """Normalizes a preference list ("cuda,cpu", ["cuda", "cpu"] or onnxruntime names) to short names.

    Raises:
        InvalidInputError: a name that is neither a short name nor an onnxruntime provider name.
    """
    if providers is None:
        return []
    if isinstance(providers, str):
        providers = [p for p in providers.split(",")]
    names = []
    for raw in providers:
        name = short_name(raw.strip())
        name = name.lower() if name.lower() in SHORT_NAMES else name
        if name not in SHORT_NAMES:
            raise InvalidInputError(f"unknown execution provider {raw!r}; use one of: {', '.join(SHORT_NAMES)}")
        if name not in names:
            names.append(name)
    return names


def resolve(
    providers: str | Sequence[str] | None,
    available: Sequence[str],
    *,
    strict: bool = False,
    threads: int = 1,
    device_id: int = 0,
    fp16: bool = False,
    cache_dir: str | None = None,
) -> tuple[list[tuple[str, dict[str, Any]]], tuple[str, ...]]:
    """Chooses the providers to ask onnxruntime for, with their common options.

    Args:
        providers: the preference list; None takes every known provider the installed onnxruntime has, in
            onnxruntime's own priority order.
        available: `onnxruntime.get_available_providers()`.
        strict: raise instead of warning when a requested provider is missing. Defaults to False.
        threads: XNNPACK's thread count. Defaults to 1.
        device_id: the GPU or NPU for CUDA, TensorRT and DirectML. Defaults to 0.
        fp16: let TensorRT build fp16 engines. Defaults to False.
        cache_dir: a folder for TensorRT's engine cache (and OpenVINO's). Defaults to None (no cache).

    Returns:
        `(onnxruntime name, options)` pairs in order, CPU last, and the short names that were skipped.

    Raises:
        ProviderError: `strict=True` and a requested provider is missing.
        InvalidInputError: an unknown provider name.
    """
    wanted = parse(providers)
    if not wanted:
        wanted = [short_name(p) for p in available if short_name(p) in SHORT_NAMES]
    chosen, skipped = [], []
    for name in wanted:
        if SHORT_NAMES[name] in available:
            chosen.append(name)
            continue
        message = f"execution provider '{name}' is not in this onnxruntime (it has {', '.join(short_name(a) for a in available if a in _LONG_NAMES)})"
        if name in _INSTALL_HINTS:
            message += f"; {_INSTALL_HINTS[name]}"
        if strict:
            raise ProviderError(message)
        skipped.append(name)
        nxt = next((n for n in wanted[wanted.index(name) + 1:] if SHORT_NAMES[n] in available), "cpu")
        warnings.warn(f"{message}; using '{nxt}' instead", ProviderWarning, stacklevel=3)
    if "cpu" not in chosen:
        chosen.append("cpu")
    options = {
        "cuda": {"device_id": device_id},
        "dml": {"device_id": device_id},
        "tensorrt": {"device_id": device_id, "trt_fp16_enable": fp16, "trt_engine_cache_enable": cache_dir is not None,
                     **({"trt_engine_cache_path": str(cache_dir)} if cache_dir is not None else {})},
        "xnnpack": {"intra_op_num_threads": threads},
        "openvino": {"cache_dir": str(cache_dir)} if cache_dir is not None else {},
    }
    return [(SHORT_NAMES[n], options.get(n, {})) for n in chosen], tuple(skipped)
