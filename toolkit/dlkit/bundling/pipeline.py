"""`dlkit.bundle`: a self-contained folder (or .tar.gz) that runs an ONNX model on a Raspberry Pi or another device.

The bundle holds the model, `manifest.json` (with the model's sha256, checked by the runtime at load),
the `dlkit_runtime` package, pinned `requirements.txt`, `install.sh`, `predict.py`, `bench.py`, a systemd unit and a
README with the two commands to type on the device.
"""

from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dlkit.bundling.archive import unpack, write_archive, write_folder
from dlkit.bundling.contents import bundle_files
from dlkit.core import catalogue, targets
from dlkit.core import files as files_io
from dlkit.core.catalogue import IMAGE_REQUIREMENTS, REQUIREMENTS, SERVE_REQUIREMENTS, Device
from dlkit.core.memory import RunMemory, run_memory
from dlkit.core.precision import MANIFEST_NAMES, precision
from dlkit.errors import InvalidInputError
from dlkit_runtime.integrity import sha256_bytes

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
        memory: the default model's run-time memory (`dlkit.core.memory.RunMemory.to_dict()`: peak resident memory
            of loading it and one batch-1 inference, measured natively here), with the target's budget if it has one.
    """

    path: str
    target: str
    models: tuple[dict, ...]
    files: tuple[str, ...]
    size_bytes: int
    threads: int
    warnings: tuple[str, ...] = field(default=())
    device_check: dict | None = None  # check_on_device: `dlkit.device.check.DeviceCheck.to_dict()`
    memory: dict | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "target": self.target, "models": [dict(m) for m in self.models],
                "files": list(self.files), "size_bytes": self.size_bytes, "threads": self.threads,
                "warnings": list(self.warnings), "device_check": self.device_check, "memory": self.memory}


def bundle(model: str | os.PathLike, output: str | os.PathLike, *, target: str = catalogue.BUNDLE_DEFAULT,
           float_model: str | os.PathLike | None = None, threads: int | None = None, force: bool = False,
           serve: bool = False, check_on_device: bool = False,
           stage: Callable[[str], None] | None = None) -> BundleResult:
    """Makes a folder (or a `.tar.gz` of it) that installs and runs `model` on a device with two commands.

    Args:
        model: the `.onnx` file (float or int8) to run.
        output: the bundle folder, or a path ending in `.tar.gz` / `.tgz` for an archive of it.
        target: "rpi4", "rpi5", "rpi-zero2", "aarch64" or "x86_64": sets thread defaults, advice and the memory
            budget (the Zero 2 W's 512 MB). Defaults to "rpi4".
        float_model: the float model an int8 `model` came from, bundled beside it so that the on-device `bench.py`
            can say which is faster there. Defaults to None.
        threads: intra-op threads on the device. Defaults to None: the target's (4 on a Pi, else physical cores).
        force: replace an existing non-empty folder or archive. Defaults to False.
        serve: add `serve.py` (the model over HTTP, Open Inference Protocol), a `dlkit-serve` systemd unit and
            the server's requirements (uvicorn, starlette). Defaults to False.
        check_on_device: then run the bundle's own predict.py on a few random inputs on the target's emulated CPU
            (`dlkit.device`; rpi4, rpi5, rpi-zero2, aarch64, on Raspberry Pi OS trixie's Python 3.13) and compare
            it with this host; a failed check removes the bundle.
        stage: called with each slow stage's name as it starts, for a status line. Defaults to None.

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
    spec = _check_arguments(target, threads, check_on_device)
    stage = stage or (lambda name: None)
    output = Path(output).absolute()
    archive = output.name.endswith((".tar.gz", ".tgz"))
    sources = [Path(model)] + ([Path(float_model)] if float_model is not None else [])
    _check_output(output, archive, force, sources)
    loaded = [_load(path) for path in sources]
    entries = _entries(sources, loaded)
    if float_model is not None:
        _check_same_signature(loaded[0][0], loaded[1][0], sources)
        if entries[1]["precision"] == "int8":
            raise InvalidInputError(f"--float-model '{sources[1]}' is an int8 model; give the float model")
    stage(f"choosing the precision for the {spec.name}")
    sources, loaded, entries, chosen = _float_first_if_int8_costs_more(spec, sources, loaded, entries)
    notes = chosen + _advice(spec, sources[0].name, entries[0]["precision"], loaded[0][0].metadata,
                             float_model is not None)
    stage("measuring the model's run-time memory (a fresh process, one inference)")
    memory = run_memory(sources[0], loaded[0][0].inputs, threads=threads or spec.threads or os.cpu_count() or 1,
                        budget_bytes=spec.memory_budget_bytes)
    if memory.over_budget:
        notes.append(_memory_warning(spec, sources[0].name, memory))
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    manifest = {**_manifest(spec, loaded[0][0], entries, threads, serve), "memory": memory.to_dict()}
    files = bundle_files(manifest, [data for _, data in loaded], spec)
    size = write_archive(output, output.name.removesuffix(".tar.gz").removesuffix(".tgz"), files) if archive \
        else write_folder(output, files)
    checked = None
    if check_on_device:
        from dlkit.device.check import check_written

        stage(f"checking the bundle on the emulated {target} (its predict.py on its own CPU and OS)")
        checked = check_written(output, archive, target, entries[0])
    return BundleResult(str(output), target, tuple(entries), tuple(sorted(files)), size, manifest["threads"],
                        tuple(notes), checked, memory.to_dict())


def _check_arguments(target: str, threads: int | None, check_on_device: bool) -> Device:
    """The target's catalogue entry, once the arguments are known good (before any work)."""
    if target not in catalogue.DEVICES:
        raise InvalidInputError(f"target {target!r} is not one of {', '.join(catalogue.DEVICES)}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InvalidInputError(f"threads must be a positive integer, got {threads!r}")
    if check_on_device and target not in catalogue.EMULATED:
        raise InvalidInputError(f"check_on_device emulates an ARM target ({', '.join(catalogue.EMULATED)}); an "
                                f"{target} bundle runs here as it is: run its predict.py")
    return catalogue.DEVICES[target]


def _entries(sources: list[Path], loaded: list) -> list[dict]:
    """The manifest's line per model file: its name in the bundle, sha256, size and precision."""
    entries = []
    for i, (path, (onnx_model, data)) in enumerate(zip(sources, loaded)):
        name = path.name if i == 0 or path.name != sources[0].name else f"{path.stem}_float.onnx"
        kind = precision(data, onnx_model.metadata, feature="dlkit bundle").kind
        entries.append({"file": name, "sha256": sha256_bytes(data), "size_bytes": len(data),
                        "precision": MANIFEST_NAMES[kind]})
    return entries


def _advice(spec: Device, name: str, kind: str, metadata: dict, has_float: bool) -> list[str]:
    """Warnings for an int8 model on a CPU where int8 may not pay, or whose kernels saturate its weights."""
    notes = []
    if kind == "int8" and spec.dot_product is False:
        notes.append(f"{name} is int8 and the {spec.name} CPU has no dot-product instructions: int8 may be no "
                     "faster than float there; the bundle's bench.py tells the user which file to run"
                     + ("" if has_float else " (bundle the float model too with --float-model)"))
    if kind == "int8":
        made_for, settings = targets.of_model(metadata)
        if spec.preset == catalogue.PORTABLE_PRESET and made_for not in (None, spec.preset) \
                and not targets.exact_everywhere(settings):
            notes.append(f"{name} is quantized for {made_for} with 8-bit weights, which saturate in the "
                         f"int8 kernels of x86 CPUs without VNNI; quantize it with --target {spec.name} for this "
                         "bundle")
    return notes


def _float_first_if_int8_costs_more(spec: Device, sources: list, loaded: list, entries: list[dict]):
    """The float model as the bundle's default (first) when the int8 one's measured payoff (`dlkit quantize`'s,
    in its metadata) says int8 costs more on this bundle's device; with a note either way that it does."""
    payoff = _payoff(loaded[0][0].metadata) if entries[0]["precision"] == "int8" else None
    if payoff is None or payoff.get("pays") is not False or not _measured_on(spec, str(payoff.get("where", ""))):
        return sources, loaded, entries, []
    cost = (f"{sources[0].name} costs {payoff['int8_cost'] / payoff['float_cost']:.2f}x float's "
            f"{'time' if payoff['unit'] == 'ms' else 'instructions'} on {payoff['where']} at batch {payoff['batch']} "
            "(dlkit quantize measured it)")
    if len(sources) < 2:
        return sources, loaded, entries, [f"{cost}: bundle the float model instead, or beside it with --float-model "
                                          "(it then becomes the default)"]
    note = (f"{cost}: the float model {entries[1]['file']} is this bundle's default; predict.py --model "
            f"{entries[0]['file']} runs the int8 one")
    return sources[::-1], loaded[::-1], entries[::-1], [note]


def _payoff(metadata: dict) -> dict | None:
    payoff = targets.quantization_info(metadata).get("payoff")
    return payoff if isinstance(payoff, dict) and payoff.get("float_cost") else None


def _measured_on(spec: Device, where: str) -> bool:
    """A payoff counted on this device's emulated core, or timed on an x86 host for an x86-64 bundle."""
    return where.startswith(f"{spec.name} (") or (spec.machine == "x86_64" and where.startswith("host (x86"))


def _memory_warning(spec: Device, name: str, memory: RunMemory) -> str:
    mb = 1024 * 1024
    return (f"{name} needs {memory.peak_rss_bytes / mb:.0f} MB at run time (peak resident memory of loading it and one "
            f"inference, measured here), over the {memory.budget_bytes / mb:.0f} MB a {spec.name} can spare of its "
            f"{(spec.memory_bytes or 0) / mb:.0f} MB; bundle the int8 model or a smaller one, or expect swapping")


def _manifest(spec: Device, first, entries: list[dict], threads: int | None, serve: bool) -> dict:
    """`manifest.json`: what the bundle holds and was made for; the runtime checks the models' sha256 at load."""
    return {
        "format": 1,
        "dlkit_version": _dlkit_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": spec.name,
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
        "tested_with": [s.to_dict() for s in catalogue.SYSTEMS.values()],
        "advice": spec.advice,
    }


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


def _load(path: Path):
    from dlkit_runtime import Model

    if not path.is_file():
        raise InvalidInputError(f"model '{path}' does not exist or is not a file; give an .onnx file")
    data = path.read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Model(path, threads=1), data
    except InvalidInputError as err:
        raise InvalidInputError(f"'{path}' is not an ONNX model onnxruntime can load; bundle the .onnx file that "
                                f"dlkit export or dlkit quantize wrote ({err})") from err


def _check_same_signature(a, b, sources) -> None:
    if [t.name for t in a.inputs] != [t.name for t in b.inputs]:
        raise InvalidInputError(f"'{sources[1]}' has inputs {', '.join(map(str, b.inputs))}, '{sources[0]}' has "
                                f"{', '.join(map(str, a.inputs))}; --float-model must be the same model in float")


def _dlkit_version() -> str:
    import dlkit

    return dlkit.__version__


__all__ = ["BundleResult", "bundle", "unpack"]
