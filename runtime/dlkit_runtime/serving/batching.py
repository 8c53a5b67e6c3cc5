"""Dynamic batching for `dlkit_runtime.serving`: one model's queue of requests and the task that runs what waits in it
together, when the model's batch axis is dynamic and the requests' shapes agree. Standard library and numpy."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlkit_runtime.errors import DlkitError
from dlkit_runtime.serving.protocol import RequestError
from dlkit_runtime.serving.settings import Settings


@dataclass
class Entry:
    name: str
    model: Any
    batched: bool
    queue: asyncio.Queue | None = None
    seconds: float = 1.0  # a run's time, smoothed: under INLINE_SECONDS it runs on the event loop, no thread hop
    busy: bool = False
    recorder: Any = None
    arriving: int = 0  # requests for this model being read or parsed: a batch about to run waits for them

    def predict(self, feeds: dict) -> dict:
        started = time.perf_counter()
        outputs = self.model.predict(feeds)
        self.seconds = 0.8 * self.seconds + 0.2 * (time.perf_counter() - started)
        if self.recorder is not None:
            self.recorder.batch(self.name, rows_of(feeds))
        return outputs


INLINE_SECONDS = 0.0005  # a model this fast runs in the event loop: handing it to a thread would cost more


class Batcher:
    """One model's queue and the task that runs what waits in it, together when its shapes allow."""

    def __init__(self, entry: Entry, settings: Settings):
        self.entry, self.settings = entry, settings
        entry.queue = asyncio.Queue(maxsize=settings.max_queue)

    async def submit(self, feeds: dict) -> dict:
        future = asyncio.get_running_loop().create_future()
        try:
            self.entry.queue.put_nowait((feeds, future))
        except asyncio.QueueFull:
            raise RequestError(503, f"model '{self.entry.name}' has {self.settings.max_queue} requests waiting; "
                                    "retry shortly") from None
        return await future

    async def run(self) -> None:
        """Takes the first waiting request, and with it those already waiting of the same shapes up to max_batch.
        While other requests for the model are still being read or parsed, it lets them finish and join, for at
        most max_delay_ms; with none on the way it runs at once (no added latency at concurrency 1, and no idle
        wait when every client is already in the batch)."""
        queue, pending = self.entry.queue, None
        while True:
            first = pending or await queue.get()
            pending, group, rows = None, [first], rows_of(first[0])
            if self.entry.batched:
                deadline = time.perf_counter() + self.settings.max_delay_ms / 1000
                while True:
                    while rows < self.settings.max_batch and pending is None:
                        try:
                            item = queue.get_nowait()
                        except asyncio.QueueEmpty:
                            break
                        if _signature(item[0]) != _signature(first[0]) or rows + rows_of(item[0]) > self.settings.max_batch:
                            pending = item  # the next batch starts with it
                        else:
                            group.append(item)
                            rows += rows_of(item[0])
                    if rows >= self.settings.max_batch or pending is not None or not self.entry.arriving \
                            or time.perf_counter() >= deadline:
                        break
                    await asyncio.sleep(0)  # the requests on the way get their turn to be read and queued
            await self._run(group)

    async def _run(self, group: list) -> None:
        loop = asyncio.get_running_loop()
        feeds = group[0][0] if len(group) == 1 else {k: np.concatenate([g[0][k] for g in group]) for k in group[0][0]}
        self.entry.busy = True
        try:
            if self.entry.seconds < INLINE_SECONDS:
                outputs = self.entry.predict(feeds)
            else:
                outputs = await loop.run_in_executor(None, self.entry.predict, feeds)
        except Exception as err:  # the batcher must outlive any request; a bad input is the client's, 400
            failure = RequestError(400 if isinstance(err, DlkitError) else 500,
                                   str(err) if isinstance(err, DlkitError) else f"{type(err).__name__}: {err}")
            for _, future in group:
                if not future.done():
                    future.set_exception(failure)
            return
        finally:
            self.entry.busy = False
        start = 0
        for part, future in group:
            count = rows_of(part)
            if not future.done():
                future.set_result(outputs if len(group) == 1 else {k: v[start:start + count] for k, v in outputs.items()})
            start += count


def rows_of(feeds: dict) -> int:
    return len(next(iter(feeds.values())))


def _signature(feeds: dict) -> tuple:
    return tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(feeds.items()))


def batch_first(model) -> bool:
    """A dynamic batch axis on every input, and every output with its batch axis first (from the model's shapes)."""
    if not model.inputs or any(not i.shape or isinstance(i.shape[0], int) for i in model.inputs):
        return False
    return all(o.shape and not isinstance(o.shape[0], int) for o in model.outputs)
