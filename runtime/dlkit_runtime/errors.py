"""The one error hierarchy of dlkit, shared by the runtime and the toolkit.

Every class carries the exit code the CLI uses for it, as click's `ClickException.exit_code` does:

| code | class | meaning |
| --- | --- | --- |
| 1 | `DlkitError` | anything else that dlkit reports (a model that cannot be converted, ...) |
| 2 | `InvalidInputError` | bad input from the user: a path, a file, an option value |
| 3 | `MissingDependencyError` | an optional package is not installed |
| 4 | `ParityError` | a numeric check failed (`ShapeMismatchError`, `ToleranceError`) |
"""

from __future__ import annotations


class DlkitError(Exception):
    """Base class of every error dlkit raises on purpose."""

    exit_code = 1


class InvalidInputError(DlkitError, ValueError):
    """The user gave a path, file or value that cannot be used; the message says how to fix it."""

    exit_code = 2


class MissingDependencyError(DlkitError, ImportError):
    """An optional dependency is missing; the message names the pip command that installs it."""

    exit_code = 3


class IntegrityError(InvalidInputError):
    """A model file's sha256 differs from the one its bundle's manifest records: it was modified or damaged."""


class ParityError(DlkitError):
    """Two models that should agree do not."""

    exit_code = 4


class ShapeMismatchError(ParityError):
    """Two models' outputs differ in names or shapes."""


class ToleranceError(ParityError):
    """Two models' outputs differ by more than the allowed tolerance."""


class ProviderError(DlkitError):
    """An execution provider that was required (`strict=True`) is not available."""


__all__ = [
    "DlkitError",
    "IntegrityError",
    "InvalidInputError",
    "MissingDependencyError",
    "ParityError",
    "ProviderError",
    "ShapeMismatchError",
    "ToleranceError",
]
