"""The portability issue's AVX2 machine verifying for a Pi: its own int8 figures beside the emulated Pi's.

`qemu-x86_64-static -cpu Haswell` runs `dlkit verify --device rpi4 --also-host` as an AVX2-only host (see
test_emulated_avx2.py); the emulated Pi it starts is `qemu-aarch64-static`, an x86-64 program that the kernel runs
natively (qemu-user does not follow execve), so the device's figures are the Cortex-A72's whoever the host is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import dlkit

pytestmark = [pytest.mark.emulated, pytest.mark.arm]
SAMPLES = 300  # enough to compare figures; the emulated AVX2 host runs the float reference too


def test_avx2_host_figures_are_shown_beside_the_pis_and_the_pis_are_judged(onnx_exports, mnist_npz, tmp_path):
    if sys.platform != "linux" or os.uname().machine != "x86_64" or not shutil.which("qemu-x86_64-static"):
        pytest.skip("needs an x86-64 Linux host with qemu-user-static")
    # 8-bit weights (the x86-vnni preset): exact on VNNI and ARM, saturating pair sums on AVX2
    int8 = tmp_path / "cnn.int8.onnx"
    dlkit.quantize(onnx_exports["cnn"], int8, calibration=mnist_npz["cnn", "calib"], target="x86-vnni")
    data = tmp_path / "test.npz"
    with np.load(mnist_npz["cnn", "eval"]) as archive:
        np.savez(data, pixels=archive["pixels"][:SAMPLES], y=archive["y"][:SAMPLES])
    cmd = ["qemu-x86_64-static", "-cpu", "Haswell", sys.executable, "-m", "dlkit", "verify", str(onnx_exports["cnn"]),
           str(int8), "--data", str(data), "--device", "rpi4", "--also-host", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.stdout, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    host, device = result["candidates"]
    assert result["host_cpu"]["family"] == "x86-avx2"
    assert (host["computed_on"]["cpu"]["family"], host["judged"], host["breaches"]) == ("x86-avx2", False, [])
    assert (device["computed_on"]["cpu"]["family"], device["judged"]) == ("arm64", True)
    # the host's figures say they are not the target's; the Pi's are (ARM adds int8 products exactly, as VNNI)
    assert host["warning"] and "saturate" in host["warning"] and device["warning"] is None
    assert result["passed"] == (not device["breaches"]) and proc.returncode == (0 if result["passed"] else 4)
    # and the Pi's figures are the Pi's whoever asks: the same run from this (unemulated) host gives them, up to the
    # float reference, which each host computes with its own float kernels (AVX2 or AVX-512: summation order,
    # within 1e-5 as everywhere in the suite); a near-tie in the reference may flip one sample's class at most
    here = dlkit.verify(onnx_exports["cnn"], [int8], data, device="rpi4")
    assert abs(here.candidates[0].outputs[0].max_abs_error - device["outputs"][0]["max_abs_error"]) <= 1e-5
    assert abs(here.candidates[0].outputs[0].top1_agreement - device["outputs"][0]["top1_agreement"]) <= 1 / SAMPLES
    print(f"\nAVX2 host mean abs error {host['outputs'][0]['mean_abs_error']:.3g}, "
          f"Pi 4 {device['outputs'][0]['mean_abs_error']:.3g}", end="")
