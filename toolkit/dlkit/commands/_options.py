"""Option values several verbs parse the same way."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dlkit.errors import InvalidInputError


def load_custom_objects(path: Path | None):
    """Imports the user's module so its @register_keras_serializable classes are known to Keras."""
    if path is None:
        return None
    if not path.is_file() or path.suffix != ".py":
        raise InvalidInputError(f"--custom-objects '{path}' is not a Python file; give the .py that defines the classes")
    spec = importlib.util.spec_from_file_location(f"dlkit_custom_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's code: its own error, said in one line
        raise InvalidInputError(f"--custom-objects '{path}' failed to import ({type(err).__name__}: "
                                f"{' '.join(str(err).split())[:200]}); fix that file") from err
    return {name: obj for name, obj in vars(module).items() if isinstance(obj, type)}
