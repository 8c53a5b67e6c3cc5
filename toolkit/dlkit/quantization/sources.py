"""What quantize reads: the float model (checked, its output path chosen), the calibration and eval data, and the
check samples every candidate is compared on."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core import files as _files
from dlkit.core import metadata
from dlkit.core import sessions
from dlkit.core.datasources import DataSource, open_data
from dlkit.core.tensors import TensorInfo
from dlkit.errors import InvalidInputError
from dlkit.quantization.evaluation import check_samples


@dataclass(frozen=True)
class Source:
    """The float model and where its quantized twin goes.

    Attributes:
        path: the model file; files: it and its external weight files. model: its ModelProto; inputs: its graph
        inputs; metadata: its metadata props, "dlkit." keys without the prefix. out_path: the file to write.
    """

    path: Path
    files: tuple[Path, ...]
    model: Any
    inputs: tuple[TensorInfo, ...]
    metadata: dict[str, Any]
    out_path: Path


@dataclass(frozen=True)
class CheckSamples:
    """The samples every candidate is compared with the float model on.

    Attributes:
        feeds: the samples by input name. source: where they came from ("random" or a description).
        calib_stop: calibration samples the quantizer may read (those held back for the check are not).
    """

    feeds: dict[str, np.ndarray]
    source: str
    calib_stop: int

    @property
    def count(self) -> int:
        return len(next(iter(self.feeds.values())))

    @property
    def what(self) -> str:
        """The samples, as error messages name them."""
        return ("random samples; pass real ones with --calibration or --eval-data" if self.source == "random"
                else f"the check samples from {self.source}")


def load_source(model: str | os.PathLike, output: str | os.PathLike | None, *, mode: str, force: bool) -> Source:
    """Loads the float model and chooses the output path (MODEL.int8.onnx or MODEL.fp16.onnx by default).

    Raises:
        InvalidInputError: an unreadable model, an output that exists (without `force`) or is one of the model's
        files, or a model without float32 weights.
    """
    from dlkit.quantization.graph_preparation import load_onnx

    source_path = Path(model)
    float_model, data_files = load_onnx(source_path)
    suffix = ".fp16.onnx" if mode == "fp16" else ".int8.onnx"
    default = source_path.with_name(source_path.name.removesuffix(".onnx") + suffix)
    out_path = _files.output_path(output if output is not None else default, suffix=suffix, force=force)
    source_files = (source_path, *data_files)
    if any(out_path.resolve() == f.resolve() for f in source_files):
        raise InvalidInputError(f"output '{out_path}' is one of the input model's files; choose another path (inputs "
                                "are never overwritten)")
    _check_float32(float_model, source_path)
    return Source(source_path, source_files, float_model, sessions.graph_inputs(float_model),
                  metadata.read(float_model), out_path)


def open_data_sets(source: Source, calibration: str | os.PathLike | None, eval_data: str | os.PathLike | None,
                   max_accuracy_drop: float | None) -> tuple[DataSource | None, DataSource | None]:
    """The calibration data and the eval data, each checked against the model's inputs, or None.

    Raises:
        InvalidInputError: data that does not fit the model, or an accuracy bound without labelled eval data.
    """
    meta = source.metadata
    calib = open_data(calibration, source.inputs, metadata=meta, what="calibration data") if calibration else None
    evaluation = open_data(eval_data, source.inputs, metadata=meta, what="eval data") if eval_data else None
    if max_accuracy_drop is not None and (evaluation is None or evaluation.labels is None):
        raise InvalidInputError("max_accuracy_drop needs labelled eval data: --eval-data with inputs and labels 'y' "
                                "(or use --max-output-error without labels)")
    return calib, evaluation


def choose_check_samples(source: Source, calib: DataSource | None, evaluation: DataSource | None,
                         calibration_samples: int, seed: int) -> CheckSamples:
    """The eval data's first samples, else the calibration data's last ones (held back from calibration), else
    random ones."""
    calib_stop = 0 if calib is None else min(calib.count, calibration_samples)
    feeds, where = check_samples(calib, evaluation, source.inputs, calib_stop, seed)
    if calib is not None and evaluation is None and calib.count > 1:
        calib_stop = min(calib_stop, calib.count - len(next(iter(feeds.values()))))
    return CheckSamples(feeds, where, calib_stop)


def _check_float32(model, path: Path) -> None:
    """int8 and fp16 both start from float32 weights; an fp16 or already-int8 model has nothing left to gain."""
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    kinds = {t.data_type for t in model.graph.initializer if len(t.dims) >= 1 and math.prod(t.dims) > 1}
    if TensorProto.INT8 in kinds or TensorProto.UINT8 in kinds:
        if TensorProto.FLOAT not in kinds:
            raise InvalidInputError(f"'{path}' holds int8 weights, not float32: it is quantized already; quantize the "
                                    "float32 model it was made from")
    elif kinds & floats and TensorProto.FLOAT not in kinds:  # no float weights at all: nodes may generate them
        held = "float16" if TensorProto.FLOAT16 in kinds else "no float32"
        raise InvalidInputError(f"'{path}' holds {held} weights, not float32; quantize the float32 model it was "
                                "made from")
