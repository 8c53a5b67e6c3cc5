"""Instructions per inference on the emulated Pis (`dlkit.device.count_instructions`): a TCG plugin in qemu-user
counts the guest instructions between the markers the emulated process emits around the counted runs.

The sample CNN is small (about 1.7 million instructions per float inference at batch 1), so each count is one
emulated process of about 5 s, nearly all of it Python's and onnxruntime's start-up, which the markers exclude.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlkit
from dlkit.core.catalogue import REQUIREMENTS
from dlkit.device import Workload, count_instructions, count_many

pytestmark = pytest.mark.arm

# Counting runs=2 and runs=4 gives per-inference figures this close: what differs is the markers' own cost (a failed
# lseek and its OSError in Python, about 7,000 instructions, spread over 2 or 4 runs: 0.2% of a CNN inference at
# most) and onnxruntime's allocation paths, which vary a little from run to run. Start-up (hundreds of millions of
# instructions) or a warm-up run (first-run allocations) leaking into the span would differ by far more.
RUNS_RTOL = 0.01
# The same call twice: qemu runs the same guest code on the same inputs, so the counts repeat; the only freedom left
# is where the host maps memory (buffer alignment can pick another loop prologue), a few hundred instructions.
REPEAT_RTOL = 0.001
# int8 for the Pi 5 against float on its Cortex-A76: onnxruntime's int8 convolutions and matrix products use UDOT,
# 16 multiply-adds per instruction against 4 for a float FMLA (four int8 products per 32-bit lane), so their inner
# loops need about 4x fewer instructions; a few-channel first convolution stays float and every int8 op adds
# (re)quantization, so int8 must come in at three quarters of float or less (measured: about 0.45).
INT8_OVER_FLOAT_MAX = 0.75


@pytest.fixture(scope="module")
def cnn_files(arm_env, onnx_exports, mnist_npz, tmp_path_factory) -> dict[str, Path]:
    """The sample CNN float (its export) and static int8 quantized for the Pi 5 (`target="rpi5"`)."""
    int8 = tmp_path_factory.mktemp("work") / "cnn.rpi5.int8.onnx"
    dlkit.quantize(onnx_exports["cnn"], int8, calibration=mnist_npz["cnn", "calib"], target="rpi5")
    return {"float": Path(onnx_exports["cnn"]), "int8": int8}


@pytest.fixture(scope="module")
def digit(mnist_test) -> np.ndarray:
    from sample_models import datasets

    images, _ = mnist_test
    return datasets.as_cnn_input(images[:1])


def test_the_count_excludes_start_up(cnn_files, digit):
    two = count_instructions("rpi4", cnn_files["float"], digit, runs=2, warmup=1)
    four = count_instructions("rpi4", cnn_files["float"], digit, runs=4, warmup=1)
    assert (two.runs, four.runs, two.cpu, two.batch) == (2, 4, "cortex-a72", 1)
    assert two.instructions_per_inference == pytest.approx(two.instructions / 2)
    assert 1e5 < two.instructions_per_inference < 1e8, two  # a small CNN: millions, not Python's start-up
    assert four.instructions_per_inference == pytest.approx(two.instructions_per_inference, rel=RUNS_RTOL)


def test_the_same_call_gives_the_same_count(cnn_files, digit):
    first = count_instructions("rpi5", cnn_files["float"], digit, runs=2, warmup=1)
    again = count_instructions("rpi5", cnn_files["float"], digit, runs=2, warmup=1)
    assert again.instructions_per_inference == pytest.approx(first.instructions_per_inference, rel=REPEAT_RTOL)
    assert f"onnxruntime=={first.onnxruntime}" in REQUIREMENTS  # the wheel a bundle pins, as the Pi runs it
    assert first.qemu.startswith("qemu-aarch64 version"), first.qemu


def test_int8_for_the_pi5_executes_fewer_instructions_than_float(cnn_files, digit):
    float_count, int8_count, bare = count_many("rpi5", [
        Workload(cnn_files["float"], digit), Workload(cnn_files["int8"], digit),
        Workload(cnn_files["int8"], {"pixels": digit}, runner="onnxruntime")], runs=2, warmup=1)
    ratio = int8_count.instructions_per_inference / float_count.instructions_per_inference
    assert ratio <= INT8_OVER_FLOAT_MAX, (int8_count, float_count)
    # a bare InferenceSession runs the same kernels: within the runtime's few input checks of dlkit's count
    assert bare.runner == "onnxruntime"
    assert bare.instructions_per_inference == pytest.approx(int8_count.instructions_per_inference, rel=0.05)


def test_quantize_counts_whether_int8_pays_on_the_pi(arm_env, onnx_exports, tmp_path):
    """`quantize --device rpi5` counts the int8 file against the float one on the emulated Cortex-A76 and says
    when int8 is more work. The sample MLP (784-128-10, dynamic int8 without calibration data) at batch 1 is about
    100k multiply-adds: dynamic int8 adds a scan of the input for its range, its quantization and a requantization
    per layer, which cost more than the float matrix products save (the Pi race issue counted 67k float against
    77k int8 instructions), so int8 does not pay there, and the warning says to deploy the float file."""
    result = dlkit.quantize(onnx_exports["mlp_digits"], tmp_path / "mlp.int8.onnx", target="rpi5", device="rpi5")
    payoff = result.payoff
    assert payoff["where"] == "rpi5 (emulated cortex-a76)" and payoff["unit"] == "instructions"
    assert payoff["batch"] == 1 and payoff["int8_cost"] > payoff["float_cost"] > 1e4 and payoff["pays"] is False
    assert any(w.startswith("int8 does not pay on rpi5") and "deploy the float model" in w for w in result.warnings)
    # a Pi 5 bundle of both files runs the float one by default (its manifest's first model), and says why;
    # a Pi 4 bundle does not: the count is the A76's, not the A72's
    with pytest.warns(UserWarning, match="is this bundle's default"):
        pi5 = dlkit.bundle(result.path, tmp_path / "pi5", target="rpi5", float_model=onnx_exports["mlp_digits"])
    assert [m["precision"] for m in pi5.models] == ["float32", "int8"]
    with pytest.warns(UserWarning, match="no dot-product"):  # the A72's own advice, not the payoff's
        pi4 = dlkit.bundle(result.path, tmp_path / "pi4", target="rpi4", float_model=onnx_exports["mlp_digits"])
    assert [m["precision"] for m in pi4.models] == ["int8", "float32"]
