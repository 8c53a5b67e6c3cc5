"""`dlkit.bundle` and `dlkit bundle`: the bundle's contents, its predict/bench entry points run as on a device (here,
with this machine's Python), the sha256 check, output checks, and safe unpacking of archives."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

import dlkit
from dlkit.cli import cli
from dlkit.errors import InvalidInputError
from dlkit_runtime import Model
from dlkit_runtime.integrity import sha256_file
from dlkit_runtime.manifest import IntegrityError, open_model, read_manifest


@pytest.fixture(scope="session")
def cnn_int8(onnx_exports, mnist_npz, tmp_path_factory):
    """The sample CNN quantized to int8 on real MNIST calibration data."""
    path = tmp_path_factory.mktemp("bundle_int8") / "cnn_int8.onnx"
    dlkit.quantize(onnx_exports["cnn"], path, calibration=mnist_npz["cnn", "calib"])
    return path


@pytest.fixture(scope="module")
def digits_npy(tmp_path_factory, mnist_test):
    from sample_models import datasets

    path = tmp_path_factory.mktemp("bundle_inputs") / "digits.npy"
    np.save(path, datasets.as_cnn_input(mnist_test[0][:8]))
    return path


def _predict(folder, *args):
    """Runs the bundle's own predict.py as the device would (here with this Python, which has numpy/onnxruntime)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, str(folder / "predict.py"), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_bundle_folder_holds_everything(onnx_exports, tmp_path):
    result = dlkit.bundle(onnx_exports["cnn"], tmp_path / "b", target="rpi5")
    folder = tmp_path / "b"
    for name in ("cnn.onnx", "manifest.json", "requirements.txt", "install.sh", "predict.py", "bench.py", "README.md",
                 "dlkit-predict.service.in", "dlkit_runtime/__init__.py", "dlkit_runtime/manifest.py"):
        assert (folder / name).is_file(), name
    assert set(result.files) == {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["models"][0]["sha256"] == sha256_file(onnx_exports["cnn"])
    assert manifest["models"][0]["precision"] == "float32"
    assert manifest["target"] == "rpi5" and manifest["threads"] == 4 and manifest["dlkit_version"] == dlkit.__version__
    assert manifest["inputs"] == [{"name": "pixels", "dtype": "float32", "shape": ["N", 28, 28, 1]}]
    assert [o["name"] for o in manifest["outputs"]] == ["digit"] and "created" in manifest
    requirements = (folder / "requirements.txt").read_text().split()
    ort = next(r for r in requirements if r.startswith("onnxruntime=="))
    assert tuple(map(int, ort.split("==")[1].split(".")[:2])) >= (1, 22)  # 1.21.0's aarch64 wheel crashes a Pi 4
    readme = (folder / "README.md").read_text()
    assert "./install.sh" in readme and ".venv/bin/python predict.py input.npy" in readme
    assert os.access(folder / "install.sh", os.X_OK)
    assert subprocess.run(["sh", "-n", str(folder / "install.sh")]).returncode == 0  # the template renders to valid sh
    assert "ExecStart=@BUNDLE@/.venv/bin/python" in (folder / "dlkit-predict.service.in").read_text()
    assert json.loads(json.dumps(result.to_dict()))["models"][0]["file"] == "cnn.onnx"


def test_bundle_predict_matches_runtime(onnx_exports, digits_npy, tmp_path):
    dlkit.bundle(onnx_exports["cnn"], tmp_path / "b", target="x86_64")
    proc = _predict(tmp_path / "b", digits_npy, "--top-k", "3")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    expected = Model(onnx_exports["cnn"]).predict(np.load(digits_npy))["digit"]
    # same machine, same onnxruntime and graph: identical up to float32 rounding of thread partitioning
    np.testing.assert_allclose(np.array(out["outputs"]["digit"]["values"], np.float32), expected, atol=1e-6)
    assert [row[0]["index"] for row in out["top_k"]] == list(expected.argmax(1))


def test_tampered_model_is_refused(onnx_exports, digits_npy, tmp_path):
    dlkit.bundle(onnx_exports["cnn"], tmp_path / "b")
    model_file = tmp_path / "b" / "cnn.onnx"
    data = bytearray(model_file.read_bytes())
    data[-20] ^= 0xFF  # one flipped byte in the weights: still a loadable model
    model_file.write_bytes(bytes(data))
    proc = _predict(tmp_path / "b", digits_npy)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: model") and "sha256" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(IntegrityError, match="modified or damaged"):
        open_model(tmp_path / "b")


def test_model_sha256_keyword(onnx_exports, digits_npy):
    good = sha256_file(onnx_exports["cnn"])
    x = np.load(digits_npy)
    np.testing.assert_array_equal(Model(onnx_exports["cnn"], sha256=good, threads=1).predict(x)["digit"],
                                  Model(onnx_exports["cnn"], threads=1).predict(x)["digit"])
    with pytest.raises(IntegrityError):
        Model(onnx_exports["cnn"], sha256="0" * 64)


def test_int8_for_rpi4_warns_and_bench_picks_a_file(onnx_exports, cnn_int8, tmp_path):
    with pytest.warns(UserWarning, match="no dot-product"):
        result = dlkit.bundle(cnn_int8, tmp_path / "b", target="rpi4", float_model=onnx_exports["cnn"])
    assert [m["precision"] for m in result.models] == ["int8", "float32"]
    assert [m["file"] for m in result.models] == ["cnn_int8.onnx", "cnn.onnx"]
    assert result.warnings and read_manifest(tmp_path / "b").threads == 4
    assert "no dot-product" in (tmp_path / "b" / "README.md").read_text()
    proc = subprocess.run([sys.executable, str(tmp_path / "b" / "bench.py"), "--runs", "3"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "fastest here:" in proc.stdout and "predict.py INPUT --model cnn" in proc.stdout
    # the float model is still selectable and checked
    assert _predict(tmp_path / "b", "--check", "--model", "cnn.onnx").returncode == 0


def test_int8_for_rpi5_does_not_warn(cnn_int8, tmp_path, recwarn):
    result = dlkit.bundle(cnn_int8, tmp_path / "b", target="rpi5")
    assert result.warnings == () and not [w for w in recwarn if "dot-product" in str(w.message)]


def test_archive_round_trip(onnx_exports, digits_npy, tmp_path):
    result = dlkit.bundle(onnx_exports["char_gru"], tmp_path / "gru-bundle.tar.gz", target="aarch64")
    assert result.size_bytes == (tmp_path / "gru-bundle.tar.gz").stat().st_size
    folder = dlkit.bundling.unpack(tmp_path / "gru-bundle.tar.gz", tmp_path / "unpacked")
    assert folder == tmp_path / "unpacked" / "gru-bundle"
    assert read_manifest(folder).threads == 0  # aarch64: the device's physical cores
    proc = _predict(folder, "--check")
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"] is True, proc.stderr
    assert os.access(folder / "install.sh", os.X_OK)


def _crafted(tmp_path, member: tarfile.TarInfo, data: bytes = b"x"):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("bundle/manifest.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member", [
    tarfile.TarInfo("../escaped.txt"),
    tarfile.TarInfo("bundle/../../escaped.txt"),
    tarfile.TarInfo("/tmp/escaped-absolute.txt"),
    _link("bundle/link", "../../escaped.txt"),
    _link("bundle/abs-link", "/etc/passwd"),
    _link("bundle/hard", "../outside", tarfile.LNKTYPE),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out"])
def test_unpack_rejects_members_escaping_the_folder(tmp_path, member):
    archive = _crafted(tmp_path, member)
    target = tmp_path / "deep" / "out"
    with pytest.raises(InvalidInputError, match="escape the target folder"):
        dlkit.bundling.unpack(archive, target)
    assert not (tmp_path / "deep" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not target.exists()  # checked before anything is written


def test_cli_bundle_json_and_errors(onnx_exports, cnn_int8, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["bundle", str(onnx_exports["cnn"]), "-o", str(tmp_path / "b"), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["target"] == "rpi4"

    again = runner.invoke(cli, ["bundle", str(onnx_exports["cnn"]), "-o", str(tmp_path / "b")])
    _assert_error(again, 2, "is not empty; pass --force")
    forced = runner.invoke(cli, ["bundle", str(onnx_exports["cnn"]), "-o", str(tmp_path / "b"), "--force"])
    assert forced.exit_code == 0 and "On the device: ./install.sh" in forced.stdout

    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("not a model")
    bad = runner.invoke(cli, ["bundle", str(not_onnx), "-o", str(tmp_path / "c")])
    _assert_error(bad, 2, "is not an ONNX model")
    assert not (tmp_path / "c").exists()
    missing = runner.invoke(cli, ["bundle", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "c")])
    _assert_error(missing, 2, "does not exist")

    warned = runner.invoke(cli, ["bundle", str(cnn_int8), "-o", str(tmp_path / "d.tar.gz"), "--target", "rpi4"])
    said = [line for line in warned.stderr.splitlines() if not line.startswith("bundle: ")]  # after the stage lines
    assert warned.exit_code == 0 and said[0].startswith("warning:") and "dot-product" in warned.stderr
    assert warned.stderr.startswith("bundle: choosing the precision for the rpi4 ...")


def test_watch_mode_serves_an_inbox(onnx_exports, digits_npy, tmp_path):
    dlkit.bundle(onnx_exports["cnn"], tmp_path / "b")
    inbox = tmp_path / "b" / "inbox"
    inbox.mkdir()
    (inbox / "digits.npy").write_bytes(digits_npy.read_bytes())
    (inbox / "broken.npy").write_text("not numpy")
    proc = _predict(tmp_path / "b", "--watch", inbox, "--once", "--interval", "0")
    assert proc.returncode == 0, proc.stderr
    outbox = tmp_path / "b" / "outbox"
    assert json.loads((outbox / "digits.npy.json").read_text())["outputs"]["digit"]["shape"] == [8, 10]
    assert "numpy cannot read" in json.loads((outbox / "broken.npy.json").read_text())["error"]
    assert not list(inbox.iterdir())


def _assert_error(result, code, match):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], result.stderr


def test_a_photo_goes_through_run_predict_and_the_inbox_like_its_npy(onnx_exports, mnist_test, tmp_path):
    """A JPEG photo of a digit (RGB, 96x96) and a 16-bit PNG: `dlkit run`, the bundle's predict.py and its inbox
    service give the class the digit's .npy gives. The bundle of an image model pins Pillow; an MLP's does not."""
    from PIL import Image

    from sample_models import datasets

    image = mnist_test[0][0]
    np.save(tmp_path / "seven.npy", datasets.as_cnn_input(image[None]))
    Image.fromarray(image).convert("RGB").resize((96, 96), Image.BICUBIC).save(tmp_path / "seven.jpg", quality=90)
    Image.fromarray(image.astype(np.uint16) * 257).save(tmp_path / "seven16.png")
    dlkit.bundle(onnx_exports["cnn"], tmp_path / "b")
    assert any(r.startswith("pillow==") for r in read_manifest(tmp_path / "b").raw["requirements"])
    assert (tmp_path / "b" / "requirements.txt").read_text().count("pillow==") == 1
    dlkit.bundle(onnx_exports["mlp_digits"], tmp_path / "m")  # (N, 784): not pictures
    assert not any(r.startswith("pillow") for r in read_manifest(tmp_path / "m").raw["requirements"])
    labels = {}
    for name in ("seven.npy", "seven.jpg", "seven16.png"):
        ran = CliRunner().invoke(cli, ["run", str(onnx_exports["cnn"]), "-i", str(tmp_path / name), "--top-k", "1",
                                       "--json"])
        assert ran.exit_code == 0, ran.output
        predicted = _predict(tmp_path / "b", tmp_path / name, "--top-k", "1")
        assert predicted.returncode == 0, predicted.stderr
        labels[name] = (json.loads(ran.stdout)["top_k"][0][0]["label"],
                        json.loads(predicted.stdout)["top_k"][0][0]["label"])
    inbox = tmp_path / "b" / "inbox"
    inbox.mkdir()
    for name in ("seven.jpg", "seven16.png"):
        (inbox / name).write_bytes((tmp_path / name).read_bytes())
    served = _predict(tmp_path / "b", "--watch", inbox, "--once", "--interval", "0", "--top-k", "1")
    assert served.returncode == 0, served.stderr
    for name in ("seven.jpg", "seven16.png"):
        answer = json.loads((tmp_path / "b" / "outbox" / f"{name}.json").read_text())
        labels[name] += (answer["top_k"][0][0]["label"],)
    assert set(labels["seven.npy"]) == {"7"} and set(labels["seven.jpg"]) == set(labels["seven16.png"]) == {"7"}, labels


@pytest.mark.parametrize("machine, bits, says", [
    ("armv7l", "32", "this is 32-bit Raspberry Pi OS (armv7l): onnxruntime publishes no 32-bit ARM wheels"),
    ("aarch64", "32", "32-bit userland on a 64-bit kernel"),
    ("riscv64", "64", "onnxruntime publishes Linux wheels for aarch64 and x86_64 only"),
])
def test_install_sh_stops_on_a_machine_without_onnxruntime_wheels(onnx_exports, tmp_path, machine, bits, says):
    """install.sh checks the machine before anything else (uname and getconf faked on PATH): one line, exit 1,
    no .venv made."""
    dlkit.bundle(onnx_exports["cnn"], tmp_path / "b", target="rpi4")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    for tool, answer in (("uname", machine), ("getconf", bits)):
        (fake / tool).write_text(f"#!/bin/sh\necho {answer}\n")
        (fake / tool).chmod(0o755)
    proc = subprocess.run(["sh", str(tmp_path / "b" / "install.sh")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("install.sh: ") and says in lines[0], proc.stderr
    assert not (tmp_path / "b" / ".venv").exists()


def test_an_int8_model_for_the_pi_bundled_for_x86_warns_of_saturation(onnx_exports, tmp_path):
    """8-bit weights saturate in the int8 kernels of x86 CPUs without VNNI: bundling such a model for x86_64 says so
    and names the fix; for the Pi it was made for, it does not."""
    import warnings

    for_pi = dlkit.quantize(onnx_exports["mlp_digits"], tmp_path / "pi.onnx", target="rpi5").path
    with pytest.warns(UserWarning, match="quantized for arm64 with 8-bit weights.*--target x86_64"):
        dlkit.bundle(for_pi, tmp_path / "x86", target="x86_64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dlkit.bundle(for_pi, tmp_path / "pi", target="rpi5")
    exact = dlkit.quantize(onnx_exports["mlp_digits"], tmp_path / "any.onnx", target="x86_64").path
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 7-bit weights: exact on every x86 CPU
        dlkit.bundle(exact, tmp_path / "x86b", target="x86_64")
