"""LiteRT (TFLite) contestants for the speed race: float and full-integer int8, run by the LiteRT interpreter
(XNNPACK delegate, one thread). Conversion goes through a SavedModel, the path Keras 3 models convert by."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np


def litert_models(model: Any, name: str, folder: Path, order: list[str], calib: Path) -> dict[str, Callable | None]:
    """kind ("float", "int8") -> factory(batch, data) -> a callable that runs one inference; None if unavailable."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return {}
    import tensorflow as tf

    saved = folder / f"{name}_savedmodel"
    _save(model, name, saved)
    calibration = np.load(calib)
    out = {}
    for kind in ("float", "int8"):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if kind == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

            def representative(data=calibration):
                for i in range(100):
                    yield [data[k][i:i + 1] for k in order]  # positional: signature keys differ (args_0)

            converter.representative_dataset = representative
        try:
            content = converter.convert()
        except Exception:  # e.g. the GRU's TensorList ops need Select TF ops, which LiteRT's builtins lack
            out[kind] = None
            continue
        out[kind] = _factory(Interpreter, content, order)
    return out


def _save(model: Any, name: str, path: Path) -> None:
    import tensorflow as tf

    if name != "char_gru":
        model.export(path, format="tf_saved_model", verbose=False)
        return
    module = tf.Module()
    module.model_variables = list(model.variables)

    @tf.function(input_signature=[tf.TensorSpec((None, 100), tf.int32, name="x"),
                                  tf.TensorSpec((None, 256), tf.float32, name="hidden")])
    def serve(x, hidden):
        logits, state = model(x, hidden, training=False)
        return {"logits": logits, "state": state}

    tf.saved_model.save(module, str(path), signatures={"serving_default": serve.get_concrete_function()})


def _factory(interpreter_cls, content: bytes, order: list[str]) -> Callable:
    def make(batch: int, data: dict[str, np.ndarray]) -> Callable:
        interpreter = interpreter_cls(model_content=content, num_threads=1)
        details = interpreter.get_input_details()
        index = {}
        for key in order:
            match = next((d for d in details if key in d["name"]), details[order.index(key)])
            index[key] = match["index"]
            interpreter.resize_tensor_input(match["index"], [batch, *data[key].shape[1:]])
        interpreter.allocate_tensors()
        outputs = [d["index"] for d in interpreter.get_output_details()]

        def run():
            for key, i in index.items():
                interpreter.set_tensor(i, data[key])
            interpreter.invoke()
            return [interpreter.get_tensor(o) for o in outputs]

        return run

    return make
