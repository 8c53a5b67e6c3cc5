"""Keras' `TextVectorization` without TensorFlow: strings to the token ids (or multi-hot, counts, TF-IDF) that an
exported text model takes, as the `dlkit.text_vectorization` metadata written by `dlkit export` describes them.

Each step does what keras 3.15's layer (keras/src/layers/preprocessing/text_vectorization.py) does with TensorFlow's
string ops:

- standardize "lower": `tf.strings.lower` without an encoding lowercases ASCII A-Z only ("É" stays "É");
- "strip_punctuation": `tf.strings.regex_replace` with Keras' class of the 32 ASCII punctuation marks (`_PUNCTUATION`),
  so "’", "«" and "¿" stay; "lower_and_strip_punctuation" is both, in that order; None is neither;
- split "whitespace": `tf.strings.split` cuts at runs of ASCII whitespace (space, \\t \\n \\v \\f \\r) and drops empty
  tokens, so a no-break space (U+00A0) stays inside its token; "character": one token per Unicode code point;
  None: the whole string is one token;
- ngrams: `tf.strings.ngrams`, each width in the order given, joined by one space, none from a shorter sequence;
- lookup, in Keras' order of the vocabulary: output_mode "int" has the mask token "" at 0 and the OOV token at 1,
  then pads with 0 or cuts to output_sequence_length (to the longest sentence of the batch without one); "multi_hot",
  "count" and "tf_idf" have the OOV token at 0, drop the mask token, and count each row's tokens (TF-IDF: the counts
  times the IDF weights).
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from dlkit_runtime.errors import InvalidInputError

KEY = "text_vectorization"  # the metadata's short name (`dlkit.text_vectorization` in the file)
STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation", None)
SPLIT = ("whitespace", "character", None)
OUTPUT_MODES = ("int", "multi_hot", "count", "tf_idf")

_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# Keras' own pattern, character for character (",-\." is the range , - .): the 32 ASCII punctuation marks
_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_WHITESPACE = re.compile("[ \t\n\x0b\x0c\r]+")
# file names `dlkit run --input` reads: a missing one is a missing file, not a sentence
_FILE_SUFFIXES = (".txt", ".npy", ".npz", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class TextVectorizer:
    """Strings to the numeric input of an exported text model, as its Keras `TextVectorization` layer computes it.

    Args:
        settings: the layer's settings as `dlkit export` records them: `input` (the ONNX input it feeds),
            `vocabulary` (in Keras' order, special tokens included), `standardize`, `split`, `ngrams` (a list of
            widths or None), `output_mode`, `output_sequence_length`, `dtype`, and for the counting modes `depth`
            and `idf_weights`.

    Raises:
        InvalidInputError: the settings are incomplete or name a step this module does not have.

    Example:

    >>> vectorizer = Model("text.onnx").vectorizer
    >>> vectorizer(["To be, or not to be"]).shape
    (1, 32)
    """

    def __init__(self, settings: Mapping[str, Any]):
        try:
            self.input = str(settings["input"])
            self.vocabulary = [str(token) for token in settings["vocabulary"]]
            self.standardize_mode = settings.get("standardize")
            self.split_mode = settings.get("split")
            self.ngrams = tuple(int(n) for n in settings.get("ngrams") or ()) or None
            self.output_mode = settings.get("output_mode", "int")
            length = settings.get("output_sequence_length")
            self.output_sequence_length = None if length is None else int(length)
            self.dtype = np.dtype(settings.get("dtype", "int64"))
            self.depth = int(settings.get("depth") or len(self.vocabulary))
            idf = settings.get("idf_weights")
            self.idf_weights = None if idf is None else np.asarray(idf, dtype=np.float32)
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidInputError(f"the model's '{KEY}' metadata is damaged ({type(err).__name__}: {err}); "
                                    "export the model again with dlkit export") from err
        for name, value, allowed in (("standardize", self.standardize_mode, STANDARDIZE),
                                     ("split", self.split_mode, SPLIT), ("output_mode", self.output_mode, OUTPUT_MODES)):
            if value not in allowed:
                raise InvalidInputError(f"the model's '{KEY}' metadata has {name}={value!r}, which this runtime "
                                        f"does not know (it knows {', '.join(map(repr, allowed))}); update dlkit_runtime")
        if self.output_mode == "tf_idf" and (self.idf_weights is None or len(self.idf_weights) != self.depth):
            raise InvalidInputError(f"the model's '{KEY}' metadata has no {self.depth} IDF weights for output_mode "
                                    "'tf_idf'; export the model again with dlkit export")
        counting = self.output_mode != "int"
        # int: the mask token "" is 0 and OOV 1; the counting modes: OOV is 0 and the mask token is dropped (-1)
        self._index = {token: i for i, token in enumerate(self.vocabulary)}
        self._oov = 0 if counting else 1
        if counting:
            self._index[""] = -1

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> TextVectorizer | None:
        """The vectorizer that a model's metadata (`Model.metadata`) records, or None for a model without one."""
        settings = metadata.get(KEY)
        if settings is None:
            return None
        if not isinstance(settings, Mapping):
            raise InvalidInputError(f"the model's '{KEY}' metadata is not a JSON object; export the model again")
        return cls(settings)

    def standardize(self, text: str) -> str:
        """`text` standardized as Keras does (see the module's docstring)."""
        if self.standardize_mode in ("lower", "lower_and_strip_punctuation"):
            text = text.translate(_LOWER)
        if self.standardize_mode in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = _PUNCTUATION.sub("", text)
        return text

    def tokens(self, text: str) -> list[str]:
        """The tokens Keras looks up for `text`: standardized, split, and made into ngrams."""
        text = self.standardize(text)
        if self.split_mode == "whitespace":
            parts = [part for part in _WHITESPACE.split(text) if part]
        elif self.split_mode == "character":
            parts = list(text)
        else:
            parts = [text]
        if self.ngrams is None:
            return parts
        return [" ".join(parts[i:i + width]) for width in self.ngrams for i in range(len(parts) - width + 1)]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """The model's input for a batch of strings: int64 (N, output_sequence_length) token ids, or float32
        (N, depth) multi-hot, counts or TF-IDF.

        Raises:
            InvalidInputError: an element that is not a string (bytes must be UTF-8).
        """
        rows = [[self._index.get(token, self._oov) for token in self.tokens(text)] for text in _strings(texts)]
        if self.output_mode != "int":
            return self._counted(rows)
        width = self.output_sequence_length
        if width is None:
            width = max((len(row) for row in rows), default=0)
        out = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            row = row[:width]
            out[i, :len(row)] = row
        return out.astype(self.dtype, copy=False)

    def _counted(self, rows: list[list[int]]) -> np.ndarray:
        counts = np.zeros((len(rows), self.depth), dtype=np.float32)
        for i, row in enumerate(rows):
            ids = np.asarray([t for t in row if 0 <= t < self.depth], dtype=np.int64)
            np.add.at(counts[i], ids, 1.0)
        if self.output_mode == "multi_hot":
            counts = np.minimum(counts, 1.0)
        elif self.output_mode == "tf_idf":
            counts = counts * self.idf_weights
        return counts.astype(self.dtype, copy=False)

    def feed(self, x: Any) -> Any:
        """`x` with its text vectorized: a string, a list of strings, or a string array (N,) or (N, 1), alone or
        under the input's name in a dict; anything else (numbers: ids already) as it is."""
        if isinstance(x, Mapping):
            if self.input in x and is_text(x[self.input]):
                return {**x, self.input: self(_flat(x[self.input]))}
            return x
        return self(_flat(x)) if is_text(x) else x

    def __repr__(self) -> str:
        return (f"TextVectorizer(input={self.input!r}, vocabulary={len(self.vocabulary)} tokens, "
                f"standardize={self.standardize_mode!r}, split={self.split_mode!r}, output_mode={self.output_mode!r})")


def is_text(x: Any) -> bool:
    """True for a string, a list or tuple holding a string, or an array of strings (numpy `U`, `S`, object of str)."""
    if isinstance(x, (str, bytes)):
        return True
    if isinstance(x, (list, tuple)):
        return any(isinstance(v, (str, bytes)) for v in x)  # a stray number among strings is an error, not ids
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "US" or (x.dtype.kind == "O" and x.size > 0 and isinstance(x.flat[0], (str, bytes)))
    return False


def text_input(path: str | os.PathLike, model: Any) -> np.ndarray | None:
    """What `dlkit run --input` means for a text model: a `.txt` file (one sentence per line) or the text itself,
    vectorized; None for a model without a vectorizer or an input that is another file.

    Raises:
        InvalidInputError: a missing `.txt` (or other data) file, an empty one, or one that is not UTF-8.
    """
    vectorizer = getattr(model, "vectorizer", None)
    if vectorizer is None:
        return None
    raw = os.fspath(path)
    file = Path(raw)
    if file.is_file() and file.suffix.lower() != ".txt":
        return None
    if file.is_file():
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"cannot read '{file}' as UTF-8 text ({err}); save it as UTF-8, one sentence "
                                    "per line") from err
        if not lines:
            raise InvalidInputError(f"'{file}' holds no lines; write one sentence per line")
        return vectorizer(lines)
    if file.suffix.lower() in _FILE_SUFFIXES and not any(c.isspace() for c in raw):
        raise InvalidInputError(f"input file '{raw}' does not exist; give an existing .txt file (one sentence per "
                                "line) or the text itself")
    return vectorizer([raw])


def _strings(texts: Any) -> list[str]:
    if isinstance(texts, (str, bytes)):
        texts = [texts]
    out = []
    for i, text in enumerate(texts):
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InvalidInputError(f"text {i} is not UTF-8 ({err.reason} at byte {err.start}); decode it "
                                        "to str first") from err
        if not isinstance(text, str):
            raise InvalidInputError(f"a text model takes strings, got {type(text).__name__} at position {i}; "
                                    "pass a list of str")
        out.append(text)
    return out


def _flat(x: Any) -> Any:
    """A string array (N,) or (N, 1) as its N elements; a string or a list as it is."""
    if not isinstance(x, np.ndarray):
        return x
    if x.ndim == 0:
        return [x.item()]
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise InvalidInputError(f"a text model takes strings of shape (N,) or (N, 1), got shape {x.shape}; "
                                "reshape it")
    return [v.item() if isinstance(v, np.generic) else v for v in x]
