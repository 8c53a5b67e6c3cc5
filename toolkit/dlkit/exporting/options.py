"""The options of `dlkit.export`, checked once at the public boundary before any heavy work."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from dlkit.core import dependencies as _deps
from dlkit.core import files as _files
from dlkit.core import sessions
from dlkit.core.tensors import TensorInfo, parse_input_spec, parse_renames
from dlkit.errors import InvalidInputError

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4  # see parity_checks.within_tolerance
DEFAULT_NUM_SAMPLES = 16


@dataclass(frozen=True)
class ExportPlan:
    """`dlkit.export`'s arguments, normalized: the output path resolved, input specs and renames parsed, labels
    read. The others as given (see `dlkit.export`)."""

    output: Path
    opset: int
    atol: float
    rtol: float
    input_specs: tuple[TensorInfo, ...]
    renames: Mapping[str, str]
    labels: list[str] | None
    preprocessing: Mapping[str, Any] | None
    sample_data: str | os.PathLike | Mapping[str, np.ndarray] | None
    num_samples: int
    batch_size: int | None
    simplify: bool
    native_rnn: bool
    safe_mode: bool
    custom_objects: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    with_decoding: bool | None = None

    @property
    def chunk(self) -> int:
        """Samples per run: a fixed batch runs the samples that many at a time."""
        return self.batch_size or sessions.BATCH

    def inputs_of(self, source) -> tuple[TensorInfo, ...]:
        """The source's inputs with the batch axis fixed to `batch_size`, when one is given."""
        batch = self.batch_size
        return tuple(TensorInfo(i.name, i.dtype, (batch, *i.shape[1:]) if batch and i.shape else i.shape)
                     for i in source.inputs)


def plan_export(model: Any, output: str | os.PathLike | None, *, force: bool, opset: int, atol: float, rtol: float,
                input_specs: Sequence[str | TensorInfo], rename: Mapping[str, str] | Sequence[str] | None,
                labels: str | os.PathLike | Sequence[str] | None, sample_data: Any, batch_size: int | None,
                **kept: Any) -> ExportPlan:
    """Checks `dlkit.export`'s arguments and returns them as an `ExportPlan`; `kept` pass through unchecked.

    Raises:
        InvalidInputError: an output that exists (without `force`) or is the model, a bad opset, atol, input
            spec, rename, labels file, sample data file or batch size.
    """
    out_path = _files.output_path(output, default_from=model if isinstance(model, (str, os.PathLike)) else None,
                                  suffix=".onnx", force=force)
    if isinstance(model, (str, os.PathLike)) and Path(model).resolve() == out_path.resolve():
        raise InvalidInputError(f"output '{out_path}' is the model itself; choose another output path")
    check_opset(opset)
    if not atol > 0 or not rtol >= 0:
        raise InvalidInputError(f"atol must be > 0 and rtol >= 0, got atol {atol} and rtol {rtol}")
    specs = tuple(s if isinstance(s, TensorInfo) else parse_input_spec(s) for s in input_specs)
    renames = parse_renames(rename)
    label_list = read_labels(labels)
    if isinstance(sample_data, (str, os.PathLike)) and not Path(sample_data).exists():
        raise InvalidInputError(f"sample data '{sample_data}' does not exist; give an .npy or .npz file, or a folder "
                                "of images")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidInputError(f"batch_size must be a positive integer (or None for a dynamic batch), got {batch_size!r}")
    kept["custom_objects"] = dict(kept.get("custom_objects") or {})
    return ExportPlan(output=out_path, opset=opset, atol=atol, rtol=rtol, input_specs=specs, renames=renames,
                      labels=label_list, sample_data=sample_data, batch_size=batch_size, **kept)


def check_opset(opset: int) -> int:
    """The highest opset tf2onnx knows, after checking `opset` is between 13 and it."""
    constants = _deps.require("tf2onnx", "dlkit export").constants
    highest = max(constants.OPSET_TO_IR_VERSION)
    if not isinstance(opset, int) or not 13 <= opset <= highest:
        raise InvalidInputError(f"opset {opset} is not supported; choose one from 13 to {highest} (default {DEFAULT_OPSET})")
    return highest


def read_labels(labels: Any) -> list[str] | None:
    """Class labels from a text file (one per line) or a sequence, else None."""
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not path.is_file():
            raise InvalidInputError(f"labels file '{path}' does not exist; give a text file with one label per line")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [str(label) for label in labels]


def check_renames(renames: Mapping[str, str], inputs, outputs: Sequence[str]) -> None:
    """Each OLD names an input or output; no two inputs or outputs end up with one name."""
    if not renames:
        return
    input_names = [i.name for i in inputs]
    unknown = [old for old in renames if old not in input_names and old not in outputs]
    if unknown:
        raise InvalidInputError(f"--rename names {unknown}, which the model does not have; its inputs are "
                                f"{input_names} and its outputs {list(outputs)}")
    for kind, names in (("inputs", input_names), ("outputs", list(outputs))):
        renamed = [renames.get(n, n) for n in names]
        if len(set(renamed)) != len(renamed):
            raise InvalidInputError(f"--rename gives two {kind} one name ({renamed}); choose unused names")
