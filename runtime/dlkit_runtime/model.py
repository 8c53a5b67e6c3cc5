"""`Model`: an ONNX model loaded for inference, with checked inputs, named outputs and dlkit's metadata."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from dlkit_runtime import providers as _providers
from dlkit_runtime.checks import InputChecker
from dlkit_runtime.classes import Prediction, output_kind, ranked, top_classes  # noqa: F401 (re-exported)
from dlkit_runtime.errors import InvalidInputError, ProviderError
from dlkit_runtime.tensors import from_node_arg
from dlkit_runtime.text import TextVectorizer

_ort_errors = getattr(ort.capi, "onnxruntime_pybind11_state", None)
_EPFail = getattr(_ort_errors, "EPFail", RuntimeError)
# onnxruntime's verdicts on the values it was fed (an index out of range, a shape a Reshape cannot take, ...)
_RunFail = tuple(getattr(_ort_errors, name) for name in ("InvalidArgument", "Fail", "RuntimeException")
                 if hasattr(_ort_errors, name)) or (RuntimeError,)
_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_JSON_KEYS = ("labels", "preprocessing", "input_layout", "parity", "output_kinds", "text_vectorization", "audio")


class Model:
    """An ONNX model ready to run: `Model("cnn.onnx").predict(x)`.

    One `Model` may be shared between threads: `predict` keeps no state between calls.

    Args:
        path: the `.onnx` file.
        providers: execution providers in order of preference, by short name (`cpu`, `cuda`, `tensorrt`,
            `xnnpack`, `acl`, `coreml`, `openvino`, `dml`, `qnn`) as a list or "cuda,cpu". Defaults to None:
            every one the installed onnxruntime has, in its priority order.
        threads: intra-op threads. Defaults to None: the machine's physical cores.
        strict: raise `ProviderError` when a requested provider is missing or inactive instead of warning.
            Defaults to False.
        spinning: let idle threads spin for work (faster, burns CPU). Defaults to True, as onnxruntime.
        optimization: graph optimizations, "disable", "basic", "extended" or "all". Defaults to "all".
        optimized_path: save the graph optimized for this device here (load it later with
            `optimization="disable"`). Defaults to None.
        memory_arena: keep onnxruntime's CPU memory arena (faster, holds on to peak memory). Defaults to True.
        device_id: the GPU or NPU for CUDA, TensorRT and DirectML. Defaults to 0.
        fp16: let TensorRT build fp16 engines. Defaults to False.
        cache_dir: TensorRT's (and OpenVINO's) engine cache folder. Defaults to None.
        sha256: the hex sha256 the file must have (a bundle's manifest records it); the bytes are hashed and then
            loaded from memory, so the checked bytes are the ones that run. Defaults to None: no check.

    Raises:
        InvalidInputError: a missing or unreadable file, an unknown provider or option.
        IntegrityError: `sha256` is given and the file's bytes differ (`dlkit_runtime.integrity`).
        ProviderError: `strict=True` and a requested provider is missing or onnxruntime did not activate it.

    Example:

    >>> model = Model("cnn.onnx", providers=["cuda", "cpu"])   # warns and runs on CPU without a GPU
    >>> model.providers
    ('cpu',)
    >>> model.predict(x)["digit"].shape
    (16, 10)
    """

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] | None = None,
                 threads: int | None = None, strict: bool = False, *, spinning: bool = True,
                 optimization: str = "all", optimized_path: str | os.PathLike | None = None,
                 memory_arena: bool = True, device_id: int = 0, fp16: bool = False,
                 cache_dir: str | os.PathLike | None = None, sha256: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidInputError(f"model '{self.path}' does not exist or is not a file; give an .onnx file")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InvalidInputError(f"threads must be a positive integer, got {threads!r}")
        if optimization not in _OPTIMIZATION:
            raise InvalidInputError(f"optimization {optimization!r} is not one of {', '.join(_OPTIMIZATION)}")
        self.threads = threads or physical_cores()
        requested, self.skipped_providers = _providers.resolve(
            providers, ort.get_available_providers(), strict=strict, threads=self.threads, device_id=device_id,
            fp16=fp16, cache_dir=None if cache_dir is None else str(cache_dir))
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: onnxruntime's fallback notices are reported by us instead
        # XNNPACK runs its own pool; onnxruntime's docs advise one intra-op thread beside it
        options.intra_op_num_threads = 1 if requested[0][0] == "XnnpackExecutionProvider" else self.threads
        options.inter_op_num_threads = 1
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = _OPTIMIZATION[optimization]
        if optimized_path is not None:
            options.optimized_model_filepath = str(optimized_path)
        options.enable_cpu_mem_arena = memory_arena
        source = str(self.path)
        if sha256 is not None:
            from dlkit_runtime.integrity import check_sha256  # here: hashlib (OpenSSL) only when a hash is asked for

            source = self.path.read_bytes()
            check_sha256(source, sha256, self.path)
        try:
            # onnxruntime prints its provider-fallback banner ("*** EP Error ...") with print(): keep it off stdout
            with contextlib.redirect_stdout(io.StringIO()):
                self._session = ort.InferenceSession(source, sess_options=options,
                                                     providers=[name for name, _ in requested],
                                                     provider_options=[opts for _, opts in requested])
        except Exception as err:  # onnxruntime raises its own classes (Fail, InvalidProtobuf, ...) or RuntimeError
            detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
            if isinstance(err, UnicodeError):
                detail = f"a name or text in it is not UTF-8 ({detail}): the file is damaged"
            raise InvalidInputError(f"onnxruntime cannot load '{self.path}': {detail}") from err
        self.providers = tuple(_providers.short_name(p) for p in self._session.get_providers())
        inactive = [_providers.short_name(n) for n, _ in requested
                    if _providers.short_name(n) not in self.providers]
        if inactive:
            message = (f"onnxruntime did not activate {', '.join(inactive)} for '{self.path.name}' "
                       f"(running on {', '.join(self.providers)}); check the provider's libraries and drivers")
            if strict:
                raise ProviderError(message)
            warnings.warn(message, _providers.ProviderWarning, stacklevel=2)
        self.inputs = tuple(from_node_arg(a) for a in self._session.get_inputs())
        self.outputs = tuple(from_node_arg(a) for a in self._session.get_outputs())
        try:
            self.metadata = decode_metadata(self._session.get_modelmeta().custom_metadata_map)
        except UnicodeDecodeError as err:  # onnxruntime hands the metadata over as it is stored
            raise InvalidInputError(f"'{self.path}' is a damaged ONNX file: its metadata is not UTF-8 text ({err.reason} "
                                    "at byte {err.start}); re-save or re-export the model") from err
        self._output_names = [o.name for o in self.outputs]
        # a text model exported with its Keras TextVectorization: strings in, vectorized here (dlkit_runtime.text)
        self.vectorizer = TextVectorizer.from_metadata(self.metadata)
        # onnxruntime's public run() re-checks what InputChecker has checked (a few microseconds a call, most of
        # the runtime's cost at batch 1) and prints its provider fallback to stdout; the binding it wraps runs the
        # same graph, so call that, and report a provider failure as ProviderError instead.
        self._run = getattr(self._session, "_sess", self._session).run
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # a failed run raises; onnxruntime need not also log it
        self._check = InputChecker(self.inputs)

    @property
    def labels(self) -> tuple[str, ...] | None:
        """Class labels stored by `dlkit export --labels`, or None."""
        labels = self.metadata.get("labels")
        return tuple(map(str, labels)) if isinstance(labels, list) else None

    @property
    def session(self) -> ort.InferenceSession:
        """The underlying `onnxruntime.InferenceSession`, for what this class does not cover."""
        return self._session

    def predict(self, x: Any, *, outputs: Sequence[str] | None = None, cast: bool = False) -> dict[str, np.ndarray]:
        """Runs the model on a batch.

        Args:
            x: an array (a model with one input) or a dict of arrays keyed by input name, batch axis first; for a
                text model (`vectorizer` is not None) also strings: `["some text", ...]`.
            outputs: the output names to compute. Defaults to None: all.
            cast: cast inputs to the model's dtypes even when it loses precision. Defaults to False: only lossless
                casts (uint8 -> float32) happen.

        Returns:
            A dict of arrays keyed by output name.

        Raises:
            InvalidInputError: a missing or unknown input name, or a wrong rank, dimension or dtype; or values
                onnxruntime rejects while running (an index out of range, a size a Reshape cannot take).
            ProviderError: the execution provider failed while running.
        """
        if self.vectorizer is not None:
            x = self.vectorizer.feed(x)
        feed = self._check(x, cast=cast)
        names = self._output_names if outputs is None else self._check_output_names(outputs)
        try:
            results = self._run(names, feed, self._run_options)
            return {names[0]: results[0]} if len(names) == 1 else dict(zip(names, results))
        except _EPFail as err:
            raise ProviderError(f"{', '.join(self.providers)} failed while running '{self.path.name}': "
                                f"{str(err).strip().splitlines()[0]}; try providers=['cpu']") from err
        except _RunFail as err:
            raise InvalidInputError(f"onnxruntime could not run '{self.path.name}' on these inputs "
                                    f"({ort_message(err)}); check the values (e.g. token ids below the vocabulary "
                                    "size) and the dynamic dimensions the model accepts") from err

    __call__ = predict

    def predict_batches(self, data: Any, batch_size: int = 32, *, cast: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """Runs the model over data too large for one call, one batch at a time.

        Args:
            data: an array or a dict of arrays (batch axis first), sliced into batches; or any iterable of single
                samples (arrays or dicts, no batch axis), stacked into batches as they come.
            batch_size: samples per run. Defaults to 32.
            cast: as in `predict`. Defaults to False.

        Yields:
            The outputs of each batch, as `predict` returns them.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(data, np.ndarray) or isinstance(data, Mapping):
            arrays = dict(data) if isinstance(data, Mapping) else {None: data}
            total = len(next(iter(arrays.values())))
            for start in range(0, total, batch_size):
                batch = {k: v[start:start + batch_size] for k, v in arrays.items()}
                yield self.predict(batch[None] if None in batch else batch, cast=cast)
            return
        pending: list[Any] = []
        for sample in data:
            pending.append(sample)
            if len(pending) == batch_size:
                yield self.predict(_stack(pending), cast=cast)
                pending = []
        if pending:
            yield self.predict(_stack(pending), cast=cast)

    def output_kind(self, name: str | None = None) -> str:
        """What output `name` (default: the first) holds: "logit", "probability", "log_probability", or "score"
        when the metadata does not say (`dlkit export` records it)."""
        return output_kind(self.metadata, name or self._output_names[0])

    def classify(self, x: Any, top_k: int = 5, *, output: str | None = None, cast: bool = False,
                 softmax: bool = False) -> list[list[Prediction]]:
        """The `top_k` classes of each sample, best first, named by the model's labels.

        Args:
            x: as in `predict`.
            top_k: classes per sample. Defaults to 5.
            output: the output holding class scores. Defaults to None: the first output.
            cast: as in `predict`. Defaults to False.
            softmax: give probabilities (softmax of logits). Defaults to False: the output's own values.

        Returns:
            One list of `Prediction`s per sample, each saying what its score is (`Prediction.kind`).
        """
        name = output or self._output_names[0]
        return ranked(self.predict(x, outputs=[name], cast=cast)[name], top_k, self.labels, name,
                      self.output_kind(name), softmax)

    def _check_output_names(self, names: Sequence[str]) -> list[str]:
        unknown = [n for n in names if n not in self._output_names]
        if unknown:
            raise InvalidInputError(f"unknown output(s) {', '.join(map(repr, unknown))}; the model's outputs are "
                                    f"{', '.join(map(repr, self._output_names))}")
        return list(names)

    def __repr__(self) -> str:
        return (f"Model('{self.path}', inputs=[{', '.join(map(str, self.inputs))}], "
                f"outputs=[{', '.join(map(str, self.outputs))}], providers={list(self.providers)})")


def _stack(samples: list[Any]) -> Any:
    if isinstance(samples[0], Mapping):
        return {k: np.stack([np.asarray(s[k]) for s in samples]) for k in samples[0]}
    return np.stack([np.asarray(s) for s in samples])


def decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """dlkit's `dlkit.*` keys under their short names (JSON ones decoded); other keys as they are."""
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        short = key[len("dlkit."):] if key.startswith("dlkit.") else key
        if short in _JSON_KEYS and key.startswith("dlkit."):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        meta[short] = value
    return meta


def physical_cores() -> int:
    """The machine's physical cores (Linux: distinct core ids in /proc/cpuinfo), else the logical count."""
    try:
        cores, physical = set(), "0"
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    cores.add((physical, value.strip()))
        if cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


def ort_message(err: Exception) -> str:
    """A one-line summary of an onnxruntime error."""
    text = " ".join(str(err).split()) or type(err).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    node = re.search(r"while running (\w+) node\. Name:'([^']*)' Status Message: (.*)", text)
    if node:
        op, name, status = node.groups()
        status = re.sub(r"^/\S+:\d+ (?:\S+\(.*?\) )?", "", status)
        text = f"{op} node {name!r}: {status}" if name else f"{op} node: {status}"
    return text[:300]
