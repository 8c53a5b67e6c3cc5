"""The OSes people set up a Pi with today, and the Pis' exact cores.

- Every pinned wheel (numpy, onnxruntime, Pillow and the serve extra's) imports, and one inference of an int8 and a
  float model runs, on emulated Cortex-A53 (Pi Zero 2 W), A72 (Pi 4) and A76 (Pi 5) under Raspberry Pi OS trixie's
  Python 3.13: an onnxruntime whose ARM kernels use an instruction a core lacks dies there with SIGILL (1.21.0 on
  the A72 did), and qemu with the exact core model raises the same.
- A bundle for each Pi installs with its own install.sh and answers (predict.py, and one HTTP infer with --serve) on
  both trixie's and bookworm's emulated userland, with the smallest sample model (the MLP).

install.sh runs for real under /bin/sh. The host cannot execute aarch64 programs without binfmt_misc (a kernel
setting these tests do not change), so the two aarch64 programs install.sh executes, `python3` and `.venv/bin/python`,
are small shell scripts that start the emulated ones under qemu, and `uname -m` answers aarch64, as binfmt would
arrange. The venv is made with `--without-pip` (Debian's ensurepip is in python3-venv, not unpacked here) and pip comes
from its wheel on PYTHONPATH; pip then installs the bundle's requirements.txt under emulation, offline from the
environment's wheel folder. Emulation is about 100x slower than a Pi: these are checks of correctness, never speed.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import warnings

import numpy as np
import pytest

import dlkit
from dlkit_runtime import Model
from tests.arm.emulated_server import serving

pytestmark = pytest.mark.arm

CORES = ("cortex-a53", "cortex-a72", "cortex-a76")  # the Pi Zero 2 W's, the Pi 4's and the Pi 5's
PIS = {"rpi4": "cortex-a72", "rpi5": "cortex-a76", "rpi-zero2": "cortex-a53"}
MODULES = {"numpy": "numpy", "onnxruntime": "onnxruntime", "pillow": "PIL", "uvicorn": "uvicorn",
           "starlette": "starlette", "httptools": "httptools", "uvloop": "uvloop", "orjson": "orjson"}
FLOAT_ATOL = 1e-5  # the same float graph, another ISA's kernels (NEON vs AVX) and summation order

_GUEST = """\
import importlib, json, sys
import numpy as np
versions = {{name: importlib.import_module(module).__version__ for name, module in {modules!r}.items()}}
sys.path.insert(0, {runtime!r})
from dlkit_runtime import Model
x = np.load({inputs!r})
out = {{}}
for path in {models!r}:
    model = Model(path, threads=1)
    out[path] = {{k: v.tolist() for k, v in model.predict(x).items()}}
print(json.dumps({{"python": sys.version.split()[0], "versions": versions, "outputs": out}}))
"""


@pytest.fixture(scope="module")
def mlp(onnx_exports, mnist_npz, mnist_test, tmp_path_factory):
    """The MLP, float and int8 (quantized for the Pi), and 16 digits."""
    from sample_models import datasets

    folder = tmp_path_factory.mktemp("systems")
    int8 = folder / "mlp_digits.int8.onnx"
    dlkit.quantize(onnx_exports["mlp_digits"], int8, calibration=mnist_npz["mlp", "calib"], target="rpi5")
    digits = folder / "digits.npy"
    np.save(digits, datasets.as_mlp_input(mnist_test[0][:16]))
    return {"folder": folder, "float": onnx_exports["mlp_digits"], "int8": int8, "digits": digits}


@pytest.mark.parametrize("cpu", CORES)
def test_every_pinned_wheel_runs_on_the_exact_core(arm_env, mlp, cpu):
    from dlkit.device import requirements

    bundle = mlp["folder"] / "runtime_bundle"
    if not bundle.exists():
        dlkit.bundle(mlp["int8"], bundle, target="rpi5", serve=True)
    pins = dict(r.split("==") for r in requirements())
    assert set(pins) == set(MODULES), "a pinned wheel this test does not import"
    models = [str(mlp["int8"]), str(mlp["float"])]
    script = _GUEST.format(modules=MODULES, runtime=str(bundle), inputs=str(mlp["digits"]), models=models)
    proc = arm_env.run(["-c", script], cpu)
    assert proc.returncode == 0, f"exit {proc.returncode} on {cpu} (-4: SIGILL): {proc.stderr[-2000:]}"
    result = json.loads(proc.stdout)
    assert result["python"].startswith("3.13")
    assert result["versions"]["numpy"] == pins["numpy"] and result["versions"]["onnxruntime"] == pins["onnxruntime"]
    x = np.load(mlp["digits"])
    for path in models:
        host = Model(path, threads=1).predict(x)
        for name, expected in host.items():
            got = np.array(result["outputs"][path][name], dtype=expected.dtype)
            if path == models[0]:  # int8: the same classes (requantization may round one step apart across ISAs)
                assert np.array_equal(got.argmax(1), expected.argmax(1))
            else:
                assert float(np.max(np.abs(got.astype(np.float64) - expected))) <= FLOAT_ATOL


@pytest.fixture(scope="module")
def pi_bundles(mlp):
    """For each Pi, the int8 MLP bundled with --serve and without."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # int8 without dot products: advice tested elsewhere
        for pi in PIS:
            for serve in (False, True):
                folder = mlp["folder"] / f"{pi}{'-serve' if serve else ''}"
                dlkit.bundle(mlp["int8"], folder, target=pi, serve=serve, float_model=mlp["float"])
                out[pi, serve] = folder
    return out


def _shims(env, folder, cpu):
    """`python3` and `uname` for install.sh: the emulated python on `cpu`, and an aarch64 machine."""
    cmd, variables = env.command([], cpu, site=False)
    exports = "".join(f"export {k}='{v}'\n" for k, v in variables.items() if k != "PATH")
    bin_ = folder / "shims"
    bin_.mkdir(parents=True, exist_ok=True)
    (bin_ / "python3").write_text(f"#!/bin/sh\n{exports}exec {' '.join(cmd)} \"$@\"\n")
    (bin_ / "uname").write_text('#!/bin/sh\n[ "$1" = -m ] && echo aarch64 && exit 0\nexec /bin/uname "$@"\n')
    for shim in bin_.iterdir():
        shim.chmod(0o755)
    return bin_, exports, cmd


def _install(env, bundle, cpu, tmp_path) -> str:
    """install.sh, run as on the Pi (the venv's python a shim to the emulated one, pip from its wheel); its stderr."""
    bin_, exports, cmd = _shims(env, tmp_path, cpu)
    made = subprocess.run([str(bin_ / "python3"), "-m", "venv", "--without-pip", str(bundle / ".venv")],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    python = bundle / ".venv" / "bin" / f"python{env.system.python}"
    pip = next(env.wheels.glob("pip-*.whl"))
    (bundle / ".venv" / "bin" / "python").unlink()
    (bundle / ".venv" / "bin" / "python").write_text(
        f"#!/bin/sh\n{exports}export PYTHONPATH='{pip}'\nexec {' '.join(cmd[:-1])} {python} \"$@\"\n")
    (bundle / ".venv" / "bin" / "python").chmod(0o755)
    proc = subprocess.run(["/bin/sh", str(bundle / "install.sh"), "--no-index", "--find-links", str(env.wheels)],
                          env={"PATH": f"{bin_}:/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "installed; run" in proc.stdout and json.loads(proc.stdout.splitlines()[-2])["ok"]
    return proc.stderr


def _infer_once(env, bundle, cpu, x, tmp_path) -> np.ndarray:
    python = bundle / ".venv" / "bin" / f"python{env.system.python}"
    with serving(env, bundle, cpu, tmp_path / "serve.log", python=python, site=False) as url:
        body = json.dumps({"inputs": [{"name": "pixels", "shape": list(x.shape), "datatype": "FP32",
                                       "data": x.reshape(-1).tolist()}]}).encode()
        name = json.loads((bundle / "manifest.json").read_text())["models"][0]["file"].removesuffix(".onnx")
        request = urllib.request.Request(f"{url}/v2/models/{name}/infer", data=body, method="POST")
        answer = json.loads(urllib.request.urlopen(request, timeout=300).read())
        return np.array(answer["outputs"][0]["data"], np.float32).reshape(len(x), -1)


@pytest.mark.slow
@pytest.mark.parametrize("system", ["trixie", "bookworm"])
def test_bundles_install_and_answer_on_each_os(request, mlp, pi_bundles, system, tmp_path):
    """One install.sh per OS (the --serve bundle, whose requirements hold every other's), then each Pi's bundles
    predict on its own core with that venv, and the served model answers one HTTP infer."""
    import shutil

    env = request.getfixturevalue("arm_env" if system == "trixie" else "bookworm_env")
    served = tmp_path / "served"
    shutil.copytree(pi_bundles["rpi-zero2", True], served)
    stderr = _install(env, served, PIS["rpi-zero2"], tmp_path)
    assert "note:" not in stderr, stderr  # the Python it found is one the bundle was tested with
    x = np.load(mlp["digits"])
    host = Model(mlp["int8"], threads=1).predict(x)
    first = next(iter(host))
    python = served / ".venv" / "bin" / f"python{env.system.python}"
    for (pi, serve), bundle in pi_bundles.items():
        wanted = (bundle / "requirements.txt").read_text().split()
        assert set(wanted) <= set((served / "requirements.txt").read_text().split())
        proc = env.run([bundle / "predict.py", mlp["digits"], "--top-k", "1"], PIS[pi], python=python, site=False)
        assert proc.returncode == 0, f"{pi} on {system}: {proc.stderr[-2000:]}"
        got = np.array(json.loads(proc.stdout)["outputs"][first]["values"])
        assert np.array_equal(got.argmax(1), host[first].argmax(1)), (pi, serve, system)
    scores = _infer_once(env, served, PIS["rpi-zero2"], x[:2], tmp_path)
    assert scores.argmax(1).tolist() == host[first][:2].argmax(1).tolist()


def test_install_sh_names_an_untested_python(pi_bundles, tmp_path):
    """A Python the bundle was not tested with: one line saying so, and the install goes on (here it stops at the
    venv, which this stand-in python cannot make)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    fake = bin_ / "python3"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *%d.%d*) echo 3.12 ;; *-m\\ venv*) exit 1 ;; *) exit 0 ;; esac\n")
    fake.chmod(0o755)
    (bin_ / "uname").write_text('#!/bin/sh\necho aarch64\n')
    (bin_ / "uname").chmod(0o755)
    proc = subprocess.run(["/bin/sh", str(pi_bundles["rpi5", False] / "install.sh")], capture_output=True, text=True,
                          env={"PATH": f"{bin_}:/usr/bin:/bin"}, timeout=60)
    notes = [line for line in proc.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1 and "tested with Python 3.13" in notes[0] and "3.12" in notes[0], proc.stderr
    assert "python3 -m venv failed" in proc.stderr
