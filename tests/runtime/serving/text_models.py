"""Text models for the serving tests built without TensorFlow: an ONNX graph over token ids (onnx.helper) with the
`dlkit.text_vectorization` metadata `dlkit export` writes for a Keras TextVectorization layer, its vocabulary the
commonest words of the shipped Tiny Shakespeare slice; and real lines of that slice to send."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import numpy as np

from tests.speaker_text import SPEAKERS as LABELS  # the speakers the text tests' classifier tells apart

TEXT = Path(__file__).resolve().parents[3] / "sample_models" / "data" / "tinyshakespeare" / "input.txt"


def shakespeare_lines() -> list[str]:
    """The slice's spoken lines (not the speakers' names), in order."""
    lines = TEXT.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.endswith(":")]


def vocabulary(size: int) -> list[str]:
    """Keras' order for output_mode "int": the mask token, [UNK], then the commonest standardized words."""
    words = collections.Counter(re.sub(r"[^\w\s']|'", "", TEXT.read_text(encoding="utf-8").lower()).split())
    return ["", "[UNK]", *[w for w, _ in words.most_common(size - 2)]]


def text_model(path: Path, *, words: int = 400, length: int = 8, width: int = 64, hidden: int = 64) -> Path:
    """line int64 (N, length) token ids -> speaker float32 (N, 4): embedding, mean over the tokens, two dense
    layers (`hidden` wide: 1024 makes a run of 8 rows take about a millisecond), random fixed weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(27)
    weights = {"embedding": rng.standard_normal((words, width)), "w1": rng.standard_normal((width, hidden)) / 8,
               "w2": rng.standard_normal((hidden, len(LABELS))) / 8}
    graph = helper.make_graph(
        [helper.make_node("Gather", ["embedding", "line"], ["vectors"]),
         helper.make_node("ReduceMean", ["vectors"], ["mean"], axes=[1], keepdims=0),
         helper.make_node("MatMul", ["mean", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["speaker"])],
        "text", [helper.make_tensor_value_info("line", TensorProto.INT64, ["N", length])],
        [helper.make_tensor_value_info("speaker", TensorProto.FLOAT, ["N", len(LABELS)])],
        [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    settings = {"input": "line", "vocabulary": vocabulary(words), "standardize": "lower_and_strip_punctuation",
                "split": "whitespace", "ngrams": None, "output_mode": "int", "output_sequence_length": length,
                "dtype": "int64"}
    helper.set_model_props(model, {"dlkit.text_vectorization": json.dumps(settings),
                                   "dlkit.labels": json.dumps(LABELS)})
    onnx.save(model, path)
    return path
