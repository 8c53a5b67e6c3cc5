"""The check sentences of a text model's export, and its check from strings to outputs: dlkit_runtime's vectorizer
must give the token ids Keras' TextVectorization gives, and onnxruntime on them the outputs Keras gives on the strings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dlkit.errors import InvalidInputError, ParityError
from dlkit_runtime.text import KEY

METADATA_KEY = f"dlkit.{KEY}"
_PUNCTUATION = (",", ".", "!", "?", ";", ":", "'s", "--", "...")


def check_sentences(front, sample_data: Any, num_samples: int, seed: int) -> tuple[list[str], str]:
    """The sentences a text model is checked on, and where they come from: the first `num_samples` lines of a `.txt`
    file or strings of `sample_data`, else sentences made from the vocabulary (`made_sentences`).

    Raises:
        InvalidInputError: `sample_data` is not text, or holds no sentence.
    """
    if sample_data is None:
        sentences = made_sentences(front.settings, num_samples, seed)
        finite = _finite_rows(front, sentences)
        kept = [s for s, ok in zip(sentences, finite) if ok]
        if not kept:
            raise InvalidInputError("Keras gives NaN or infinity on every check sentence; give sentences it takes "
                                    "with --sample-data FILE.txt (one per line)")
        return kept, f"{len(kept)} sentences made from the vocabulary"
    if isinstance(sample_data, (str, os.PathLike)):
        path = Path(sample_data)
        if path.suffix.lower() != ".txt":
            raise InvalidInputError(f"sample data for a text model is a .txt file with one sentence per line; got "
                                    f"'{path}'")
        try:
            sentences = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"cannot read '{path}' as UTF-8 text ({err}); save it as UTF-8") from err
        label = str(path)
    else:
        if isinstance(sample_data, Mapping) and len(sample_data) == 1:
            sample_data = next(iter(sample_data.values()))
        array = np.asarray(sample_data, dtype=object).reshape(-1) if not isinstance(sample_data, str) else None
        if array is None or not all(isinstance(s, str) for s in array):
            raise InvalidInputError("sample_data for a text model is a list of strings or a .txt file (one sentence "
                                    "per line)")
        sentences, label = [str(s) for s in array], "sample_data"
    if not sentences:
        raise InvalidInputError(f"sample data {label} holds no sentence; give at least one")
    return sentences[:num_samples], label


def made_sentences(settings: dict, count: int, seed: int) -> list[str]:
    """`count` sentences of the vocabulary's words: first the hard cases (empty, upper case with punctuation,
    out-of-vocabulary words, longer than output_sequence_length, tabs and newlines, non-ASCII letters and a no-break
    space, punctuation alone), then random ones with capitals and punctuation."""
    first = 2 if settings["output_mode"] == "int" else 1
    words = [w for w in settings["vocabulary"][first:] if w and " " not in w] or settings["vocabulary"][first:]
    length = settings.get("output_sequence_length") or 8
    rng = np.random.default_rng(seed)

    def pick(k: int) -> list[str]:
        return [words[i] for i in rng.integers(0, len(words), k)]

    hard = [
        "",
        " ".join(pick(3)).upper() + "!",
        "{}, {}; {}... {}?".format(*[w.capitalize() for w in pick(4)]),
        f"zqxjv {' '.join(pick(2))} blorptastic",
        " ".join(pick(2 * length + 3)),
        "\t" + "  ".join(pick(3)) + "\n" + pick(1)[0] + " ",
        f"Café «{pick(1)[0]}» naïve\u00a0{pick(1)[0]} ÉTÉ",
        "?!... --",
    ]
    made = hard[:count]
    while len(made) < count:
        parts = []
        for word in pick(int(rng.integers(1, length + 3))):
            word = word.capitalize() if rng.random() < 0.2 else word
            parts.append(word + (_PUNCTUATION[int(rng.integers(len(_PUNCTUATION)))] if rng.random() < 0.2 else ""))
        made.append(" ".join(parts))
    return made


def check_strings(checked, source, plan):
    """`checked` with the vectorizer's settings in its metadata, after checking it from strings to outputs.

    Raises:
        ParityError: dlkit_runtime's vectorizer gives other token ids than Keras on a check sentence.
        ToleranceError: onnxruntime's outputs on them differ from Keras's on the strings beyond tolerance.
    """
    from dlkit.core import metadata
    from dlkit.exporting.parity_checks import parity_or_raise
    from dlkit.exporting.samples import _whole_batches
    from dlkit_runtime.text import TextVectorizer

    front = source.text
    value = metadata_value(front.settings, plan.renames)
    metadata.stamp(checked.model, {**{p.key: p.value for p in checked.model.metadata_props}, METADATA_KEY: value})
    sentences = [str(s) for s in _whole_batches({"s": np.asarray(front.sentences, dtype=object)}, plan.batch_size)["s"]]
    vectorizer = TextVectorizer(json.loads(value))
    got, want = vectorizer(sentences), front.keras_ids(sentences)
    if got.shape != want.shape or not np.array_equal(got, want):
        row = next((i for i in range(len(sentences)) if got.shape != want.shape or not np.array_equal(got[i], want[i])))
        raise ParityError(
            f"dlkit_runtime's vectorizer differs from Keras' TextVectorization '{front.layer.name}' on the sentence "
            f"{sentences[row]!r} (tokens {vectorizer.tokens(sentences[row])[:12]}): {got[row][:12].tolist()} against "
            f"{want[row][:12].tolist()} (shapes {got.shape} and {want.shape}); no file was written, report the sentence")
    reference = _keras_outputs(front, sentences, plan.chunk)
    reference = {plan.renames.get(k, k): v for k, v in reference.items()}
    figures = parity_or_raise(checked.model, {vectorizer.input: got}, reference, plan.atol, plan.rtol,
                              stage="vectorizing the check sentences with dlkit_runtime", batch=plan.chunk)
    worst = max((f.max_abs_error for f in figures), default=0.0)
    note = (f"from strings: {len(sentences)} sentences vectorized by dlkit_runtime as by Keras (identical token ids), "
            f"outputs within {worst:.3g} of Keras's on the strings")
    return checked._replace(notes=(*checked.notes, note))


def metadata_value(settings: dict, renames) -> str:
    """The JSON stored under `dlkit.text_vectorization`, `input` renamed as the ONNX file's input."""
    return json.dumps({**settings, "input": renames.get(settings["input"], settings["input"])}, ensure_ascii=False)


def _keras_outputs(front, sentences: list[str], chunk: int) -> dict[str, np.ndarray]:
    from dlkit.exporting.conversion import one_line

    parts: dict[str, list] = {}
    for start in range(0, len(sentences), chunk):
        try:
            out = front.string_call(front.keras_strings(sentences[start:start + chunk]))
        except Exception as err:  # Keras' own verdict on the model and the strings
            raise InvalidInputError(f"Keras could not run the model on {len(sentences)} check sentences "
                                    f"({type(err).__name__}: {one_line(err)}); check that it runs on strings shaped as "
                                    "its Input") from err
        for name, value in out.items():
            parts.setdefault(name, []).append(np.asarray(value))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _finite_rows(front, sentences: list[str]) -> list[bool]:
    """Whether Keras's outputs on each sentence are finite (an empty one gives NaN after an Embedding with
    mask_zero=True and a masked average)."""
    out = _keras_outputs(front, sentences, 256)
    finite = np.ones(len(sentences), dtype=bool)
    for value in out.values():
        finite &= np.isfinite(value.reshape(len(sentences), -1)).all(axis=1)
    return finite.tolist()
