"""Bundles run on emulated 64-bit ARM (the Raspberry Pi 4's Cortex-A72 and the Pi 5's Cortex-A76) and agree with the
x86 runtime.

What runs as on the device, and what stands in for it:

- The install step. On the device it is `install.sh`: `python3 -m venv .venv` and `pip install -r requirements.txt`
  from PyPI. Here the host's pip installs that same pinned requirements list as aarch64 cp313 manylinux wheels
  (`pip install --target --platform manylinux_*_aarch64 --only-binary=:all:`) into the cached environment, because
  running pip itself under qemu would take minutes for the same files. The test checks that the bundle's
  `requirements.txt` is exactly what the environment was built from.
- The run step runs for real: the bundle's own `predict.py`, its bundled `dlkit_runtime` and the aarch64 numpy and
  onnxruntime wheels execute in Debian trixie's aarch64 `python3.13` (Raspberry Pi OS trixie's Python) under
  `qemu-aarch64-static -cpu cortex-a72|cortex-a76`, with the bundle folder as on the device.

Emulation is about 100x slower than native: these figures are for correctness only, never speed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import dlkit
from dlkit_runtime import Model

pytestmark = pytest.mark.arm

CPUS = ("cortex-a72", "cortex-a76")  # qemu's names for the Pi 4's and the Pi 5's cores
FLOAT_ATOL = 1e-5  # the bound: the same float graph, another ISA's kernels (NEON vs AVX) and summation order


def _float_bound(name: str, expected: np.ndarray) -> float:
    """The CNN: FLOAT_ATOL. The GRU runs 50 recurrent steps of 3 x 256-term dot products, each rounded in another
    order by NEON and AVX: about 2^-24 * sqrt(768) of the output's scale per step, adding up like a random walk over
    the steps (see tests/toolkit/exporting/test_exporting.py's _float32_bound)."""
    if not name.startswith("char_gru"):
        return FLOAT_ATOL
    return 2.0 ** -24 * np.sqrt(3 * 256) * np.sqrt(50) * max(1.0, float(np.abs(expected).max()))


@pytest.fixture(scope="module")
def cases(onnx_exports, mnist_npz, mnist_test, text_ids, tmp_path_factory):
    """name -> (bundle folder, input file, host outputs, 'float' or 'int8'): each bundle made as a user would."""
    from sample_models import datasets

    folder = tmp_path_factory.mktemp("arm_bundles")
    int8 = folder / "cnn_int8.onnx"
    dlkit.quantize(onnx_exports["cnn"], int8, calibration=mnist_npz["cnn", "calib"])
    digits = folder / "digits.npy"
    np.save(digits, datasets.as_cnn_input(mnist_test[0][:32]))
    steps, count = 50, 4
    starts = np.linspace(0, len(text_ids) - steps - 1, count).astype(int)
    text = folder / "text.npz"
    np.savez(text, x=np.stack([text_ids[s:s + steps] for s in starts]).astype(np.int32),
             hidden=np.random.default_rng(0).uniform(-1, 1, (count, 256)).astype(np.float32))

    out = {}
    # the float CNN travels as a .tar.gz, unpacked with dlkit's safe unpacker, as a user would copy it
    dlkit.bundle(onnx_exports["cnn"], folder / "cnn.tar.gz", target="rpi4")
    out["cnn_float"] = (dlkit.bundling.unpack(folder / "cnn.tar.gz", folder / "unpacked"), digits, "float")
    with pytest.warns(UserWarning, match="dot-product"):
        dlkit.bundle(int8, folder / "cnn_int8", target="rpi4", float_model=onnx_exports["cnn"])
    out["cnn_int8"] = (folder / "cnn_int8", digits, "int8")
    dlkit.bundle(onnx_exports["char_gru"], folder / "char_gru", target="rpi5")
    out["char_gru"] = (folder / "char_gru", text, "float")

    from dlkit_runtime.datafiles import read_inputs
    from dlkit_runtime.manifest import read_manifest

    cases = {}
    for name, (bundle, inputs, kind) in out.items():
        model = Model(bundle / read_manifest(bundle).default.file, threads=1)
        cases[name] = (bundle, inputs, model.predict(read_inputs(inputs, model)), kind)
    return cases


def test_bundle_requirements_are_what_the_arm_env_installed(arm_env, cases):
    from dlkit.core.catalogue import IMAGE_REQUIREMENTS, REQUIREMENTS

    for name, (bundle, _, _, _) in cases.items():
        images = list(IMAGE_REQUIREMENTS) if name.startswith("cnn") else []  # the CNN takes pictures: Pillow too
        assert (bundle / "requirements.txt").read_text().split() == list(REQUIREMENTS) + images
    assert (arm_env.site / "onnxruntime").is_dir() and (arm_env.site / "numpy").is_dir()
    assert (arm_env.site / "PIL").is_dir()
    assert list(arm_env.site.glob("onnxruntime/capi/onnxruntime_pybind11_state*aarch64*.so"))


@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("name", ["cnn_float", "cnn_int8", "char_gru"])
def test_predict_on_emulated_pi_matches_x86(arm_env, cases, name, cpu, record_property):
    bundle, inputs, host, kind = cases[name]
    check = arm_env.run([bundle / "predict.py", "--check"], cpu)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["providers"] == ["cpu"]
    proc = arm_env.run([bundle / "predict.py", inputs, "--top-k", "1"], cpu)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    arm = {k: np.array(v["values"], dtype=v["dtype"]) for k, v in result["outputs"].items()}
    assert arm.keys() == host.keys()
    for key, expected in host.items():
        assert arm[key].shape == expected.shape
        error = float(np.max(np.abs(arm[key].astype(np.float64) - expected)))
        record_property(f"{name}/{cpu}/{key}/max_abs_error", error)
        print(f"\n{name} on {cpu}: {key} max abs error {error:.3g}", end="")
        if kind == "float":
            assert error <= _float_bound(name, expected), f"{key}: {error} > {_float_bound(name, expected)}"
    if kind == "int8":  # int8 kernels differ between ISAs (rounding of requantization): the classes must not
        first = next(iter(host))
        agree = np.array_equal(arm[first].argmax(1), host[first].argmax(1))
        print(f"; top-1 identical on {len(host[first])} digits: {agree}", end="")
        assert agree


@pytest.mark.parametrize("cpu", CPUS)
def test_tampered_model_is_refused_on_arm(arm_env, cases, tmp_path, cpu):
    import shutil

    bundle = tmp_path / "tampered"
    shutil.copytree(cases["cnn_float"][0], bundle)
    model = bundle / "cnn.onnx"
    data = bytearray(model.read_bytes())
    data[-20] ^= 0x01
    model.write_bytes(bytes(data))
    proc = arm_env.run([bundle / "predict.py", cases["cnn_float"][1]], cpu)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: model") and "sha256" in proc.stderr


def test_install_steps_in_a_venv_under_emulation(arm_env, cases, mnist_test, tmp_path):
    """The bundle's install.sh steps, emulated on the Pi 4's core, offline from a wheel folder.

    install.sh itself cannot run here: it executes `.venv/bin/python`, an aarch64 binary, which needs binfmt_misc
    (a host kernel setting this test does not change). So its two steps run as it would run them: `python3 -m venv`,
    then its own pip command line (read from install.sh, `"$@"` = `--no-index --find-links WHEELS`) with pip run
    from its wheel (Debian's `ensurepip` is in python3.13-venv, not installed; `venv --without-pip` instead). Then
    `predict.py --check`, as install.sh ends, and a prediction with the venv's python alone (no PYTHONPATH).
    """
    import shlex
    import shutil

    cpu = "cortex-a72"
    bundle = tmp_path / "bundle"
    shutil.copytree(cases["cnn_int8"][0], bundle)
    venv = arm_env.run(["-m", "venv", "--without-pip", bundle / ".venv"], cpu, site=False)
    assert venv.returncode == 0, venv.stderr
    line = next(raw for raw in (bundle / "install.sh").read_text().splitlines()
                if raw.startswith(".venv/bin/python -m pip install"))
    pip_args = shlex.split(line)[4:]  # after `.venv/bin/python -m pip install`
    assert pip_args[-1] == "$@" and "-r" in pip_args and "requirements.txt" in pip_args
    pip_args = [*pip_args[:-1], "--no-index", "--find-links", str(arm_env.wheels)]
    pip_wheel = next(arm_env.wheels.glob("pip-*.whl"))
    python = bundle / ".venv" / "bin" / "python"
    install = arm_env.run([pip_wheel / "pip", "install", "--quiet", *pip_args], cpu, python=python, site=False,
                          cwd=bundle)
    assert install.returncode == 0, install.stderr[-2000:]
    check = arm_env.run([bundle / "predict.py", "--check"], cpu, python=python, site=False)
    assert check.returncode == 0 and json.loads(check.stdout)["ok"], check.stderr[-2000:]
    _, inputs, host, _ = cases["cnn_int8"]
    proc = arm_env.run([bundle / "predict.py", inputs, "--top-k", "1"], cpu, python=python, site=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    top1 = [row[0]["index"] for row in json.loads(proc.stdout)["top_k"]]
    assert top1 == host["digit"].argmax(1).tolist()
    # a camera's JPEG of the first digit, through the Pillow that install.sh put in the venv, on the Pi's core
    from PIL import Image

    Image.fromarray(mnist_test[0][0]).convert("RGB").resize((96, 96)).save(tmp_path / "photo.jpg", quality=90)
    photo = arm_env.run([bundle / "predict.py", tmp_path / "photo.jpg", "--top-k", "1"], cpu, python=python, site=False)
    assert photo.returncode == 0, photo.stderr[-2000:]
    assert json.loads(photo.stdout)["top_k"][0][0]["index"] == top1[0]


@pytest.mark.parametrize("cpu, dot_product", [("cortex-a72", False), ("cortex-a76", True)])
def test_cpu_kind_on_the_emulated_pi(arm_env, cases, cpu, dot_product):
    """The bundled runtime reads the Pi's CPU kind from the kernel's hardware capabilities, as qemu emulates them:
    arm64 on both, the dot-product extension (asimddp) on the Pi 5's Cortex-A76 only."""
    bundle = cases["cnn_float"][0]
    script = (f"import sys, json; sys.path.insert(0, {str(bundle)!r})\n"
              "from dlkit_runtime import cpu; print(json.dumps(cpu.host().to_dict()))")
    proc = arm_env.run(["-c", script], cpu)
    assert proc.returncode == 0, proc.stderr[-2000:]
    kind = json.loads(proc.stdout)
    assert kind["family"] == "arm64" and kind["machine"] == "aarch64" and kind["source"] == "hwcap", kind
    assert ("asimddp" in kind["features"]) == dot_product, kind


def test_serve_bundle_answers_on_the_emulated_pi5(arm_env, onnx_exports, mnist_test, tmp_path):
    """dlkit bundle --serve: its serve.py starts on the Pi 5's emulated Cortex-A76 (the aarch64 wheels of uvicorn
    and starlette) and answers one infer with the class the host computes."""
    import os
    import urllib.request

    from sample_models import datasets
    from tests.arm.emulated_server import serving

    bundle = tmp_path / "served"
    dlkit.bundle(onnx_exports["cnn"], bundle, target="rpi5", serve=True)
    log = tmp_path / "serve.log"
    with serving(arm_env, bundle, "cortex-a76", log, tries=600) as url:
        x = datasets.as_cnn_input(mnist_test[0][:2])
        body = json.dumps({"inputs": [{"name": "pixels", "shape": list(x.shape), "datatype": "FP32",
                                       "data": x.reshape(-1).tolist()}]}).encode()
        request = urllib.request.Request(url + "/v2/models/cnn/infer", data=body, method="POST")
        answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
        scores = np.array(answer["outputs"][0]["data"], np.float32).reshape(2, 10)
        assert scores.argmax(1).tolist() == Model(onnx_exports["cnn"]).predict(x)["digit"].argmax(1).tolist()
    assert os.path.getsize(log) > 0
