"""The server's metrics in Prometheus' text format: requests by model and status, a latency histogram, batch sizes
and queue depth per model. Through `prometheus_client` (in the `serve` extra) when it is installed, else the same
counters written out here."""

from __future__ import annotations

import os
from typing import Callable, Mapping

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """`request(model, status, seconds)` and `batch(model, size)` record; `text()` renders. `depths` gives each
    model's queue depth when rendered."""

    def __init__(self, depths: Callable[[], Mapping[str, int]]):
        self.depths = depths
        self._counts: dict[tuple[str, int], int] = {}
        self._batches: dict[str, list[int]] = {}
        self._children: dict[tuple[str, int], tuple] = {}
        try:
            import prometheus_client as prom
        except ImportError:
            self._prom = None
            return
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        self._requests = prom.Counter("dlkit_requests", "Requests by model and HTTP status", ["model", "status"],
                                      registry=self.registry)
        self._latency = prom.Histogram("dlkit_request_seconds", "Time from request to response", ["model"],
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self._sizes = prom.Histogram("dlkit_batch_size", "Samples per model run", ["model"], buckets=BATCH_BUCKETS,
                                     registry=self.registry)
        self._depth = prom.Gauge("dlkit_queue_depth", "Requests waiting per model", ["model"], registry=self.registry,
                                 multiprocess_mode="livesum")
        # several server processes (dlkit serve --workers): each writes its figures to the folder prometheus_client
        # names, and any of them renders the sum
        self._shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

    def request(self, model: str, status: int, seconds: float) -> None:
        if self._prom is not None:
            children = self._children.get((model, status))
            if children is None:  # labels() costs more than the count itself: once per model and status
                children = self._children[model, status] = (self._requests.labels(model, str(status)),
                                                            self._latency.labels(model))
            children[0].inc()
            children[1].observe(seconds)
        else:
            self._counts[model, status] = self._counts.get((model, status), 0) + 1

    def batch(self, model: str, size: int) -> None:
        if self._prom is not None:
            self._sizes.labels(model).observe(size)
            if self._shared:  # the other workers render this one's queue depth from its last value
                self._depth.labels(model).set(self.depths().get(model, 0))
        else:
            self._batches.setdefault(model, [0, 0])
            self._batches[model][0] += 1
            self._batches[model][1] += size

    def text(self) -> bytes:
        depths = self.depths()
        if self._prom is not None:
            for model, depth in depths.items():
                self._depth.labels(model).set(depth)
            if self._shared:
                from prometheus_client import multiprocess

                combined = self._prom.CollectorRegistry()
                multiprocess.MultiProcessCollector(combined)
                return self._prom.generate_latest(combined)
            return self._prom.generate_latest(self.registry)
        lines = [f'dlkit_requests_total{{model="{m}",status="{s}"}} {n}' for (m, s), n in sorted(self._counts.items())]
        for model, (runs, samples) in sorted(self._batches.items()):
            lines += [f'dlkit_batch_size_count{{model="{model}"}} {runs}',
                      f'dlkit_batch_size_sum{{model="{model}"}} {samples}']
        lines += [f'dlkit_queue_depth{{model="{m}"}} {d}' for m, d in sorted(depths.items())]
        return ("\n".join(lines) + "\n").encode()
