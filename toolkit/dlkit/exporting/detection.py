"""`dlkit export --with-decoding`: a KerasHub detector's box decoding and non-max suppression in the ONNX graph.

KerasHub's `RetinaNetObjectDetector` is a functional model of raw heads (`bbox_regression`, box deltas per anchor,
and `cls_logits`); its `predict_step` decodes them in Python: anchors from its `AnchorGenerator`, deltas in
"center_xywh" applied to them (`keras.utils.bounding_boxes.decode_deltas_to_boxes`), sigmoid class scores, and its
`NonMaxSuppression` layer (class-agnostic on each anchor's best score, detections padded to `max_detections` with
-1). This module appends the same to the converted heads: the anchors of the exported image size as a constant,
the decoding as ONNX arithmetic, and ONNX `NonMaxSuppression`, so the file gives `boxes` (N, K, 4) in the model's
`bounding_box_format` and the image's pixels, `scores` (N, K), `classes` (N, K) and `num_detections` (N,), as
`model.predict` does. It is checked against Keras' own decoding: every detection matched by IoU >= 0.99 and class,
its score within `atol`.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import numpy as np

from dlkit.core import boxes as _boxes
from dlkit.errors import InvalidInputError, ToleranceError

OUTPUTS = ("boxes", "scores", "classes", "num_detections")
KINDS = {"boxes": "boxes", "scores": "scores", "classes": "classes", "num_detections": "count"}
KIND_MARK = "dlkit.kind="  # a graph output's doc_string that says what it holds (read by output_kinds)
MATCH_IOU = 0.99
_FORMATS = {"xyxy": None, "yxyx": [1, 0, 3, 2]}  # the decoded xyxy boxes reordered into the model's format
_KERAS_NAMES = {"boxes": "boxes", "confidence": "scores", "labels": "classes", "num_detections": "num_detections"}


class DetectionSpec(NamedTuple):
    """What the graph needs: anchors (A, 4) as center_xywh, the raw heads' output names, the box format, and the
    NonMaxSuppression settings of the model."""

    anchors: np.ndarray
    deltas: str
    logits: str
    box_format: str
    from_logits: bool
    iou_threshold: float
    score_threshold: float
    max_detections: int


def is_detector(keras_model: Any) -> bool:
    """A KerasHub detector whose predict_step decodes raw heads with anchors (RetinaNet)."""
    return all(hasattr(keras_model, a) for a in ("decode_predictions", "anchor_generator", "prediction_decoder"))


def spec_of(source, inputs, renames: Mapping[str, str]) -> DetectionSpec:
    """The decoding of `source`'s detector at the exported image size.

    Raises:
        InvalidInputError: not a KerasHub detector, an image size that is not fixed, a relative or unsupported box
            format, or a prediction decoder that is not KerasHub's NonMaxSuppression.
    """
    model = source.keras_model
    if model is None or not is_detector(model):
        raise InvalidInputError(f"--with-decoding needs a KerasHub object detector (RetinaNetObjectDetector), got "
                                f"{source.description}; export it without --with-decoding")
    image = inputs[0]
    if len(inputs) != 1 or len(image.shape) != 4 or not all(isinstance(d, int) for d in image.shape[1:]):
        raise InvalidInputError(f"--with-decoding needs a fixed image size to place the anchors, got input "
                                f"'{image.name}' of shape {list(image.shape)}; give --input "
                                f"'{image.name}:float32[N,HEIGHT,WIDTH,3]' (or --no-decoding for the raw heads)")
    decoder = model.prediction_decoder
    box_format = str(model.bounding_box_format).lower()
    if box_format not in _FORMATS or type(decoder).__name__ != "NonMaxSuppression" or \
            str(decoder.bounding_box_format).lower() not in _FORMATS:
        raise InvalidInputError(f"--with-decoding supports xyxy and yxyx boxes and KerasHub's NonMaxSuppression, got "
                                f"{box_format} boxes and {type(decoder).__name__}; export the raw heads with "
                                "--no-decoding and decode them yourself")
    return DetectionSpec(_anchors(model, image.shape[1:]), renames.get("bbox_regression", "bbox_regression"),
                         renames.get("cls_logits", "cls_logits"), box_format, bool(decoder.from_logits),
                         float(decoder.iou_threshold), float(decoder.confidence_threshold),
                         int(decoder.max_detections))


def _anchors(model: Any, image_shape) -> np.ndarray:
    """The anchors Keras places on an image of `image_shape`, as center_xywh (what the deltas are relative to)."""
    import keras

    levels = model.anchor_generator(np.zeros((1, *image_shape), np.float32))
    anchors = keras.ops.concatenate(list(levels.values()), axis=0)
    centered = keras.utils.bounding_boxes.convert_format(
        anchors, source=model.anchor_generator.bounding_box_format, target="center_xywh")
    return np.asarray(centered, np.float32)


def keras_detections(keras_model: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    """What `keras_model.predict(images)` gives (its predict_step: raw heads, then `decode_predictions`), under
    the ONNX file's output names."""
    raw = keras_model(images, training=False)
    decoded = keras_model.decode_predictions(raw, images)
    return {_KERAS_NAMES[k]: np.asarray(v) for k, v in decoded.items() if k in _KERAS_NAMES}


def add_decoding(model: Any, spec: DetectionSpec, opset: int) -> Any:
    """`model` (the converted raw heads) with the decoding and NonMaxSuppression appended; its outputs replaced by
    `OUTPUTS`, each marked with its kind."""
    import onnx
    from onnx import TensorProto, helper

    b = _Builder(spec, opset)
    b.decode()
    graph = model.graph
    if {spec.deltas, spec.logits} - {o.name for o in graph.output}:
        raise InvalidInputError(f"the converted detector has outputs {[o.name for o in graph.output]}, not "
                                f"'{spec.deltas}' and '{spec.logits}'; export it without --rename of its heads")
    graph.node.extend(b.nodes)
    graph.initializer.extend(b.constants)
    k = spec.max_detections
    del graph.output[:]
    types = {"boxes": (TensorProto.FLOAT, ["N", k, 4]), "scores": (TensorProto.FLOAT, ["N", k]),
             "classes": (TensorProto.INT32, ["N", k]), "num_detections": (TensorProto.INT32, ["N"])}
    for name in OUTPUTS:
        value = helper.make_tensor_value_info(name, *types[name])
        value.doc_string = KIND_MARK + KINDS[name]
        graph.output.append(value)
    onnx.checker.check_model(model)
    return model


class _Builder:
    """The ONNX nodes of the decoding, named `dlkit_decode/...`."""

    def __init__(self, spec: DetectionSpec, opset: int):
        self.spec, self.opset, self.nodes, self.constants, self.count = spec, opset, [], [], 0

    def const(self, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = f"dlkit_decode/c{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        from onnx import helper

        self.count += 1
        out = out or f"dlkit_decode/{op_type}_{self.count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"dlkit_decode/{op_type}_{self.count}",
                                           **attrs))
        return out

    def reduce(self, op_type: str, x: str, axis: int) -> str:
        if op_type == "ReduceSum" or self.opset >= 18:  # axes became an input (ReduceSum at 13, the rest at 18)
            return self.op(op_type, x, self.const(np.array([axis], np.int64)), keepdims=0)
        return self.op(op_type, x, axes=[axis], keepdims=0)

    def decode(self) -> None:
        s, i64 = self.spec, np.int64
        anchor_xy, anchor_wh = self.const(s.anchors[:, :2]), self.const(s.anchors[:, 2:])
        axis2 = self.const(np.array([2], i64))
        d_xy = self.op("Slice", s.deltas, self.const(np.array([0], i64)), axis2, axis2)
        d_wh = self.op("Slice", s.deltas, axis2, self.const(np.array([4], i64)), axis2)
        center = self.op("Add", self.op("Mul", d_xy, anchor_wh), anchor_xy)  # Keras' order of operations
        half = self.op("Div", self.op("Mul", self.op("Exp", d_wh), anchor_wh), self.const(np.float32(2.0)))
        xyxy = self.op("Concat", self.op("Sub", center, half), self.op("Add", center, half), axis=2)
        order = _FORMATS[s.box_format]
        boxes = xyxy if order is None else self.op("Gather", xyxy, self.const(np.array(order, i64)), axis=2)
        scores = self.op("Sigmoid", s.logits) if s.from_logits else s.logits
        confidence = self.reduce("ReduceMax", scores, 2)
        labels = self.op("Cast", self.op("ArgMax", scores, axis=2, keepdims=0), to=6)  # int32, as Keras' argmax
        selected = self.op("NonMaxSuppression", boxes, self.op("Unsqueeze", confidence, self.const(np.array([1], i64))),
                           self.const(np.array([s.max_detections], i64)), self.const(np.array([s.iou_threshold],
                                                                                              np.float32)),
                           self.const(np.array([s.score_threshold], np.float32)))
        self._pad(boxes, confidence, labels, selected)

    def _pad(self, boxes: str, confidence: str, labels: str, selected: str) -> None:
        """The selected detections scattered into (N, K) outputs padded with -1, in NonMaxSuppression's order (each
        image's best score first), and each image's count."""
        i64, one = np.int64, self.const(np.array([1], np.int64))
        where = self.op("Gather", selected, self.const(np.array([0, 2], i64)), axis=1)  # (S, 2): image, box
        # KerasHub marks a kept box by a coordinate > 0 (`ops.any(selected_boxes > 0, [2])` in its
        # non_max_suppression): a box wholly at negative coordinates suppresses others but is never output
        shown = self.op("Greater", self.reduce("ReduceMax", self.op("GatherND", boxes, where), 1),
                        self.const(np.float32(0)))
        where = self.op("Compress", where, shown, axis=0)
        image_col = self.op("Slice", where, self.const(np.array([0], i64)), one, one)
        batch = self.op("Slice", self.op("Shape", self.spec.deltas), self.const(np.array([0], i64)), one)
        images = self.op("Range", self.const(np.array(0, i64)), self.op("Squeeze", batch, self.const(
            np.array([0], i64))), self.const(np.array(1, i64)))
        mine = self.op("Cast", self.op("Equal", image_col, self.op("Unsqueeze", images, self.const(
            np.array([0], i64)))), to=7)  # (S, N): detection s belongs to image n
        position = self.op("Sub", self.reduce("ReduceSum", self.op("Mul", self.op(
            "CumSum", mine, self.const(np.array(0, i64))), mine), 1), one)
        slot = self.op("Concat", image_col, self.op("Unsqueeze", position, one), axis=1)
        k = self.spec.max_detections
        shape_nk = self.op("Concat", batch, self.const(np.array([k], i64)), axis=0)
        shape_nk4 = self.op("Concat", batch, self.const(np.array([k, 4], i64)), axis=0)
        filled = {"boxes": (shape_nk4, np.float32, boxes), "scores": (shape_nk, np.float32, confidence),
                  "classes": (shape_nk, np.int32, labels)}
        for name, (shape, dtype, values) in filled.items():
            from onnx import numpy_helper

            blank = self.op("ConstantOfShape", shape, value=numpy_helper.from_array(np.array([-1], dtype)))
            self.op("ScatterND", blank, slot, self.op("GatherND", values, where), out=name)
        self.op("Cast", self.reduce("ReduceSum", mine, 0), to=6, out="num_detections")


def check_detections(reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], spec: DetectionSpec,
                     atol: float) -> dict[str, float]:
    """Figures of the ONNX detections against Keras': every Keras detection matched (IoU >= 0.99, same class) with
    its score within `atol`; a detection within `atol` of the confidence threshold (or, with a full list, of its
    last score) may be in one list alone.

    Raises:
        ToleranceError: a detection unmatched, or a score further than `atol`.
    """
    matched = unmatched = total = 0
    worst_iou, worst_score = 1.0, 0.0
    for n in range(len(reference["num_detections"])):
        ref, cand = (_boxes.valid(o["boxes"][n], o["scores"][n], o["classes"][n], int(o["num_detections"][n]))
                     for o in (reference, got))
        found = _boxes.match(ref, cand, MATCH_IOU)
        total += len(ref.scores)
        matched += len(found.pairs)
        if found.pairs:
            worst_iou = min(worst_iou, float(found.ious.min()))
            worst_score = max(worst_score, float(np.abs(found.score_differences).max()))
        paired = ({i for i, _ in found.pairs}, {j for _, j in found.pairs})
        for side, dets in enumerate((ref, cand)):
            floor = dets.scores.min() if len(dets.scores) >= spec.max_detections else spec.score_threshold
            lonely = [s for i, s in enumerate(dets.scores) if i not in paired[side]]
            unmatched += sum(1 for s in lonely if abs(s - floor) > atol)
    figures = {"detections": total, "matched": matched, "min_iou": worst_iou, "max_score_error": worst_score}
    if unmatched or worst_score > atol:
        raise ToleranceError(f"the decoded detections differ from Keras' predict(): {unmatched} detection(s) without a "
                             f"match at IoU >= {MATCH_IOU}, {matched} of {total} matched, largest score error "
                             f"{worst_score:.3g} (atol {atol:g}); no file was written (export the raw heads with "
                             "--no-decoding)")
    return figures


def decode_and_check(checked, source, samples, plan):
    """`checked` (the raw heads, within tolerance of Keras) with the decoding appended and checked against Keras'
    predict() on the samples; a note with the figures."""
    from dlkit.core import sessions

    spec = spec_of(source, plan.inputs_of(source), plan.renames)
    model = add_decoding(checked.model, spec, plan.opset)
    images = next(iter(samples.feeds.values()))
    reference = keras_detections(source.keras_model, images)
    got = sessions.run(model, samples.feeds, batch=plan.chunk)
    f = check_detections(reference, got, spec, plan.atol)
    note = (f"decoding and NonMaxSuppression in the graph: {f['matched']} of {f['detections']} Keras detections on "
            f"{samples.count} samples matched (min IoU {f['min_iou']:.6f}, max score error {f['max_score_error']:.2g})")
    if not f["detections"]:
        note += "; none to compare: give --sample-data with real images to check the decoding"
    return checked._replace(model=model, notes=(*checked.notes, note))
