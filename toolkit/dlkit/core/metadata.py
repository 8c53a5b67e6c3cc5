"""dlkit's metadata in an ONNX file, in one place: read as the runtime reads it (`dlkit.*` keys under their short
names, JSON ones decoded) and stamped with dlkit as the producer."""

from __future__ import annotations

from typing import Any, Mapping

from dlkit_runtime.model import decode_metadata


def read(model: Any) -> dict[str, Any]:
    """A ModelProto's metadata, as `dlkit_runtime.Model.metadata` gives it for the same file."""
    return decode_metadata({p.key: p.value for p in model.metadata_props})


def stamp(model: Any, props: Mapping[str, str]) -> None:
    """Makes `props` the ModelProto's metadata (in their order), with dlkit and its version as the producer."""
    import dlkit

    model.producer_name, model.producer_version = "dlkit", dlkit.__version__
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
