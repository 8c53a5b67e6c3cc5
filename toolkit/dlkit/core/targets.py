"""Where an int8 model will run, and which quantizer settings keep its int8 arithmetic exact there.

onnxruntime's int8 kernels differ by CPU family (`dlkit_runtime.cpu`): VNNI and ARM add int8 products exactly,
x86 without VNNI adds pairs of u8 x s8 products in int16 and saturates. Measured on the sample MNIST models
(`bench/README.md`, "int8 on AVX2"): with 8-bit weights an AVX2-only CPU loses 0.11-0.22 points of top-1 accuracy
that a VNNI CPU or a Pi does not lose from the same file; with 7-bit weights (`reduce_range`) every pair sum fits
in int16, the loss is 0.00-0.03 points and the outputs are the same on every family, bit for bit.

So the default target is the CPU that runs `dlkit quantize` (`host`), and a bundle's device names its own:
`rpi4`, `rpi5` and `aarch64` are `arm64`; `x86_64` (any x86-64 CPU) is `x86-avx2`, which is exact everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from dlkit.core.catalogue import ALIASES, GPU, PORTABLE_PRESET, PRESET_REASONS, PRESETS
from dlkit.errors import InvalidInputError
from dlkit_runtime import cpu

# names a user may give: the host, the presets, and the catalogue's devices
NAMES = ("host", *PRESETS, *ALIASES)


@dataclass(frozen=True)
class Target:
    """The int8 target a model is quantized for.

    Attributes:
        name: the preset ("x86-vnni", "x86-avx2", "arm64" or "gpu"). asked: what was asked for ("host", "rpi5",
        a preset). reason: why these settings, in words. host: the CPU that ran the quantizer (`CpuKind.to_dict`).
    """

    name: str
    asked: str
    reason: str
    host: Mapping[str, Any]

    @property
    def settings(self) -> dict[str, Any]:
        return dict(PRESETS[self.name])

    def to_dict(self) -> dict:
        return {"name": self.name, "asked": self.asked, "reason": self.reason, "host": dict(self.host)}


def resolve(target: str | None) -> Target:
    """The preset for `target` (None or "host": the CPU running this call, detected).

    Raises:
        InvalidInputError: an unknown name.
    """
    asked = target or "host"
    if asked not in NAMES:
        raise InvalidInputError(f"target {asked!r} is not one of {', '.join(NAMES)}")
    host = cpu.host()
    if asked == "host":
        name = host.family if host.family in PRESETS else PORTABLE_PRESET  # unknown CPU: the settings exact everywhere
        where = f"the host CPU, {host.description}"
    elif asked in ALIASES:
        name = ALIASES[asked]
        where = f"{asked} runs the {name} kernels"
    else:
        name, where = asked, f"{asked} was asked for"
    return Target(name, asked, f"{where}: {PRESET_REASONS[name]}", host.to_dict())


def exact_everywhere(settings: Mapping[str, Any]) -> bool:
    """7-bit weights: no int16 pair sum can saturate, so every CPU family computes the same integers."""
    return bool(settings.get("reduce_range"))


def quantization_info(metadata: Mapping[str, Any]) -> dict:
    """`dlkit quantize`'s record in a model's metadata (JSON text or decoded), {} for other models."""
    info = metadata.get("quantization")
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except ValueError:
            return {}
    return info if isinstance(info, dict) else {}


def of_model(metadata: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """The target and settings a dlkit-quantized model was made with, from its metadata (None for others)."""
    info = quantization_info(metadata)
    if not info:
        return None, {}
    target = info.get("target")
    name = target.get("name") if isinstance(target, dict) else target
    return (name if name in PRESETS else None), info.get("settings") or {}


def mismatch(target: str | None, settings: Mapping[str, Any], host: cpu.CpuKind | None = None) -> str | None:
    """One line when int8 figures computed on `host` are not what `target`'s kernels compute, else None."""
    host = host or cpu.host()
    if target is None or exact_everywhere(settings):
        return None
    if target == GPU:  # each CPU preset is named for the family whose kernels it is for; gpu is TensorRT's
        return (f"this model is quantized for TensorRT (gpu); its int8 figures here come from the host CPU's kernels "
                f"({host.family}), not TensorRT's")
    if target == host.family:
        return None
    if host.family == PORTABLE_PRESET:  # the AVX2 kernels: 8-bit weights saturate
        return (f"this model is quantized for {target} (8-bit weights), but its int8 figures come from this "
                f"{host.family} host, whose kernels saturate where {target}'s do not: they are not the target's "
                f"(verify on the device, or quantize with --target {PORTABLE_PRESET} for figures that hold everywhere)")
    if host.family == "other":
        return (f"this model is quantized for {target}, but its int8 figures come from this {host.family} host, "
                f"whose int8 kernels differ from {target}'s")
    return None  # VNNI and ARM both add int8 products exactly: the same integers


__all__ = ["ALIASES", "NAMES", "PRESETS", "Target", "exact_everywhere", "mismatch", "of_model", "quantization_info",
           "resolve"]
