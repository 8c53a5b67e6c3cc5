"""`--device rpi4|rpi5|rpi-zero2`, on Raspberry Pi OS trixie's Python 3.13 (the default): dlkit's figures computed on the emulated Pi agree with what the bundle's own predict.py
prints on the same emulated CPU.

Both sides run the same aarch64 onnxruntime and numpy wheels and the same `dlkit_runtime` under
`qemu-aarch64-static -cpu cortex-a72|cortex-a76`, one through `dlkit_runtime.pipe` (one process for a verify run),
the other as a user runs a bundle (one process per input file). So:

- int8 outputs must be bit-identical: integer kernels chosen by the same CPU features give the same integers, and
  the batch a static int8 model runs in does not change its arithmetic;
- float outputs may differ only by the summation order of a different batch split between the two runs (verify
  feeds 256 samples at a time, predict.py the file whole): within the issue's 1e-5 (see FLOAT_ATOL).

Every figure verify reports is then recomputed from predict.py's outputs, and must be equal (int8) or within the
float bound (float).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import dlkit

pytestmark = pytest.mark.arm

FLOAT_ATOL = 1e-5  # the same float graph on the same CPU; only the batch split (summation order) may differ
DEVICES = {"rpi4": "cortex-a72", "rpi5": "cortex-a76", "rpi-zero2": "cortex-a53"}
MNIST_COUNT = 10_000  # the "all 10,000 MNIST test images", for int8 (about 45 s a run emulated)
# The float CNN runs at about 55 samples a second emulated: 10,000 images, verify and predict.py, would take 6
# minutes per CPU, so CI compares 500 (the same code path, fewer batches); DLKIT_TEST_FLOAT_SAMPLES=10000 runs all.
FLOAT_COUNT = int(os.environ.get("DLKIT_TEST_FLOAT_SAMPLES", "500"))
# The Zero 2 W's Cortex-A53 takes the same NEON int8 kernels as the Pi 4's A72 (no dot product), proven on all 10,000
# above; 2,000 images keep the suite's time (DLKIT_TEST_ZERO2_SAMPLES=10000 runs all).
ZERO2_COUNT = int(os.environ.get("DLKIT_TEST_ZERO2_SAMPLES", "2000"))


@pytest.fixture(scope="module")
def device_cases(arm_env, onnx_exports, mnist_npz, mnist_test, tmp_path_factory):
    """The sample CNN float and int8 (quantized for the Pi: arm64) bundled for each Pi, and the test set as files."""
    from sample_models import datasets

    folder = tmp_path_factory.mktemp("device")
    int8 = folder / "cnn.int8.onnx"
    dlkit.quantize(onnx_exports["cnn"], int8, calibration=mnist_npz["cnn", "calib"], target="rpi4")
    images, labels = mnist_test
    pixels = datasets.as_cnn_input(images[:MNIST_COUNT])
    np.save(folder / "pixels.npy", pixels)
    np.savez(folder / "mnist.npz", pixels=pixels, y=labels[:MNIST_COUNT])
    bundles = {}
    for device in DEVICES:
        for name, model in (("cnn_float", onnx_exports["cnn"]), ("cnn_int8", int8)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # rpi4's int8 advice (no dot product), tested elsewhere
                dlkit.bundle(model, folder / f"{name}_{device}", target=device)
            bundles[name, device] = folder / f"{name}_{device}"
    return {"folder": folder, "float": onnx_exports["cnn"], "int8": int8, "bundles": bundles, "labels": labels}


def _predict_py(arm_env, bundle, inputs, cpu) -> dict[str, np.ndarray]:
    proc = arm_env.run([bundle / "predict.py", inputs, "--top-k", "1"], cpu, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {k: np.array(v["values"], dtype=v["dtype"]) for k, v in json.loads(proc.stdout)["outputs"].items()}


def _figures(reference: np.ndarray, got: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """verify's headline figures, recomputed: max abs error, top-1 agreement, the candidate's accuracy."""
    return {"max_abs_error": float(np.max(np.abs(got.astype(np.float64) - reference))),
            "top1_agreement": float(np.mean(got.argmax(1) == reference.argmax(1))),
            "candidate_accuracy": float(np.mean(got.argmax(1) == labels))}


@pytest.mark.parametrize("kind", ["int8", "float"])
@pytest.mark.parametrize("device", list(DEVICES))
def test_verify_on_device_equals_the_bundle_on_that_cpu(arm_env, device_cases, device, kind, tmp_path):
    """dlkit verify --device against the bundle's predict.py on the same images and CPU, figure by figure; the
    JSON and the HTML report say where each figure came from."""
    from dlkit_runtime import Model

    cases, cpu = device_cases, DEVICES[device]
    count = (MNIST_COUNT if device != "rpi-zero2" else ZERO2_COUNT) if kind == "int8" else FLOAT_COUNT
    report = tmp_path / "report.html"
    out = subprocess.run([sys.executable, "-m", "dlkit", "verify", str(cases["float"]), str(cases[kind]),
                          "--data", str(cases["folder"] / "mnist.npz"), "--max-samples", str(count),
                          "--device", device, "--report", str(report), "--json"],
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["num_samples"] == count and result["passed"]
    assert result["device"]["device"] == device and result["device"]["cpu"]["family"] == "arm64"
    candidate = result["candidates"][0]
    assert candidate["computed_on"]["device"] == device and candidate["computed_on"]["cpu_model"] == cpu
    assert candidate["computed_on"]["onnxruntime"]["version"] == result["device"]["onnxruntime"]["version"]
    assert candidate["judged"] and candidate["where"] == f"{device} (emulated {cpu})"
    assert candidate["computed_on"]["os_name"] == "trixie" and candidate["computed_on"]["python"].startswith("3.13")
    inputs = tmp_path / "pixels.npy"
    np.save(inputs, np.load(cases["folder"] / "pixels.npy")[:count])
    reference = Model(cases["float"]).predict(np.load(inputs))["digit"].astype(np.float64)
    got = _predict_py(arm_env, cases["bundles"][f"cnn_{kind}", device], inputs, cpu)["digit"]
    recomputed = _figures(reference, got, cases["labels"][:count])
    shown = candidate["outputs"][0]
    print(f"\n{kind} on {device}, {count} images: verify {shown['max_abs_error']:.3g} / {shown['top1_agreement']}, "
          f"predict.py {recomputed['max_abs_error']:.3g} / {recomputed['top1_agreement']}", end="")
    if kind == "int8":  # bit-identical outputs: every figure equal
        assert shown["max_abs_error"] == recomputed["max_abs_error"]
        assert shown["top1_agreement"] == recomputed["top1_agreement"]
        assert shown["candidate_accuracy"] == recomputed["candidate_accuracy"]
    else:
        assert abs(shown["max_abs_error"] - recomputed["max_abs_error"]) <= FLOAT_ATOL
        assert recomputed["max_abs_error"] <= FLOAT_ATOL  # NEON against this host's float kernels
        assert shown["top1_agreement"] == recomputed["top1_agreement"]
    html = report.read_text()
    assert f"{device} (emulated {cpu})" in html and "emulated timings mean nothing" in html


def test_run_on_device_prints_what_the_bundle_prints(arm_env, device_cases, tmp_path):
    """dlkit run --device rpi4 -o: the int8 outputs bit for bit those of the bundle's predict.py on the Pi 4's
    core, the float ones within FLOAT_ATOL."""
    cases = device_cases
    inputs = tmp_path / "digits.npy"
    np.save(inputs, np.load(cases["folder"] / "pixels.npy")[:64])
    for name, model in (("cnn_int8", cases["int8"]), ("cnn_float", cases["float"])):
        saved = tmp_path / f"{name}.npz"
        out = subprocess.run([sys.executable, "-m", "dlkit", "run", str(model), "-i", str(inputs), "--device", "rpi4",
                              "-o", str(saved), "--json"], capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout)["device"] == "rpi4"
        got = np.load(saved)["digit"]
        bundled = _predict_py(arm_env, cases["bundles"][name, "rpi4"], inputs, "cortex-a72")["digit"]
        if name == "cnn_int8":
            assert np.array_equal(got, bundled)
        else:
            assert float(np.max(np.abs(got - bundled))) <= FLOAT_ATOL


def test_also_host_is_shown_and_only_the_device_is_judged(arm_env, device_cases):
    """--also-host adds this host's rows, unjudged; a threshold both breach fails on the device's rows alone."""
    cases = device_cases
    result = dlkit.verify(cases["float"], [cases["int8"]], cases["folder"] / "mnist.npz", max_samples=256,
                          atol=1e-9, device="rpi5", also_host=True)  # no int8 model is within 1e-9 of float
    host, device = result.candidates
    assert (host.computed_on["where"], host.judged, host.breaches) == ("host", False, ())
    assert device.computed_on["device"] == "rpi5" and device.judged and not device.passed
    assert {b.figure for b in result.breaches} == {"max_abs_error"} and not result.passed
    assert host.outputs[0].max_abs_error > 1e-9  # the host breaches it too, and is not judged on it
    assert result.to_dict()["candidates"][0]["where"].startswith("host (")


@pytest.mark.parametrize("device", list(DEVICES))
def test_char_gru_verify_on_device_equals_predict_py(arm_env, onnx_exports, text_ids, tmp_path, device):
    """The two-input char GRU (float, 50 recurrent steps) on each Pi's core: verify --device's largest error
    against this host equals the one recomputed from the bundle's predict.py, within the GRU's float bound."""
    from dlkit_runtime import Model

    steps, count = 50, 8
    starts = np.linspace(0, len(text_ids) - steps - 1, count).astype(int)
    data = tmp_path / "text.npz"
    feeds = {"x": np.stack([text_ids[s:s + steps] for s in starts]).astype(np.int32),
             "hidden": np.random.default_rng(0).uniform(-1, 1, (count, 256)).astype(np.float32)}
    np.savez(data, **feeds)
    model = onnx_exports["char_gru"]
    result = dlkit.verify(model, [model], data, device=device, min_agreement=None)
    dlkit.bundle(model, tmp_path / "gru", target=device)
    got = _predict_py(arm_env, tmp_path / "gru", data, DEVICES[device])
    host = Model(model).predict(feeds)
    # 50 steps of 3 x 256-term float32 dot products, each rounded in another order by NEON and AVX: about 2^-24 *
    # sqrt(768) of the output's scale per step, adding up like a random walk (tests/arm/test_emulated_arm.py)
    for figures in result.candidates[0].outputs:
        bound = 2.0 ** -24 * np.sqrt(768) * np.sqrt(steps) * max(1.0, float(np.abs(host[figures.name]).max()))
        recomputed = float(np.max(np.abs(got[figures.name].astype(np.float64) - host[figures.name])))
        assert figures.max_abs_error <= bound and recomputed <= bound
        assert abs(figures.max_abs_error - recomputed) <= FLOAT_ATOL


def test_quantize_figures_on_device(arm_env, onnx_exports, mnist_npz, device_cases, tmp_path):
    """quantize --device rpi4: the accuracy it reports is the written model's on the emulated Pi 4, and the
    figures say so (no warning: arm64 int8 measured on arm64 kernels)."""
    from dlkit.device import Emulator

    out = tmp_path / "cnn.int8.onnx"
    eval_data = device_cases["folder"] / "eval1000.npz"
    with np.load(mnist_npz["cnn", "eval"]) as archive:
        np.savez(eval_data, pixels=archive["pixels"][:1000], y=archive["y"][:1000])
    result = dlkit.quantize(onnx_exports["cnn"], out, calibration=mnist_npz["cnn", "calib"], eval_data=eval_data,
                            target="rpi4", device="rpi4")
    assert result.computed_on["device"] == "rpi4" and result.computed_on["cpu"]["family"] == "arm64"
    assert result.warnings == ()
    from dlkit.core.sessions import predict

    with np.load(eval_data) as archive, Emulator("rpi4") as emulator:  # in quantize's batches
        scores = predict(emulator.load(out), {"pixels": archive["pixels"]}, result.eval_batch_size)["digit"]
        assert result.quantized_accuracy == float(np.mean(scores.argmax(1) == archive["y"]))


def test_bundle_check_on_device(arm_env, device_cases, tmp_path):
    result = dlkit.bundle(device_cases["int8"], tmp_path / "checked.tar.gz", target="rpi5", check_on_device=True)
    check = result.device_check
    assert check["device"] == "rpi5" and check["cpu_model"] == "cortex-a76" and check["passed"]
    assert check["outputs"][0]["relative_error"] <= check["bound"]
