"""The searches that keep nodes in float: the most sensitive ones until the bound holds, then, when the outputs
collapsed, the last ones of the graph until they are cured."""

from __future__ import annotations

import time
from typing import Callable

from dlkit.errors import ToleranceError
from dlkit.quantization.candidate import Candidates
from dlkit.quantization.measurement import Measurement
from dlkit.quantization.quantizers import SensitiveNode, count_quantized, rank_sensitive_nodes, tail_nodes
from dlkit.quantization.results import KeptNode, SearchStep

_CURED_COSINE = 0.98  # a retry cures a collapse only when it brings the outputs this close to the float model's
_COLLAPSE_RETRIES = 3  # the last quantized nodes, kept in float by sensitivity, before a collapse is an error
_now = time.perf_counter  # the search's clock (a test gives it a fake one)


def keep_sensitive_in_float(candidates: Candidates, measured: Measurement, *, max_seconds: float | None = None,
                            on_step: Callable[[SearchStep], None] | None = None) -> Measurement:
    """Keeps the most sensitive nodes in float, one at a time, until the bound holds (without a bound, or when it
    holds already, `measured` is the answer). At least one node stays int8, and `on_step` hears of each step.

    Raises:
        ToleranceError: the bound cannot be met with a node left in int8, or not within `max_seconds`.
    """
    bound = measured.bound
    if bound is None or measured.metric <= bound:
        return measured
    clock = _Clock(max_seconds)
    reference = candidates.reference
    ranking = rank_sensitive_nodes(reference.prepared, measured.model, reference.check.feeds, candidates.excluded)
    name = "accuracy drop" if reference.max_accuracy_drop is not None else "output error"
    if not ranking:  # the ranking reads QDQ pairs: only static int8 has them
        mode = candidates.mode
        fix = {"static": "keep nodes in float with --exclude-node/--exclude-op-type",
               "fp16": "keep the float32 model"}.get(
            mode, "use --mode static with --calibration data, which can keep sensitive nodes in float")
        raise ToleranceError(f"the bound {bound:g} on the {name} is not met ({measured.metric:.4g}) and {mode} mode "
                             f"has no nodes to rank and keep in float; loosen the bound or {fix}")
    # keeping every quantized node in float would end on the float model under an int8 name: one stays int8
    trials = ranking[:max(0, min(len(ranking), count_quantized(measured.model, candidates.mode) - 1))]
    report = on_step or (lambda step: None)
    report(clock.step(0, len(trials), None, name, measured.metric, bound))
    clock.start_trials()
    best, best_done, done, emptied = measured, 0, 0, False
    for node in trials:
        if clock.out_of_time():
            raise ToleranceError(f"the bound {bound:g} on the {name} was not met within the time budget of "
                                 f"{max_seconds:g} s ({done} of {len(trials)} nodes kept in float in "
                                 f"{clock.elapsed():.1f} s; the next would end past it): the best {name} reached is "
                                 f"{best.metric:.4g}; raise --max-seconds or loosen the bound")
        measured = candidates.keep_in_float(node)
        candidates.kept.append(KeptNode(node.name, node.op_type, node.sqnr_db, measured.metric))
        done += 1
        if count_quantized(measured.model, candidates.mode) == 0:  # no int8 node left: not an answer
            emptied = True
            break
        if measured.metric < best.metric:
            best, best_done = measured, done
        report(clock.step(done, len(trials), node, name, measured.metric, bound))
        if measured.metric <= bound:
            return measured
    tried = (f"keeping {done} left no node in int8" if emptied
             else f"{done} of the {len(ranking)} ranked nodes tried, one stays int8")
    raise ToleranceError(f"the bound {bound:g} on the {name} cannot be met with a node left in int8: the best {name} "
                         f"reached is {best.metric:.4g} ({best_done} node(s) kept in float; {tried}); loosen the "
                         "bound or use --mode fp16")


class _Clock:
    """The bound search's time: since it started, its pace per trial, and its budget."""

    def __init__(self, max_seconds: float | None):
        self.max_seconds = max_seconds
        self.started = self.trials_started = _now()
        self.trials = 0

    def elapsed(self) -> float:
        return _now() - self.started

    def start_trials(self) -> None:
        self.trials_started = _now()

    def pace(self) -> float | None:
        """Seconds per trial so far (None before the first)."""
        return (_now() - self.trials_started) / self.trials if self.trials else None

    def out_of_time(self) -> bool:
        """The budget is spent, or the next trial at the pace so far would end past it."""
        if self.max_seconds is None:
            return False
        return self.elapsed() + (self.pace() or 0.0) > self.max_seconds

    def step(self, done: int, total: int, node: SensitiveNode | None, name: str, figure: float,
             bound: float) -> SearchStep:
        self.trials = done
        pace = self.pace()
        eta = None if pace is None else pace * (total - done)
        if eta is not None and self.max_seconds is not None:
            eta = max(0.0, min(eta, self.max_seconds - self.elapsed()))
        return SearchStep(done, total, None if node is None else node.name, None if node is None else node.op_type,
                          None if node is None else node.sqnr_db, name, figure, bound, round(self.elapsed(), 3),
                          None if eta is None else round(eta, 3), figure <= bound)


def cure_collapse(candidates: Candidates, measured: Measurement, steps: list[str]) -> Measurement:
    """Outputs that collapsed in int8: keeps the graph's last quantized nodes in float, one at a time, until they no
    longer do (a note in `steps` says so).

    Raises:
        ToleranceError: the outputs collapsed, even with the last nodes in float (or in fp16).
    """
    problem = measured.collapse  # found before the retries: the one reported when none cures it
    if problem is None:
        return measured
    kept = candidates.kept
    if candidates.mode in ("static", "dynamic"):  # before giving up: the graph's tail in float, one node at a time
        reference = candidates.reference
        for node in tail_nodes(reference.prepared, measured.model, reference.check.feeds, candidates.excluded,
                               candidates.mode, _COLLAPSE_RETRIES):
            measured = candidates.keep_in_float(node, with_accuracy=False)  # the accuracy once cured
            kept.append(KeptNode(node.name, node.op_type, node.sqnr_db, measured.output_error))
            if measured.collapse is None and measured.cosine >= _CURED_COSINE:
                steps.append(f"outputs collapsed in int8; {len(kept)} sensitive node(s) at the end of the graph "
                             "kept in float cured it")
                return candidates.reference.measure(measured.model)
    tried = (f" (still, with {len(kept)} sensitive node(s) at the end of the graph kept in float: cosine "
             f"similarity {measured.cosine:.3f})") if kept else ""
    raise ToleranceError(problem + tried)
