"""quantize judges as verify judges: the same figures (top-1 agreement, relative output error, accuracy drop), the
same default thresholds (`dlkit.core.judging`), and an accuracy drop on few labelled samples shown with its 95%
interval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import dlkit
from dlkit.cli import cli
from dlkit.core import judging
from dlkit.quantization.evaluation import Top1
from dlkit.quantization.judgement import judge
from dlkit.quantization.measurement import Measurement
from dlkit.quantization.sources import CheckSamples


def test_paired_interval_matches_newcombe():
    # Newcombe (1998), Statistics in Medicine 17: 2635-2650, Table II: 36 pairs both right, 12 right only before,
    # 2 right only after, 0 neither; method 10 gives 0.0569 to 0.3404 for the difference 0.2
    low, high = judging.paired_drop_interval(36, 12, 2, 0)
    assert (low, high) == pytest.approx((0.0569, 0.3404), abs=5e-5)
    # no sample changed class among 300: the drop is 0, yet not known to better than about a point either way
    low, high = judging.paired_drop_interval(297, 0, 0, 3)
    assert low < 0 < high and 0.005 < high < 0.02 and low == pytest.approx(-high)


def _measured(agreement, top1):
    return Measurement(None, (), 0.01, agreement, top1, None, 0.0, None)


def test_below_verify_thresholds_is_one_warning_line():
    top1 = Top1(0.99, 0.97, 300, judging.paired_drop_interval(290, 7, 1, 2))
    verdict = judge(_measured(0.98, top1), CheckSamples({"x": np.zeros((300, 1))}, "eval.npz (eval data)", 0))
    assert verdict.passed is False and len(verdict.warnings) == 2
    small, below = verdict.warnings
    assert "only 300 labelled samples" in small and "95% interval" in small
    assert "top-1 agreement 0.9800" in below and "below 0.99" in below and "accuracy drop 2.00 points" in below
    assert all("\n" not in w for w in verdict.warnings)


def test_random_check_samples_are_not_judged():
    verdict = judge(_measured(0.5, None), CheckSamples({"x": np.zeros((16, 1))}, "random", 0))
    assert verdict.passed is None and verdict.warnings == ()


def test_quantize_and_verify_judge_alike_on_few_samples(onnx_exports, mnist_npz, tmp_path):
    data = np.load(mnist_npz["cnn", "eval"])
    few = tmp_path / "few.npz"
    np.savez(few, pixels=data["pixels"][:300], y=data["y"][:300])
    out = tmp_path / "cnn.int8.onnx"
    args = ["quantize", str(onnx_exports["cnn"]), "-o", str(out), "--calibration", str(mnist_npz["cnn", "calib"]),
            "--eval-data", str(few)]
    run = CliRunner().invoke(cli, args + ["--json"])
    assert run.exit_code == 0, run.output
    result = json.loads(run.stdout)
    assert result["thresholds"] == {"min_agreement": judging.MIN_AGREEMENT,
                                    "max_accuracy_drop": judging.MAX_ACCURACY_DROP}
    assert result["accuracy_samples"] == 300 and result["num_samples"] == 300 and result["passed"] is True
    low, high = result["accuracy_drop_interval"]
    assert low <= result["accuracy_drop"] <= high and high - low > 0.005  # 300 samples: about a point either way
    # one warning line, once: the sample is small
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "only 300 labelled samples" in warnings[0] and ".py" not in warnings[0]
    # verify, with its defaults, on the same data: the same figures and the same verdict
    verified = dlkit.verify(onnx_exports["cnn"], [out], few)
    figures = verified.candidates[0].outputs[0]
    assert verified.passed is result["passed"]
    assert figures.top1_agreement == pytest.approx(result["top1_agreement"])
    assert figures.relative_error == pytest.approx(result["output_error"], rel=1e-3)
    assert figures.accuracy_drop == pytest.approx(result["accuracy_drop"])
    assert verified.thresholds["min_agreement"] == result["thresholds"]["min_agreement"]
    # the text: the interval beside the drop, the agreement beside the error, verify's verdict
    run = CliRunner().invoke(cli, args + ["--force"])
    assert run.exit_code == 0, run.output
    assert "points (95% interval " in run.stdout and ", 300 samples)" in run.stdout
    assert "top-1 agreement 1.0000:" in run.stdout or "top-1 agreement 0.99" in run.stdout
    assert "judged as dlkit verify judges: top-1 agreement " in run.stdout and " >= 0.99, accuracy drop " in run.stdout
    assert " <= 0.01: passed" in run.stdout


def test_many_labelled_samples_need_no_interval(onnx_exports, mnist_npz, tmp_path):
    result = dlkit.quantize(onnx_exports["cnn"], tmp_path / "q.onnx", calibration=mnist_npz["cnn", "calib"],
                            eval_data=mnist_npz["cnn", "eval"])
    assert result.accuracy_samples == 10000 and result.passed is True and result.warnings == ()
    low, high = result.accuracy_drop_interval
    assert high - low < 0.005  # 10k samples: a few tenths of a point
