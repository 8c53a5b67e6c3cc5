"""The models `dlkit.verify` runs: the candidates (on this host or an emulated device) and the reference."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from dlkit.core import sessions as sessions_
from dlkit.core.precision import Precision, precision
from dlkit.core.tensors import TensorInfo
from dlkit.errors import ShapeMismatchError
from dlkit_runtime import cpu


class Candidates(NamedTuple):
    """The candidates opened on this host: their `dlkit_runtime.Model`s, precisions and shared inputs."""

    hosted: tuple[Any, ...]
    kinds: tuple[Precision, ...]
    inputs: tuple[TensorInfo, ...]


class Run(NamedTuple):
    """One row of figures: a candidate's file, the model that computes them (on this host or the device), its
    precision, where it computed (`computed_on`) and whether its figures are judged."""

    path: Path
    model: Any
    precision: Precision
    computed_on: dict
    judged: bool


def open_candidates(paths: Sequence[Path]) -> Candidates:
    """The candidates on this host, after checking they share their inputs.

    Raises:
        ShapeMismatchError: two candidates take different inputs.
    """
    from dlkit_runtime import Model

    hosted = tuple(Model(p, threads=None) for p in paths)
    kinds = tuple(precision(p, m.metadata) for p, m in zip(paths, hosted))
    inputs = hosted[0].inputs
    for path, model in zip(paths[1:], hosted[1:]):
        same_inputs(f"candidate '{path}'", model.inputs, f"'{paths[0]}'", inputs)
    return Candidates(hosted, kinds, tuple(inputs))


def candidate_runs(paths: Sequence[Path], candidates: Candidates, emulator, also_host: bool) -> list[Run]:
    """Each candidate on this host, or on the device (and this host first, unjudged, with also_host)."""
    import onnxruntime

    host = cpu.host().to_dict()
    rows = []
    for path, model, info in zip(paths, candidates.hosted, candidates.kinds):
        on_host = {"where": "host", "emulated": False, "cpu": host,
                   "onnxruntime": {"version": onnxruntime.__version__, "providers": list(model.providers)}}
        if emulator is None or also_host:
            rows.append(Run(path, model, info, on_host, emulator is None))
        if emulator is not None:
            remote = emulator.load(path)
            on_device = emulator.computed_on()
            on_device["onnxruntime"] = {**on_device["onnxruntime"], "providers": list(remote.providers)}
            rows.append(Run(path, remote, info, on_device, True))
    return rows


def host_onnxruntime(candidates: Candidates) -> dict:
    """This host's onnxruntime version and the providers its candidates ran on."""
    import onnxruntime

    return {"version": onnxruntime.__version__, "providers": sorted({p for m in candidates.hosted
                                                                     for p in m.providers})}


def reference_runner(model: Any, inputs, safe_mode, custom_objects,
                     decoded: bool = False) -> tuple[str, Callable[[dict], dict]]:
    """A name for the reference and a function from a feed dict to named numpy outputs. `decoded`: the candidates
    hold a detector's decoding (`dlkit export --with-decoding`), so a Keras detector gives its predict()'s detections
    under the candidates' names rather than its raw heads."""
    if isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() == ".onnx":
        from dlkit_runtime import Model

        onnx_model = Model(model)
        same_inputs(f"reference '{model}'", onnx_model.inputs, "the candidates", inputs)
        return str(model), lambda batch: sessions_.predict(onnx_model, batch, None)
    from dlkit.exporting.keras_loading import load

    source = load(model, safe_mode=safe_mode, custom_objects=custom_objects)
    missing = [i.name for i in source.inputs if i.name not in {c.name for c in inputs}]
    if missing:
        raise ShapeMismatchError(f"the reference {source.description} takes inputs {[i.name for i in source.inputs]},"
                                 f" the candidates take {[i.name for i in inputs]}; export with --rename to match")
    import tensorflow as tf

    from dlkit.exporting.detection import is_detector, keras_detections

    def run(batch: dict) -> dict:
        if decoded and is_detector(source.keras_model):
            return keras_detections(source.keras_model, batch[source.inputs[0].name])
        out = source.call(*[tf.constant(batch[i.name]) for i in source.inputs])
        return {k: np.asarray(v) for k, v in out.items()}

    return str(model) if isinstance(model, (str, os.PathLike)) else source.description, run


def check_outputs(rows: Sequence[Run], probe: dict, expected: Mapping[str, np.ndarray]) -> None:
    """Every candidate gives the reference's output names and shapes on `probe`."""
    from dlkit.core.parity import compare

    for row in rows:
        try:
            compare(expected, sessions_.predict(row.model, probe, None))
        except ShapeMismatchError as err:
            raise ShapeMismatchError(f"candidate '{row.path}': {err}; the reference and candidates must have the same "
                                     "outputs (rename them at export with --rename)") from None


def same_inputs(name: str, got: Sequence[TensorInfo], other: str, want: Sequence[TensorInfo]) -> None:
    """Same input names, and the same size on every axis both fix."""
    if {i.name for i in got} != {i.name for i in want}:
        raise ShapeMismatchError(f"{name} takes inputs {[i.name for i in got]}, {other} take(s) "
                                 f"{[i.name for i in want]}; the models must share inputs")
    wanted = {i.name: i for i in want}
    for info in got:
        shape = wanted[info.name].shape
        clash = len(info.shape) != len(shape) or any(isinstance(a, int) and isinstance(b, int) and a != b
                                                     for a, b in zip(info.shape, shape))
        if clash:
            raise ShapeMismatchError(f"{name} takes input '{info.name}' as {_dims(info.shape)}, {other} as "
                                     f"{_dims(shape)}; compare models of the same input shape")


def _dims(shape) -> str:
    return "(" + ", ".join(str(d) if d is not None else "?" for d in shape) + ")"
