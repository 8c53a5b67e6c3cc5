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

from dlkit.errors import InvalidInputError
from dlkit_runtime import cpu

# the quantizer settings per preset: onnxruntime's recommended (activation, weight) types and options
PRESETS = {
    "x86-vnni": {"activation_type": "int8", "weight_type": "int8", "reduce_range": False, "symmetric": False},
    "x86-avx2": {"activation_type": "uint8", "weight_type": "int8", "reduce_range": True, "symmetric": False},
    "arm64": {"activation_type": "int8", "weight_type": "int8", "reduce_range": False, "symmetric": False},
    "gpu": {"activation_type": "int8", "weight_type": "int8", "reduce_range": False, "symmetric": True},
}
# names a user may give: the presets, the host, and dlkit bundle's devices
ALIASES = {"rpi4": "arm64", "rpi5": "arm64", "aarch64": "arm64", "x86_64": "x86-avx2"}
NAMES = ("host", *PRESETS, *ALIASES)
_WHY = {
    "x86-vnni": "int8 weights and activations: VNNI adds int8 products exactly",
    "x86-avx2": "uint8 activations and 7-bit weights (reduce_range): AVX2 adds u8 x s8 pairs in int16, which "
                "saturate with 8-bit weights",
    "arm64": "int8 weights and activations: ARM's NEON kernels add int8 products exactly",
    "gpu": "symmetric int8 for TensorRT",
}


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
        name = host.family if host.family in PRESETS else "x86-avx2"  # unknown CPU: the settings exact everywhere
        where = f"the host CPU, {host.description}"
    elif asked in ALIASES:
        name = ALIASES[asked]
        where = f"{asked} runs the {name} kernels"
    else:
        name, where = asked, f"{asked} was asked for"
    return Target(name, asked, f"{where}: {_WHY[name]}", host.to_dict())


def exact_everywhere(settings: Mapping[str, Any]) -> bool:
    """7-bit weights: no int16 pair sum can saturate, so every CPU family computes the same integers."""
    return bool(settings.get("reduce_range"))


def of_model(metadata: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """The target and settings a dlkit-quantized model was made with, from its metadata (None for others)."""
    info = metadata.get("quantization")
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except ValueError:
            return None, {}
    if not isinstance(info, dict):
        return None, {}
    target = info.get("target")
    name = target.get("name") if isinstance(target, dict) else target
    return (name if name in PRESETS else None), info.get("settings") or {}


def mismatch(target: str | None, settings: Mapping[str, Any], host: cpu.CpuKind | None = None) -> str | None:
    """One line when int8 figures computed on `host` are not what `target`'s kernels compute, else None."""
    host = host or cpu.host()
    if target is None or exact_everywhere(settings):
        return None
    if target == "gpu":  # each CPU preset is named for the family whose kernels it is for; gpu is TensorRT's
        return (f"this model is quantized for TensorRT (gpu); its int8 figures here come from the host CPU's kernels "
                f"({host.family}), not TensorRT's")
    if target == host.family:
        return None
    if host.family == "x86-avx2":
        return (f"this model is quantized for {target} (8-bit weights), but its int8 figures come from this "
                f"{host.family} host, whose kernels saturate where {target}'s do not: they are not the target's "
                "(verify on the device, or quantize with --target x86-avx2 for figures that hold everywhere)")
    if host.family == "other":
        return (f"this model is quantized for {target}, but its int8 figures come from this {host.family} host, "
                f"whose int8 kernels differ from {target}'s")
    return None  # VNNI and ARM both add int8 products exactly: the same integers


__all__ = ["ALIASES", "NAMES", "PRESETS", "Target", "exact_everywhere", "mismatch", "of_model", "resolve"]
