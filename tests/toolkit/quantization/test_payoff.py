"""Whether int8 pays where it will run (`dlkit.quantization.payoff`): measured against the float model on the
target's own kernels, recorded in the result and the file's metadata, and said in one line.

Timings are never asserted here (they depend on the machine and its load): what is asserted is what was measured,
where, at which batch, and what the verdict means; the instruction counts on the emulated Pis are (tests/arm).
"""

from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner

import dlkit
from dlkit.cli import cli
from dlkit.quantization.payoff import TIME_NOISE, Payoff
from dlkit_runtime import cpu


def test_host_payoff_is_timed_at_the_deploy_batch_and_stamped(onnx_exports, mnist_npz, tmp_path):
    out = tmp_path / "cnn.int8.onnx"
    result = dlkit.quantize(onnx_exports["cnn"], out, calibration=mnist_npz["cnn", "calib"], deploy_batch_size=4)
    payoff = result.payoff
    assert payoff["where"] == f"host ({cpu.host().family})" and payoff["unit"] == "ms" and payoff["batch"] == 4
    assert payoff["float_cost"] > 0 and payoff["int8_cost"] > 0
    assert payoff["ratio"] == pytest.approx(payoff["int8_cost"] / payoff["float_cost"], rel=1e-3)
    # the verdict follows the ratio with the noise band between "pays" and "does not pay"
    expected = True if payoff["ratio"] < 1 - TIME_NOISE else False if payoff["ratio"] > 1 + TIME_NOISE else None
    assert payoff["pays"] is expected
    assert (any("does not pay" in w for w in result.warnings)) == (payoff["pays"] is False)
    stamped = json.loads({p.key: p.value for p in onnx.load(out).metadata_props}["dlkit.quantization"])
    assert stamped["payoff"] == payoff


def test_no_payoff_when_asked_or_when_the_kernels_are_elsewhere(onnx_exports, mnist_npz, tmp_path):
    calib = mnist_npz["cnn", "calib"]
    off = dlkit.quantize(onnx_exports["cnn"], tmp_path / "a.onnx", calibration=calib, payoff=False)
    assert off.payoff is None and off.payoff_note == ""
    pi = dlkit.quantize(onnx_exports["cnn"], tmp_path / "b.onnx", calibration=calib, target="rpi4")
    assert pi.payoff is None and "pass --device rpi4" in pi.payoff_note  # host timings are not a Pi's
    fp16 = dlkit.quantize(onnx_exports["cnn"], tmp_path / "c.onnx", mode="fp16")
    assert fp16.payoff is None and fp16.payoff_note == ""


def test_the_cli_says_what_int8_costs(onnx_exports, mnist_npz, tmp_path):
    args = ["quantize", str(onnx_exports["cnn"]), "-o", str(tmp_path / "q.onnx"),
            "--calibration", str(mnist_npz["cnn", "calib"])]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    lines = [line for line in run.output.splitlines() if f"on host ({cpu.host().family}): " in line]
    assert len(lines) == 1 and "at batch 1 (" in lines[0] and "p50, one thread" in lines[0], run.output
    off = CliRunner().invoke(cli, args + ["--no-payoff", "--force", "--json"])
    assert off.exit_code == 0 and json.loads(off.stdout)["payoff"] is None


def test_payoff_lines_read_as_what_they_measure():
    timed = Payoff("host (x86-vnni)", "ms", 1, 0.5, 0.6, False)
    assert timed.describe() == ("int8 does not pay on host (x86-vnni): 0.600 ms against float's 0.500 ms at batch 1 "
                                "(1.20x, p50, one thread)")
    counted = Payoff("rpi5 (emulated cortex-a76)", "instructions", 1, 14.87e6, 6.49e6, True)
    assert counted.describe().startswith("int8 pays on rpi5 (emulated cortex-a76): 6.49M instructions against "
                                         "float's 14.87M instructions at batch 1 (0.44x")
    assert counted.to_dict()["ratio"] == pytest.approx(0.4364, abs=1e-4)
