"""The one catalogue of where dlkit's models run: the devices (a bundle's targets and the emulated Pis), the int8
presets their kernels want, and the wheels a bundle pins. Every list of device names, CLI choice, bundle target,
emulated CPU and int8 alias is derived from here: a new device is one entry below.

int8 presets: onnxruntime's int8 kernels differ by CPU family (`dlkit_runtime.cpu`). VNNI and ARM add int8 products
exactly; x86 without VNNI adds pairs of u8 x s8 products in int16 and saturates, so its preset uses 7-bit weights
(`reduce_range`), with which every family computes the same integers (`core/targets.py`).

Every CPU preset takes uint8 activations and int8 weights. onnxruntime's QDQ fusion accepts int8 activations only on
ARM: on x86 its S8-to-U8 rewrite skips a tensor read by two DequantizeLinear nodes (each residual of a MobileNet),
so those convolutions and Adds ran in float between QDQ pairs, wrapped in layout Transposes, and the host's graph was
not the Pi's (onnxruntime's qdq_selector_action_transformer.h, qdq_s8_to_u8.cc). With uint8 activations every
QLinearConv and QLinearAdd fuses on both, the host runs the graph the Pi runs, and int8 is faster than float.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

# The int8 presets: onnxruntime's recommended (activation, weight) types and options per kernel family.
X86_VNNI, X86_AVX2, ARM64, GPU = "x86-vnni", "x86-avx2", "arm64", "gpu"
PRESETS = {
    X86_VNNI: {"activation_type": "uint8", "weight_type": "int8", "reduce_range": False, "symmetric": False},
    X86_AVX2: {"activation_type": "uint8", "weight_type": "int8", "reduce_range": True, "symmetric": False},
    ARM64: {"activation_type": "uint8", "weight_type": "int8", "reduce_range": False, "symmetric": False},
    GPU: {"activation_type": "int8", "weight_type": "int8", "reduce_range": False, "symmetric": True},
}
PRESET_REASONS = {
    X86_VNNI: "uint8 activations and int8 weights: VNNI adds u8 x s8 products exactly, and every convolution fuses",
    X86_AVX2: "uint8 activations and 7-bit weights (reduce_range): AVX2 adds u8 x s8 pairs in int16, which "
              "saturate with 8-bit weights",
    ARM64: "uint8 activations and int8 weights: ARM's NEON kernels add the products exactly, as VNNI does",
    GPU: "symmetric int8 for TensorRT",
}
PORTABLE_PRESET = X86_AVX2  # exact on every CPU family: the preset for an x86 CPU of unknown kind

# Versions with cp311 and cp313 wheels for manylinux aarch64 and x86-64 (checked with `pip download --only-binary=:all:
# --python-version 3.11|3.13 --platform manylinux_2_28_aarch64|x86_64`), so one bundle installs on bookworm and
# trixie. onnxruntime must be >= 1.22: the 1.21.0 aarch64 wheel crashes on a Pi 4 with an illegal instruction.
# tests/arm installs exactly these under emulation, on every OS below, and runs them on every emulated core.
REQUIREMENTS = ("numpy==2.4.6", "onnxruntime==1.32.0")
IMAGE_REQUIREMENTS = ("pillow==13.0.0",)  # for a model that takes images: JPEG and any PNG (aarch64 + x86-64 wheels)
# a bundle made with serve=True: uvicorn and starlette (pure Python), uvicorn's fast HTTP parser and event loop, and
# orjson for the tensors' JSON (cp311 and cp313 wheels for manylinux aarch64 and x86-64)
SERVE_REQUIREMENTS = ("uvicorn==0.54.0", "starlette==1.10.0", "httptools==0.9.0", "uvloop==0.23.0", "orjson==3.13.0")


@dataclass(frozen=True)
class OperatingSystem:
    """A userland a device runs: Raspberry Pi OS is Debian's arm64 packages plus the Pi's kernel and firmware, so
    the emulated device is built from that Debian release's packages.

    Attributes:
        name: what users type (a device name's suffix: `rpi5-bookworm`). description: in words. suite: its Debian
        release. python: the version of its `python3`.
    """

    name: str
    description: str
    suite: str
    python: str

    @property
    def abi(self) -> str:
        """pip's tag for its CPython ("cp313")."""
        return "cp" + self.python.replace(".", "")

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "debian": self.suite, "python": self.python}


# Raspberry Pi OS moved to Debian 13 trixie on 2025-10-01: a Pi flashed today runs Python 3.13 (glibc 2.41).
_SYSTEMS = (
    OperatingSystem("trixie", "Raspberry Pi OS trixie (Debian 13)", "trixie", "3.13"),
    OperatingSystem("bookworm", "Raspberry Pi OS bookworm (Debian 12)", "bookworm", "3.11"),
)
SYSTEMS: dict[str, OperatingSystem] = {s.name: s for s in _SYSTEMS}
OS_DEFAULT = _SYSTEMS[0].name  # what an emulated device runs unless its name says otherwise
# the oldest Python a bundle's pinned wheels are tested with
PYTHON_FLOOR = min((s.python for s in _SYSTEMS), key=lambda v: tuple(map(int, v.split("."))))


@dataclass(frozen=True)
class Device:
    """A device dlkit ships to.

    Attributes:
        name: what users type (`--target`, `--device`). description: the bundle's words for it. machine: its
        `uname -m`. threads: a bundle's default intra-op threads (0: the device's physical cores). dot_product: it
        has int8 dot-product instructions (None: depends on the CPU). advice: the bundle README's advice. preset:
        the int8 preset its kernels want. cpu: qemu's CPU model when it can be emulated here, else None.
        cpu_description: the emulated CPU in words. cpuinfo: the fields of its /proc/cpuinfo under emulation.
        os: the userland it runs emulated (`SYSTEMS`), None where it is not emulated. memory_bytes: its RAM, where
        one model fixes it. memory_budget_bytes: what a model may take at run time before the bundle warns.
    """

    name: str
    description: str
    machine: str
    threads: int
    dot_product: bool | None
    advice: str
    preset: str
    cpu: str | None = None
    cpu_description: str = ""
    cpuinfo: Mapping[str, Any] | None = None
    os: str | None = None
    memory_bytes: int | None = None
    memory_budget_bytes: int | None = None

    @property
    def system(self) -> OperatingSystem | None:
        """The `OperatingSystem` it runs emulated."""
        return SYSTEMS.get(self.os) if self.os else None

    def to_dict(self) -> dict:
        """The emulated device as `dlkit device list` and `DeviceSetupResult` show it."""
        return {"name": self.name, "cpu": self.cpu, "description": self.cpu_description,
                "os": self.system.to_dict() if self.system else None}


_MB = 1024 * 1024
_DEVICES = (
    Device("rpi4", "Raspberry Pi 4 (Cortex-A72, 64-bit Raspberry Pi OS trixie or bookworm)", "aarch64", 4, False,
           "The Cortex-A72 has no dot-product instructions (no `asimddp`), so an int8 model may be no faster than "
           "float here: run `.venv/bin/python bench.py` and use the faster file. Four threads use every core; "
           "pass --threads 3 to keep one free for the rest of the system.",
           ARM64, "cortex-a72", "Raspberry Pi 4 (Cortex-A72: NEON, no dot-product instructions)",
           dict(part="0xd08", variant="0x0", revision="3", features="fp asimd evtstrm crc32 cpuid",
                model="Raspberry Pi 4 Model B Rev 1.4", hardware="BCM2835", code="d03114"), OS_DEFAULT),
    Device("rpi5", "Raspberry Pi 5 (Cortex-A76, 64-bit Raspberry Pi OS trixie or bookworm)", "aarch64", 4, True,
           "The Cortex-A76 has dot-product instructions: int8 models usually run faster than float here. Four "
           "threads use every core.",
           ARM64, "cortex-a76", "Raspberry Pi 5 (Cortex-A76: NEON with dot-product instructions)",
           dict(part="0xd0b", variant="0x4", revision="1",
                features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                         "asimddp",
                model="Raspberry Pi 5 Model B Rev 1.0", hardware="BCM2712", code="d04170"), OS_DEFAULT),
    Device("rpi-zero2", "Raspberry Pi Zero 2 W (Cortex-A53, 512 MB, 64-bit Raspberry Pi OS Lite trixie or bookworm)",
           "aarch64", 4, False,
           "The Zero 2 W has 512 MB of memory, about 400 MB free under Raspberry Pi OS Lite: keep the model's peak "
           "(`manifest.json`'s `memory`) under 200 MB, run one model at a time, and leave the desktop off. Its "
           "in-order Cortex-A53 has no dot-product instructions, so int8 saves memory and load time more than "
           "compute: run `.venv/bin/python bench.py` and use the faster file. Four threads use every core; pass "
           "--threads 3 to keep one free for the rest of the system.",
           ARM64, "cortex-a53", "Raspberry Pi Zero 2 W (Cortex-A53: in-order, NEON, no dot-product instructions)",
           dict(part="0xd03", variant="0x0", revision="4", features="fp asimd evtstrm crc32 cpuid",
                model="Raspberry Pi Zero 2 W Rev 1.0", hardware="BCM2835", code="902120"), OS_DEFAULT,
           memory_bytes=512 * _MB, memory_budget_bytes=200 * _MB),
    Device("aarch64", "a 64-bit ARM Linux machine with Python 3.11 or newer", "aarch64", 0, None,
           "Threads default to the physical cores. Whether int8 beats float depends on the CPU's dot-product "
           "support (`grep asimddp /proc/cpuinfo`): measure with `.venv/bin/python bench.py`.",
           ARM64, "neoverse-n1", "a 64-bit ARM server (Neoverse N1, as AWS Graviton2 and Ampere Altra)",
           dict(part="0xd0c", variant="0x3", revision="1",
                features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                         "asimddp ssbs", model=None, hardware=None, code=None), OS_DEFAULT),
    Device("x86_64", "an x86-64 Linux machine with Python 3.11 or newer", "x86_64", 0, None,
           "Threads default to the physical cores. int8 is usually faster than float on CPUs with AVX-512 VNNI or "
           "AVX-VNNI; measure with `.venv/bin/python bench.py`.",
           X86_AVX2),
)

DEVICES: dict[str, Device] = {d.name: d for d in _DEVICES}  # every bundle target
# those `dlkit.device` emulates here: each on the default OS under its own name, and on every other OS as
# `<name>-<os>` (rpi5-bookworm)
EMULATED: dict[str, Device] = {d.name: d for d in _DEVICES if d.cpu} | {
    f"{d.name}-{s.name}": replace(d, name=f"{d.name}-{s.name}", os=s.name)
    for d in _DEVICES if d.cpu for s in _SYSTEMS if s.name != d.os}
ALIASES = {d.name: d.preset for d in _DEVICES}  # a device's name given as an int8 target
CPUINFO = {d.cpu: dict(d.cpuinfo or {}) for d in _DEVICES if d.cpu}  # qemu's -cpu name -> its /proc/cpuinfo fields
BUNDLE_DEFAULT = "rpi4"  # `dlkit bundle`'s default target
DEMO_DEFAULT = "rpi5"  # the demo's bundle: the Pi people buy today


def device_names() -> tuple[str, ...]:
    """Every device a bundle targets, in catalogue order."""
    return tuple(DEVICES)


def emulated_names() -> tuple[str, ...]:
    """The devices `--device` runs on (emulated here), each OS variant included."""
    return tuple(EMULATED)
