"""int8 on an AVX2-only x86-64 CPU: which type pairs keep accuracy, and what they cost.

onnxruntime's AVX2 int8 kernels (no VNNI) add pairs of u8 x s8 products in int16, which saturates with 8-bit weights.
This compares, for each sample MNIST model, the int8 settings dlkit used by default before it knew the host
("before": int8/int8 static, uint8/int8 dynamic, 8-bit weights: the x86-vnni preset) with the x86-avx2 preset that
is now the default on such CPUs (uint8 activations, 7-bit weights: reduce_range) and with U8U8 (uint8 weights):

- top-1 accuracy on the 10,000 MNIST test images, computed on an emulated Haswell (`qemu-x86_64-static -cpu
  Haswell`: AVX2, no AVX-512, no VNNI; onnxruntime's AVX2 kernels bit for bit), dynamic models at batch 1;
- instructions per inference at batch 1 and 32 on valgrind's CPU (valgrind presents a Haswell i7-4910MQ: onnxruntime
  takes the same AVX2 kernels), counted by callgrind inside the loop only (one thread). Instructions are not
  seconds, but for the same graph on the same kernels they rank the variants, and they repeat on any machine. No
  AVX2-only machine was at hand to time.

    python bench/int8_avx2.py            # writes bench/results/int8_avx2.json and .md (about 15 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODELS = {"mlp_digits": "mlp", "mlp_parity": "parity", "subclassed_mlp": "mlp", "cnn": "cnn", "subclassed_cnn": "cnn"}
VARIANTS = {
    "before": {"target": "x86-vnni"},
    "x86-avx2 (default now)": {"target": "x86-avx2"},
    "u8u8": {"target": "x86-vnni", "activation_type": "uint8", "weight_type": "uint8"},
}
RENAME = {"subclassed_mlp": ("output_0=digit",), "subclassed_cnn": ("output_0=digit",)}

# run inside the emulator / valgrind: numpy and onnxruntime only
_ACCURACY = r"""
import json, sys, numpy as np, onnxruntime as ort
path, data, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = np.load(data); x, y = d["pixels"], d["y"]
s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
scores = np.concatenate([s.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])
print(json.dumps(float((scores.argmax(-1) == y).mean())))
"""
# Each timed loop is bracketed by callgrind's client requests ZERO_STATS and DUMP_STATS (valgrind.h's magic
# instruction sequence for amd64, run from a page of executable memory), so each dump counts one loop alone.
_INSTRUCTIONS = r"""
import ctypes, mmap, sys, numpy as np, onnxruntime as ort
path, data, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
code = bytes([0x48, 0x89, 0xF8, 0x31, 0xD2,  # mov rax, rdi (the request block); xor edx, edx (the default)
              0x48, 0xC1, 0xC7, 0x03, 0x48, 0xC1, 0xC7, 0x0D, 0x48, 0xC1, 0xC7, 0x3D, 0x48, 0xC1, 0xC7, 0x33,
              0x48, 0x87, 0xDB,  # rol rdi 3, 13, 61, 51; xchg rbx, rbx: valgrind's client request
              0x48, 0x89, 0xD0, 0xC3])  # mov rax, rdx; ret
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(code)
request = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64))(
    ctypes.addressof(ctypes.c_char.from_buffer(page)))
def callgrind(offset):  # VG_USERREQ_TOOL_BASE('C', 'T') + offset: 0 DUMP_STATS, 1 ZERO_STATS
    request((ctypes.c_uint64 * 6)(0x43540000 + offset, 0, 0, 0, 0, 0))
o = ort.SessionOptions(); o.intra_op_num_threads = 1
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
x = np.load(data)["pixels"]
callgrind(1)  # a first bracket, thrown away: it carries one-off costs of the first request
s.run(None, {name: x[:1]})
callgrind(0)
for batch in (1, 32):
    feed = {name: x[:batch]}
    for n in (iters, 2 * iters):  # the difference of the two loops is iters inferences, without one-off costs
        callgrind(1)
        for _ in range(n):
            s.run(None, feed)
        callgrind(0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20, help="inferences per batch size under callgrind")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8_avx2")
    args = parser.parse_args()
    for tool in ("qemu-x86_64-static", "valgrind"):
        if shutil.which(tool) is None:
            sys.exit(f"int8_avx2: {tool} is missing: apt-get install qemu-user-static valgrind")
    import numpy as np

    import dlkit
    from dlkit_runtime import cpu
    from sample_models import architectures  # noqa: F401  (registers the subclassed models)
    from sample_models import datasets

    work = Path(tempfile.mkdtemp(prefix="int8_avx2-"))
    train, _ = datasets.load_mnist("train", shipped_only=True)
    test, labels = datasets.load_mnist("test", shipped_only=True)
    for kind, convert in (("cnn", datasets.as_cnn_input), ("mlp", datasets.as_mlp_input)):
        np.savez(work / f"{kind}_calib.npz", pixels=convert(train[:1000]))
        np.savez(work / f"{kind}_eval.npz", pixels=convert(test), y=labels)
    np.savez(work / "parity_eval.npz", pixels=datasets.as_mlp_input(test), y=labels % 2)

    rows = []
    for name, kind in MODELS.items():
        source = dlkit.export(ROOT / "sample_models" / "trained" / f"{name}.keras", work / f"{name}.onnx",
                              rename=RENAME.get(name, ())).path
        data = work / f"{kind}_eval.npz"
        calib = work / f"{'cnn' if kind == 'cnn' else 'mlp'}_calib.npz"
        float_acc = _emulated_accuracy(source, data, 256)
        for mode in (("static",) if kind == "cnn" else ("dynamic", "static")):
            for variant, options in VARIANTS.items():
                path = work / f"{name}.{mode}.{variant.split()[0]}.onnx"
                dlkit.quantize(source, path, mode=mode, calibration=calib if mode == "static" else None, force=True,
                               **options)
                acc = _emulated_accuracy(path, data, 1 if mode == "dynamic" else 256)
                ir = _instructions(path, data, args.iters)
                rows.append({"model": name, "mode": mode, "variant": variant, "float_accuracy": float_acc,
                             "int8_accuracy": acc, "drop_points": round(100 * (float_acc - acc), 3),
                             "instructions_batch1": ir[0], "instructions_batch32": ir[1]})
                print(json.dumps(rows[-1]), file=sys.stderr)
    result = {"host": cpu.host().to_dict(), "accuracy_on": "qemu-x86_64-static -cpu Haswell",
              "instructions_on": "valgrind --tool=callgrind (its CPU: Haswell i7-4910MQ, AVX2, no AVX-512/VNNI)",
              "iters": args.iters, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))
    shutil.rmtree(work, ignore_errors=True)


def _emulated_accuracy(path, data, batch) -> float:
    proc = subprocess.run(["qemu-x86_64-static", "-cpu", "Haswell", sys.executable, "-c", _ACCURACY, str(path),
                           str(data), str(batch)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _instructions(path, data, iters) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={out}", sys.executable, "-c",
                        _INSTRUCTIONS, str(path), str(data), str(iters)], capture_output=True, text=True, check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        totals = [int(re.search(r"^totals:\s*(\d+)", Path(f"{out}.{part}").read_text(), re.M).group(1))
                  for part in (2, 3, 4, 5)]  # batch 1: iters, 2 x iters; batch 32: the same
    return (totals[1] - totals[0]) // iters, (totals[3] - totals[2]) // iters


def _markdown(result) -> str:
    lines = [f"int8 on AVX2 (accuracy: {result['accuracy_on']}; instructions: {result['instructions_on']}; "
             f"quantized on {result['host']['family']} {result['host']['model']})", "",
             "| model | mode | settings | accuracy drop (pts) | instr./inference b1 | b32 | vs before b1 | b32 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    before = {(r["model"], r["mode"]): r for r in result["rows"] if r["variant"] == "before"}
    for r in result["rows"]:
        b = before[r["model"], r["mode"]]
        lines.append(f"| {r['model']} | {r['mode']} | {r['variant']} | {r['drop_points']:+.2f} | "
                     f"{r['instructions_batch1']:,} | {r['instructions_batch32']:,} | "
                     f"{r['instructions_batch1'] / b['instructions_batch1']:.3f}x | "
                     f"{r['instructions_batch32'] / b['instructions_batch32']:.3f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
