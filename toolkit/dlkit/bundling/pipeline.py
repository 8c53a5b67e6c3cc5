"""`dlkit.bundle`: a self-contained folder (or .tar.gz) that runs an ONNX model on a Raspberry Pi or another device.

The bundle holds the model, `manifest.json` (with the model's sha256, checked by the runtime at load),
the `dlkit_runtime` package, pinned `requirements.txt`, `install.sh`, `predict.py`, `bench.py`, a systemd unit and a
README with the two commands to type on the device.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dlkit.core import files as files_io
from dlkit.core import targets
from dlkit.errors import InvalidInputError

# Versions with cp311 wheels for manylinux aarch64 and x86-64. onnxruntime must be >= 1.22: the 1.21.0 aarch64 wheel
# crashes on a Pi 4 with an illegal instruction. tests/arm installs exactly these under emulation.
REQUIREMENTS = ("numpy==2.4.6", "onnxruntime==1.32.0")
IMAGE_REQUIREMENTS = ("pillow==13.0.0",)
# a bundle made with serve=True: uvicorn and starlette (pure Python), uvicorn's fast HTTP parser and event loop, and
# orjson for the tensors' JSON (cp311 wheels for manylinux aarch64 and x86-64)
SERVE_REQUIREMENTS = ("uvicorn==0.54.0", "starlette==1.10.0", "httptools==0.9.0", "uvloop==0.23.0", "orjson==3.13.0")
SERVE_SERVICE = "dlkit-serve"  # for a model that takes images: JPEG and any PNG (aarch64 + x86-64 wheels)
SERVICE_NAME = "dlkit-predict"


@dataclass(frozen=True)
class Target:
    """What a bundle is made for: the machine, its threads and advice."""

    name: str
    description: str
    machine: str  # `uname -m`
    threads: int  # 0: the device's physical cores
    dot_product: bool | None  # int8 dot-product instructions (None: depends on the CPU)
    advice: str


TARGETS = {t.name: t for t in [
    Target("rpi4", "Raspberry Pi 4 (Cortex-A72, 64-bit Raspberry Pi OS bookworm)", "aarch64", 4, False,
           "The Cortex-A72 has no dot-product instructions (no `asimddp`), so an int8 model may be no faster than "
           "float here: run `.venv/bin/python bench.py` and use the faster file. Four threads use every core; "
           "pass --threads 3 to keep one free for the rest of the system."),
    Target("rpi5", "Raspberry Pi 5 (Cortex-A76, 64-bit Raspberry Pi OS bookworm)", "aarch64", 4, True,
           "The Cortex-A76 has dot-product instructions: int8 models usually run faster than float here. Four "
           "threads use every core."),
    Target("aarch64", "a 64-bit ARM Linux machine with Python 3.11", "aarch64", 0, None,
           "Threads default to the physical cores. Whether int8 beats float depends on the CPU's dot-product "
           "support (`grep asimddp /proc/cpuinfo`): measure with `.venv/bin/python bench.py`."),
    Target("x86_64", "an x86-64 Linux machine with Python 3.11", "x86_64", 0, None,
           "Threads default to the physical cores. int8 is usually faster than float on CPUs with AVX-512 VNNI or "
           "AVX-VNNI; measure with `.venv/bin/python bench.py`."),
]}


@dataclass(frozen=True)
class BundleResult:
    """What `bundle` made.

    Attributes:
        path: the bundle folder, or the `.tar.gz` file.
        target: the target's name.
        models: the bundled model files, the default first, as `{"file", "sha256", "size_bytes", "precision"}`.
        files: every file of the bundle, relative to its folder.
        size_bytes: the bundle's total size (the archive's size for a `.tar.gz`).
        threads: the intra-op threads the bundle uses by default (0: the device's physical cores).
        warnings: advice given while bundling (also issued as `UserWarning`s).
    """

    path: str
    target: str
    models: tuple[dict, ...]
    files: tuple[str, ...]
    size_bytes: int
    threads: int
    warnings: tuple[str, ...] = field(default=())
    device_check: dict | None = None  # check_on_device: `dlkit.device.check.DeviceCheck.to_dict()`

    def to_dict(self) -> dict:
        return {"path": self.path, "target": self.target, "models": [dict(m) for m in self.models],
                "files": list(self.files), "size_bytes": self.size_bytes, "threads": self.threads,
                "warnings": list(self.warnings), "device_check": self.device_check}


def bundle(model: str | os.PathLike, output: str | os.PathLike, *, target: str = "rpi4",
           float_model: str | os.PathLike | None = None, threads: int | None = None, force: bool = False,
           serve: bool = False, check_on_device: bool = False) -> BundleResult:
    """Makes a folder (or a `.tar.gz` of it) that installs and runs `model` on a device with two commands.

    Args:
        model: the `.onnx` file (float or int8) to run.
        output: the bundle folder, or a path ending in `.tar.gz` / `.tgz` for an archive of it.
        target: "rpi4", "rpi5", "aarch64" or "x86_64": sets thread defaults and advice. Defaults to "rpi4".
        float_model: the float model an int8 `model` came from, bundled beside it so that the on-device `bench.py`
            can say which is faster there. Defaults to None.
        threads: intra-op threads on the device. Defaults to None: the target's (4 on a Pi, else physical cores).
        force: replace an existing non-empty folder or archive. Defaults to False.
        serve: add `serve.py` (the model over HTTP, Open Inference Protocol), a `dlkit-serve` systemd unit and
            the server's requirements (uvicorn, starlette). Defaults to False.
        check_on_device: then run the bundle's own predict.py on a few random inputs on the target's emulated CPU
            (`dlkit.device`; rpi4, rpi5, aarch64) and compare it with this host; a failed check removes the bundle.

    Returns:
        A `BundleResult`.

    Raises:
        InvalidInputError: a missing or non-ONNX model, an unknown target, an existing output without force.
        ToleranceError: check_on_device found the device's outputs too far from this host's.

    Example:

    >>> result = dlkit.bundle("cnn.onnx", "cnn-bundle/", target="rpi5")
    >>> result.files[:3]
    ('README.md', 'bench.py', 'cnn.onnx')
    """
    from dlkit_runtime import Model

    if target not in TARGETS:
        raise InvalidInputError(f"target {target!r} is not one of {', '.join(TARGETS)}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InvalidInputError(f"threads must be a positive integer, got {threads!r}")
    if check_on_device and target == "x86_64":
        raise InvalidInputError("check_on_device emulates an ARM target (rpi4, rpi5, aarch64); an x86_64 bundle "
                                "runs here as it is: run its predict.py")
    spec = TARGETS[target]
    output = Path(output).absolute()
    archive = output.name.endswith((".tar.gz", ".tgz"))
    sources = [Path(model)] + ([Path(float_model)] if float_model is not None else [])
    _check_output(output, archive, force, sources)
    loaded = [_load(path, Model) for path in sources]
    entries, notes = [], []
    for i, (path, (onnx_model, data)) in enumerate(zip(sources, loaded)):
        name = path.name if i == 0 or path.name != sources[0].name else f"{path.stem}_float.onnx"
        entries.append({"file": name, "sha256": _sha256(data), "size_bytes": len(data),
                        "precision": _precision(data, onnx_model.metadata)})
    if float_model is not None:
        _check_same_signature(loaded[0][0], loaded[1][0], sources)
        if entries[1]["precision"] == "int8":
            raise InvalidInputError(f"--float-model '{sources[1]}' is an int8 model; give the float model")
    if entries[0]["precision"] == "int8" and spec.dot_product is False:
        notes.append(f"{sources[0].name} is int8 and the {target} CPU has no dot-product instructions: int8 may be no "
                     "faster than float there; the bundle's bench.py tells the user which file to run"
                     + ("" if float_model else " (bundle the float model too with --float-model)"))
    if entries[0]["precision"] == "int8":
        made_for, settings = targets.of_model(loaded[0][0].metadata)
        if target == "x86_64" and made_for not in (None, "x86-avx2") and not targets.exact_everywhere(settings):
            notes.append(f"{sources[0].name} is quantized for {made_for} with 8-bit weights, which saturate in the "
                         f"int8 kernels of x86 CPUs without VNNI; quantize it with --target {target} for this bundle")
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    first = loaded[0][0]
    manifest = {
        "format": 1,
        "dlkit_version": _dlkit_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": target,
        "target_description": spec.description,
        "machine": spec.machine,
        "threads": threads or spec.threads,
        "models": entries,
        "inputs": [t.to_dict() for t in first.inputs],
        "outputs": [t.to_dict() for t in first.outputs],
        "labels": list(first.labels) if first.labels else None,
        "preprocessing": first.metadata.get("preprocessing"),
        "requirements": list(REQUIREMENTS) + (list(IMAGE_REQUIREMENTS) if _takes_images(first) else [])
        + (list(SERVE_REQUIREMENTS) if serve else []),
        "serve": bool(serve),
        "advice": spec.advice,
    }
    files = _files(manifest, [data for _, data in loaded], spec)
    stem = output.name.removesuffix(".tar.gz").removesuffix(".tgz") if archive else output.name
    if archive:
        size = _write_archive(output, stem, files)
    else:
        size = _write_folder(output, files)
    if check_on_device:
        from dlkit.device.check import check_written
    checked = check_written(output, archive, target, entries[0]) if check_on_device else None
    return BundleResult(str(output), target, tuple(entries), tuple(sorted(files)), size, manifest["threads"],
                        tuple(notes), checked)



def unpack(archive: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Extracts a bundle archive into `destination`, refusing members that would land outside it.

    Every member is checked first (absolute paths, `..`, links pointing outside, devices), then extracted with
    tarfile's `data` filter, which enforces the same again.

    Args:
        archive: the `.tar.gz` file.
        destination: the folder to extract into (created when missing).

    Returns:
        The bundle folder inside `destination` (the archive's one top-level folder).

    Raises:
        InvalidInputError: not a tar archive, or a member escaping `destination`.
    """
    archive, destination = Path(archive), Path(destination)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            destination.mkdir(parents=True, exist_ok=True)
            try:
                tar.extractall(destination, members=members, filter="data")
            except tarfile.FilterError as err:
                raise InvalidInputError(f"'{archive}' has an unsafe member ({err}); do not use this archive") from err
    except (tarfile.TarError, OSError) as err:
        raise InvalidInputError(f"cannot read bundle archive '{archive}' ({err}); give the .tar.gz dlkit bundle made") from err
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    return destination / tops.pop() if len(tops) == 1 else destination


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    path = PurePosixPath(member.name)
    unsafe = None
    if member.name.startswith(("/", "\\")) or (len(member.name) > 1 and member.name[1] == ":"):
        unsafe = "an absolute path"
    elif ".." in path.parts or "\\" in member.name:
        unsafe = "a '..' component" if ".." in path.parts else "a backslash"
    elif member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        base = path.parent if member.issym() else PurePosixPath()
        depth = 0
        for part in (base / link).parts if not link.is_absolute() else ("..",):
            depth = depth - 1 if part == ".." else depth + (part != ".")
            if depth < 0:
                unsafe = f"a link to '{member.linkname}' outside the folder"
                break
    elif not (member.isfile() or member.isdir()):
        unsafe = "a device or other special file"
    if unsafe:
        raise InvalidInputError(f"'{archive}' member '{member.name}' is {unsafe}: it would escape the target folder; "
                                "refusing to unpack it")


def _check_output(output: Path, archive: bool, force: bool, sources: list[Path]) -> None:
    if archive:
        files_io.output_path(output, suffix=".tar.gz", force=force)
        if any(output.resolve() == p.resolve() for p in sources):
            raise InvalidInputError(f"output '{output}' is an input model; choose another path")
        return
    if output.exists() and not output.is_dir():
        raise InvalidInputError(f"output '{output}' is a file; give a folder for the bundle (or a .tar.gz path)")
    real = output.resolve()
    guarded = [Path.cwd().resolve(), Path.home().resolve(), *(p.resolve() for p in sources)]
    if real == Path(real.anchor) or any(real == g or real in g.parents for g in guarded):
        raise InvalidInputError(f"output folder '{output}' holds the current folder, your home or an input model, "
                                "which replacing it would delete; give a new folder for the bundle")
    if output.is_dir() and any(output.iterdir()):
        if not force:
            raise InvalidInputError(f"output folder '{output}' is not empty; pass --force (force=True) to replace its "
                                    "contents, or give a new folder")
        if not (output / "manifest.json").is_file():
            raise InvalidInputError(f"output folder '{output}' is not empty and is not a dlkit bundle (no manifest.json);"
                                    " --force replaces only a bundle, so give a new folder")
    if not output.parent.is_dir():
        raise InvalidInputError(f"output folder '{output.parent}' does not exist; create it first")


def _takes_images(model) -> bool:
    """One input shaped like pictures: (N, H, W, C) or (N, C, H, W) with 1, 3 or 4 channels, or preprocessing hints
    from the export."""
    if len(model.inputs) != 1:
        return False
    shape = model.inputs[0].shape
    return (len(shape) == 4 and (shape[-1] in (1, 3, 4) or shape[1] in (1, 3, 4))) or \
        isinstance(model.metadata.get("preprocessing"), dict)


def _load(path: Path, model_class):
    if not path.is_file():
        raise InvalidInputError(f"model '{path}' does not exist or is not a file; give an .onnx file")
    data = path.read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model_class(path, threads=1), data
    except InvalidInputError as err:
        raise InvalidInputError(f"'{path}' is not an ONNX model onnxruntime can load; bundle the .onnx file that "
                                f"dlkit export or dlkit quantize wrote ({err})") from err


def _check_same_signature(a, b, sources) -> None:
    if [t.name for t in a.inputs] != [t.name for t in b.inputs]:
        raise InvalidInputError(f"'{sources[1]}' has inputs {', '.join(map(str, b.inputs))}, '{sources[0]}' has "
                                f"{', '.join(map(str, a.inputs))}; --float-model must be the same model in float")


def _precision(data: bytes, metadata: dict) -> str:
    quantization = metadata.get("quantization")
    if isinstance(quantization, str) and "fp16" in quantization:
        return "float16"
    if quantization or any(op in data for op in (b"QuantizeLinear", b"MatMulInteger", b"ConvInteger", b"QLinear")):
        return "int8"
    return "float32"


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _dlkit_version() -> str:
    import dlkit

    return dlkit.__version__


def _files(manifest: dict, datas: list[bytes], spec: Target) -> dict[str, bytes]:
    """Every file of the bundle, by relative path."""
    from dlkit.bundling import files as bundle_files
    from dlkit.core.runtime_sources import runtime_sources

    here = Path(bundle_files.__file__).parent
    files = {m["file"]: data for m, data in zip(manifest["models"], datas)}
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    files.update(runtime_sources())
    files["requirements.txt"] = ("\n".join(manifest["requirements"]) + "\n").encode()
    files["predict.py"] = (here / "predict.py").read_bytes()
    if manifest.get("serve"):
        files["serve.py"] = (here / "serve.py").read_bytes()
        files[f"{SERVE_SERVICE}.service.in"] = bundle_files.SERVE_SERVICE.format(model=manifest["models"][0]["file"],
                                                                               target=spec.name).encode()
    files["bench.py"] = (here / "bench.py").read_bytes()
    service = f"{SERVICE_NAME}.service"
    name = manifest["models"][0]["file"]
    files["install.sh"] = bundle_files.INSTALL_SH.format(machine=spec.machine, target=spec.name,
                                                         service=service).encode()
    files[f"{service}.in"] = bundle_files.SERVICE.format(service=service, name=SERVICE_NAME, model=name,
                                                         target=spec.name).encode()
    rows = "".join(f"| `{m['file']}` | the model ({m['precision']}{', default' if i == 0 else ''}), sha256 "
                   f"`{m['sha256'][:16]}...` |\n" for i, m in enumerate(manifest["models"]))
    tensors = "\n".join(f"- {kind} `{t['name']}`: {t['dtype']} {['N' if d is None else d for d in t['shape']]}"
                        for kind, key in (("input", "inputs"), ("output", "outputs")) for t in manifest[key])
    files["README.md"] = bundle_files.README.format(
        model=name, target_name=spec.description, version=manifest["dlkit_version"], created=manifest["created"],
        requirements=" and ".join(manifest["requirements"]), model_rows=rows, service=service, tensors=tensors,
        advice=spec.advice).encode()
    if manifest.get("serve"):
        files["README.md"] += bundle_files.SERVE_README.format(
            name=manifest["models"][0]["file"].removesuffix(".onnx"), service=f"{SERVE_SERVICE}.service").encode()
    return files


_EXECUTABLE = {"install.sh", "predict.py", "bench.py", "serve.py"}


def _write_folder(output: Path, files: dict[str, bytes]) -> int:
    """Writes into a temporary sibling folder, then swaps it into place: a failure leaves the old output."""
    files_io.build_folder(output, lambda tmp: _fill(tmp, files))
    return sum(len(d) for d in files.values())


def _fill(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755 if rel in _EXECUTABLE else 0o644)


def _write_archive(output: Path, stem: str, files: dict[str, bytes]) -> int:
    buffer = io.BytesIO()
    now = int(datetime.datetime.now().timestamp())
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo(f"{stem}/{rel}")
            info.size, info.mtime = len(files[rel]), now
            info.mode = 0o755 if rel in _EXECUTABLE else 0o644
            tar.addfile(info, io.BytesIO(files[rel]))

    files_io.write_atomic(output, buffer.getvalue())
    return output.stat().st_size


__all__ = ["TARGETS", "BundleResult", "bundle", "unpack"]
