"""Which int8 kernels onnxruntime runs on this CPU, read the way onnxruntime reads it.

onnxruntime's MLAS picks its int8 GEMM kernels from the CPU's feature bits, and the kernels do not compute the
same numbers everywhere:

- `x86-vnni`: AVX-512 VNNI, AVX-VNNI or AMX (Intel Cascade Lake and later, Alder Lake, AMD Zen 4). `vpdpbusd`
  multiplies u8 x s8 and adds the products into int32: exact.
- `x86-avx2`: AVX2 (or AVX-512 without VNNI, or SSE4.1) only (Haswell to Skylake, AMD Zen 1-3). `vpmaddubsw` adds
  pairs of u8 x s8 products into int16, which saturates once a pair exceeds 32767 (255 x 127 x 2 = 64770 can):
  the same int8 file computes other, worse outputs here. 7-bit weights (`reduce_range`) keep every pair sum
  within int16 (255 x 63 x 2 = 32130).
- `arm64`: aarch64 (`sdot`/`udot` with the dot-product extension, as on Cortex-A76; `smull`/`sadalp` without, as
  on Cortex-A72): exact either way.

The x86 bits come from the CPUID instruction itself (a few bytes of machine code run through ctypes), not from
/proc/cpuinfo: under an emulator (`qemu-x86_64 -cpu Haswell`) /proc/cpuinfo is the host's, CPUID is what the
emulated program and onnxruntime see. aarch64 bits come from the kernel's hardware capabilities (getauxval).
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import platform
import sys
from dataclasses import asdict, dataclass

FAMILIES = ("x86-vnni", "x86-avx2", "arm64", "other")

# int32 pair sums that saturate? what a user needs to know about a family's int8 results
_KERNELS = {
    "x86-vnni": "exact int32 dot products (VNNI)",
    "x86-avx2": "u8 x s8 pair sums in int16 that saturate unless weights are 7-bit (reduce_range)",
    "arm64": "exact int32 dot products (NEON)",
    "other": "onnxruntime's portable int8 kernels",
}


@dataclass(frozen=True)
class CpuKind:
    """What the CPU is, as far as onnxruntime's int8 kernels are concerned.

    Attributes:
        family: "x86-vnni", "x86-avx2", "arm64" or "other": CPUs of one family compute the same int8 outputs.
        machine: `platform.machine()` ("x86_64", "aarch64").
        features: the feature names that decided it ("avx2", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp").
        model: the CPU's brand string when known ("AMD EPYC 7B13", "Raspberry Pi 5"), else "".
        source: where the features came from: "cpuid", "hwcap", "/proc/cpuinfo" or "none".
    """

    family: str
    machine: str
    features: tuple[str, ...]
    model: str = ""
    source: str = "cpuid"

    @property
    def int8_kernels(self) -> str:
        return _KERNELS[self.family]

    @property
    def description(self) -> str:
        """One line: `x86-avx2 (avx2; Intel Core Processor (Haswell))`."""
        detail = "; ".join(x for x in (" ".join(self.features) or "no int8 features", self.model) if x)
        return f"{self.family} ({detail})"

    def to_dict(self) -> dict:
        return {**asdict(self), "features": list(self.features), "int8_kernels": self.int8_kernels}

    @classmethod
    def from_dict(cls, data) -> "CpuKind":
        """The inverse of `to_dict` (another process's answer, e.g. an emulated device's)."""
        return cls(data["family"], data["machine"], tuple(data["features"]), data.get("model", ""),
                   data.get("source", "cpuid"))


@functools.lru_cache(maxsize=1)
def host() -> CpuKind:
    """The CPU this process runs on (cached: it does not change)."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return _x86(machine)
    if machine in ("aarch64", "arm64"):
        return _arm64(machine)
    return CpuKind("other", machine, (), platform.processor(), "none")


def _x86(machine: str) -> CpuKind:
    try:
        cpuid = _Cpuid()
    except (OSError, ValueError, AttributeError):  # no executable memory (a hardened kernel), or not Linux/macOS
        return _x86_from_proc(machine)
    max_leaf = cpuid(0)[0]
    leaf1 = cpuid(1)
    leaf7 = cpuid(7) if max_leaf >= 7 else (0, 0, 0, 0)
    leaf7_1 = cpuid(7, 1) if max_leaf >= 7 and leaf7[0] >= 1 else (0, 0, 0, 0)
    bits = {
        "sse4_1": leaf1[2] >> 19 & 1, "avx": leaf1[2] >> 28 & 1, "avx2": leaf7[1] >> 5 & 1,
        "avx512f": leaf7[1] >> 16 & 1, "avx512bw": leaf7[1] >> 30 & 1, "avx512_vnni": leaf7[2] >> 11 & 1,
        "amx_int8": leaf7[3] >> 25 & 1, "avx_vnni": leaf7_1[0] >> 4 & 1,
    }
    model = ""
    if cpuid(0x80000000)[0] >= 0x80000004:
        raw = b"".join(r.to_bytes(4, "little") for leaf in (0x80000002, 0x80000003, 0x80000004) for r in cpuid(leaf))
        model = " ".join(raw.split(b"\0", 1)[0].decode("ascii", "replace").split())
    return _x86_kind(machine, {name for name, bit in bits.items() if bit}, model, "cpuid")


def _x86_kind(machine: str, flags: set[str], model: str, source: str) -> CpuKind:
    vnni = [f for f in ("amx_int8", "avx512_vnni", "avx_vnni") if f in flags]
    if vnni:
        return CpuKind("x86-vnni", machine, tuple(vnni), model, source)
    simd = [f for f in ("avx512bw", "avx2", "sse4_1") if f in flags][:1]
    return CpuKind("x86-avx2" if simd else "other", machine, tuple(simd), model, source)


def _x86_from_proc(machine: str) -> CpuKind:
    text = _read("/proc/cpuinfo")
    flags = set(_field(text, "flags").split())
    return _x86_kind(machine, flags, _field(text, "model name"), "/proc/cpuinfo" if flags else "none")


def _arm64(machine: str) -> CpuKind:
    features: tuple[str, ...] = ()
    source = "none"
    try:  # the kernel's hardware capabilities: what qemu-aarch64 -cpu ... emulates, on a real Pi what it has
        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        hwcap, hwcap2 = libc.getauxval(16), libc.getauxval(26)  # AT_HWCAP, AT_HWCAP2
        features = tuple(name for name, on in (("asimddp", hwcap >> 20 & 1), ("i8mm", hwcap2 >> 13 & 1)) if on)
        source = "hwcap"
    except (OSError, AttributeError):
        text = _read("/proc/cpuinfo")
        features = tuple(f for f in ("asimddp", "i8mm") if f in _field(text, "Features").split())
        source = "/proc/cpuinfo" if text else "none"
    text = _read("/proc/cpuinfo")
    model = _field(text, "Model") or _read("/proc/device-tree/model").strip("\0\n ")
    return CpuKind("arm64", machine, features, model, source)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _field(text: str, name: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


class _Cpuid:
    """`cpuid(leaf, subleaf) -> (eax, ebx, ecx, edx)`: the x86-64 instruction in a page of executable memory.

    The System V (Linux, macOS) calling convention: leaf in edi, subleaf in esi, the output array in rdx.
    """

    _CODE = bytes([
        0x53,                    # push rbx          (callee-saved, cpuid writes it)
        0x49, 0x89, 0xD0,        # mov r8, rdx       (the output array)
        0x89, 0xF8,              # mov eax, edi      (leaf)
        0x89, 0xF1,              # mov ecx, esi      (subleaf)
        0x0F, 0xA2,              # cpuid
        0x41, 0x89, 0x00,        # mov [r8], eax
        0x41, 0x89, 0x58, 0x04,  # mov [r8 + 4], ebx
        0x41, 0x89, 0x48, 0x08,  # mov [r8 + 8], ecx
        0x41, 0x89, 0x50, 0x0C,  # mov [r8 + 12], edx
        0x5B,                    # pop rbx
        0xC3,                    # ret
    ])

    def __init__(self):
        if sys.platform == "win32":
            raise OSError("CPUID through mmap needs a System V platform")
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(self._CODE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        self._call = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))(address)

    def __call__(self, leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
        out = (ctypes.c_uint32 * 4)()
        self._call(leaf, subleaf, out)
        return tuple(out)


__all__ = ["FAMILIES", "CpuKind", "host"]
