"""The options of `dlkit.verify`, checked once at the public boundary before any model is loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from dlkit.errors import InvalidInputError


@dataclass(frozen=True)
class VerifySettings:
    """`dlkit.verify`'s options, checked; `paths` are the candidates' files. The others as `dlkit.verify` takes
    them."""

    paths: tuple[Path, ...]
    data: str | os.PathLike | None
    random: int | None
    atol: float | None
    min_agreement: float | None
    max_accuracy_drop: float | None
    max_samples: int | None
    batch_size: int
    deploy_batch_size: int
    report: str | os.PathLike | None
    safe_mode: bool = True
    custom_objects: dict | None = None
    progress: Callable[[int, int], None] | None = None
    seed: int = 0
    regression_outputs: Sequence[str] = ()
    device: str | None = None
    also_host: bool = False

    def limits(self, labelled: bool) -> dict[str, float | None]:
        """The thresholds judged: accuracy drop only with labelled data and a classifier output."""
        return {"atol": self.atol, "min_agreement": self.min_agreement,
                "max_accuracy_drop": self.max_accuracy_drop if labelled else None}


def check_settings(candidates: str | os.PathLike | Sequence[str | os.PathLike], data: str | os.PathLike | None,
                   **options: Any) -> VerifySettings:
    """`dlkit.verify`'s options as `VerifySettings`, after checking them (an unknown device included).

    Raises:
        InvalidInputError: no candidate or one that is not an .onnx file, both or neither of data and random, a
            count or threshold out of range, also_host without a device, an unknown device.
    """
    paths = [Path(candidates)] if isinstance(candidates, (str, os.PathLike)) else [Path(c) for c in candidates]
    settings = VerifySettings(paths=tuple(paths), data=data, **options)
    _check_files(settings.paths)
    _check_numbers(settings)
    if settings.also_host and settings.device is None:
        raise InvalidInputError("also_host compares a device's figures with this host's; give a device too")
    if settings.device is not None:
        from dlkit.device import lookup

        lookup(settings.device)  # an unknown device before any work
    return settings


def _check_files(paths: Sequence[Path]) -> None:
    if not paths:
        raise InvalidInputError("no candidate given; pass one or more .onnx files to compare with the reference")
    for path in paths:
        if not path.is_file() or path.suffix.lower() != ".onnx":
            raise InvalidInputError(f"candidate '{path}' is not an .onnx file; candidates are ONNX models "
                                    "(export a Keras model with dlkit export first)")


def _check_numbers(settings: VerifySettings) -> None:
    data, random = settings.data, settings.random
    if (data is None) == (random is None):
        raise InvalidInputError("give either data (.npy, .npz or an image folder) or random=N samples, not "
                                f"{'both' if data is not None else 'neither'}")
    for value, name in ((random, "random"), (settings.batch_size, "batch_size"), (settings.max_samples, "max_samples")):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    for value, name in ((settings.atol, "atol"), (settings.min_agreement, "min_agreement"),
                        (settings.max_accuracy_drop, "max_accuracy_drop")):
        if value is not None and not (value >= 0 and (name == "atol" or value <= 1)):
            raise InvalidInputError(f"{name} must be {'>= 0' if name == 'atol' else 'in [0, 1]'}, got {value}")
    deploy = settings.deploy_batch_size
    if not isinstance(deploy, int) or deploy < 1:
        raise InvalidInputError(f"deploy_batch_size must be a positive integer, got {deploy!r}")
