"""Giving memory back between the stages of a large job (an export holds several copies of a model's weights on
the way: TensorFlow's frozen graph, tf2onnx's graph, ONNX protos, onnxruntime's session).

Python frees an object graph with reference cycles only when its cyclic collector runs, and in a process holding
TensorFlow's millions of long-lived objects a full collection is rare: tf2onnx's graphs (nodes and graph point at
each other) pile up as garbage. glibc's malloc then keeps the freed pages unless asked to return them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc


GROWTH = 256 << 20  # bytes of growth since the last collection that make the next one worth its cost


def release(force: bool = False) -> None:
    """Collects cyclic garbage and returns freed heap pages to the system (glibc; elsewhere collection only), when
    the process grew by GROWTH since the last time (or always, with `force` or where its size is unknown). A full
    collection among TensorFlow's objects takes about 0.2 s: after every pass of a small model's export it would
    cost more than the export."""
    size = _resident()
    if not force and size is not None and size - _last[0] < GROWTH:
        return
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    _last[0] = _resident() or 0


_last = [0]


def _resident() -> int | None:
    """This process's resident memory in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _page()
    except (OSError, ValueError, IndexError):
        return None


@functools.lru_cache(maxsize=None)
def _page() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE")


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


@contextlib.contextmanager
def collected_tf2onnx_passes():
    """While active, tf2onnx's graph optimizer collects garbage before each of its passes.

    `tf2onnx.optimizer.optimize_graph` deep-copies the whole graph, weights included, before every pass of every
    round (to restore it if a pass fails), and drops the copy: about forty copies of ResNet50's 100 MB of weights
    alive as garbage at once, 6 GB of the export's 7 GB peak. It looks up `_get_optimizers` when called, so wrapping
    each pass's factory there frees the previous copy before the next is made. tf2onnx without that function
    (another version) is left as it is.
    """
    from tf2onnx import optimizer

    original = getattr(optimizer, "_get_optimizers", None)
    if original is None:
        yield
        return

    def collecting(factory):
        def make(*args, **kwargs):
            release()
            return factory(*args, **kwargs)
        return make

    def wrapped():
        passes = original()
        return type(passes)((name, collecting(factory)) for name, factory in passes.items())

    optimizer._get_optimizers = wrapped
    try:
        yield
    finally:
        optimizer._get_optimizers = original
