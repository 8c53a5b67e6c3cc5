"""The samples `dlkit.verify` compares on: a data file or image folder, or random samples made batch by batch."""

from __future__ import annotations

from typing import Any, Mapping

from dlkit.verification.settings import VerifySettings


class RandomSamples:
    """Random samples generated batch by batch (a fresh seed per batch), with the DataSource interface."""

    labels = None
    class_names = None

    def __init__(self, inputs, count, seed):
        self.inputs, self.count, self.seed = inputs, count, seed

    def batches(self, batch_size: int):
        from dlkit.core.parity import random_inputs

        for index, first in enumerate(range(0, self.count, batch_size)):
            yield random_inputs(self.inputs, min(batch_size, self.count - first), seed=self.seed + index)

    def take(self, start: int, stop: int) -> dict:
        return next(self.batches(stop - start))


def open_samples(settings: VerifySettings, inputs, metadata: Mapping[str, Any]) -> tuple[Any, str]:
    """The samples (a `DataSource` or `RandomSamples`, at most `max_samples`) and a name for where they came from.

    Raises:
        InvalidInputError: data that does not exist or does not fit the inputs.
    """
    random, max_samples = settings.random, settings.max_samples
    if random is not None:
        count = random if max_samples is None else min(random, max_samples)
        return RandomSamples(inputs, count, settings.seed), f"random ({count} samples)"
    from dlkit.core.datasources import open_data

    source = open_data(settings.data, inputs, metadata=metadata, what="data")
    if max_samples is not None and max_samples < source.count:
        source.count = max_samples
    return source, str(settings.data)
