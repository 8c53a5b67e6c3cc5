"""How `dlkit.verify` judges: the role of each output (classifier, batched, primary), the candidates run over the
data batch by batch into `core.agreement.RunningFigures`, and each candidate's result checked against the
thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from dlkit.core import sessions as sessions_
from dlkit.core import targets
from dlkit.core.agreement import OutputFigures, RunningFigures
from dlkit.errors import InvalidInputError
from dlkit.verification.candidates import NodeError, quantized_nodes
from dlkit.verification.results import Breach, CandidateResult
from dlkit.verification.runners import Run
from dlkit.verification.settings import VerifySettings
from dlkit_runtime import cpu


class OutputRoles(NamedTuple):
    """How each output is judged. names: all outputs. batched: those with the batch axis first. classifiers: the
    (batch, classes) outputs judged by top-1 agreement, with their `classes`. primary: the output whose worst
    samples are kept. labelled: accuracy is counted (labelled data and a classifier). class_names: for the report."""

    names: tuple[str, ...]
    batched: frozenset[str]
    classifiers: tuple[str, ...]
    classes: Mapping[str, int]
    primary: str | None
    labelled: bool
    class_names: tuple[str, ...] | None

    def running_figures(self) -> dict[str, RunningFigures]:
        """Fresh figures for one candidate, one per output."""
        first = self.classifiers[0] if self.classifiers else None
        return {n: RunningFigures(n, self.classes.get(n, 0), n == self.primary, self.labelled and n == first)
                for n in self.names}


def output_roles(expected: Mapping[str, np.ndarray], probe_count: int, source, regression: Sequence[str],
                 model_labels) -> OutputRoles:
    """The roles of the reference's outputs on a probe of `probe_count` samples.

    Raises:
        InvalidInputError: a regression output that is not an output of the models.
    """
    batched = frozenset(n for n, v in expected.items() if v.ndim >= 1 and v.shape[0] == probe_count)
    unknown = [n for n in regression if n not in expected]
    if unknown:
        raise InvalidInputError(f"regression output(s) {unknown} are not outputs of the models ({sorted(expected)})")
    classifier = _classifiers(expected, batched, regression)
    labelled = source.labels is not None and bool(classifier)
    width = expected[classifier[0]].shape[1] if classifier else 0
    class_names = model_labels or (source.class_names if source.class_names and
                                   len(source.class_names) == width else None)
    primary = (classifier or [n for n in expected if n in batched] or [None])[0]
    return OutputRoles(tuple(expected), batched, tuple(classifier), {n: expected[n].shape[1] for n in classifier},
                       primary, labelled, class_names)


def measure(rows: Sequence[Run], source, run_reference: Callable[[dict], dict], roles: OutputRoles,
            settings: VerifySettings, tasks: Sequence[list] = ()) -> tuple[list[dict[str, RunningFigures]], int]:
    """Runs the reference and every row on all samples; the running figures per row, and the samples done.
    `tasks`: per row, the `task_figures` accumulators (detections, segmentation maps, embeddings) to update."""
    stats = [roles.running_figures() for _ in rows]
    done = 0
    for batch in source.batches(settings.batch_size):
        ref = run_reference(batch)
        count = len(next(iter(batch.values())))
        labels = source.labels[done:done + count] if source.labels is not None else None
        for index, (row, per_output) in enumerate(zip(rows, stats)):
            got = sessions_.predict(row.model, batch, settings.deploy_batch_size if row.precision.dynamic else None)
            for task in (tasks[index] if tasks else ()):
                task.update(ref, got)
            for name, stat in per_output.items():
                if name in roles.batched:
                    stat.update(ref[name], got[name], done, batch, labels)
                else:  # a scalar or an output without a batch axis first: the batch's whole output is one row
                    stat.update(ref[name].reshape(1, -1), got[name].reshape(1, -1), done, batch, None)
        done += count
        if settings.progress is not None:
            settings.progress(done, source.count)
    return stats, done


def candidate_results(rows: Sequence[Run], stats, done: int, limits: Mapping[str, float | None],
                      settings: VerifySettings, reference: Any, sqnr_feeds: dict,
                      tasks: Sequence[list] = ()) -> tuple[tuple[CandidateResult, ...], tuple[str, ...]]:
    """One `CandidateResult` per row (judged rows checked against `limits`), and notes on what was skipped."""
    notes: list[str] = []
    results = []
    ranked: dict[Path, tuple[NodeError, ...]] = {}
    for index, (row, per_output) in enumerate(zip(rows, stats)):
        outputs = tuple(s.figures() for s in per_output.values())
        if row.path not in ranked:  # per-node SQNR is a property of the file: ranked once, on this host
            ranked[row.path] = quantized_nodes(row.path, row.precision, reference, settings.paths, sqnr_feeds, notes)
        figures = tuple(t.figures() for t in tasks[index]) if tasks else ()
        results.append(_candidate(row, outputs, ranked[row.path], limits, settings, done, figures))
    return tuple(results), tuple(notes)


def _candidate(row: Run, outputs, nodes, limits, settings: VerifySettings, done: int, tasks=()) -> CandidateResult:
    from dlkit.verification.task_figures import judge

    info = row.precision
    kernels = cpu.CpuKind.from_dict(row.computed_on["cpu"])
    warning = targets.mismatch(info.target, info.settings, kernels) if info.kind == "int8" else None
    breaches = _breaches(str(row.path), outputs, limits) + tuple(
        Breach(str(row.path), t.output, *b) for t in tasks for b in judge(t, limits["min_agreement"]))
    return CandidateResult(str(row.path), info.kind, outputs, nodes, breaches if row.judged else (), info.dynamic,
                           info.target, min(settings.deploy_batch_size if info.dynamic else settings.batch_size, done),
                           warning, row.computed_on, row.judged, tasks)


def _classifiers(expected: Mapping[str, np.ndarray], batched, regression: Sequence[str]) -> list[str]:
    """Outputs judged by top-1 agreement: every (batch, classes) output not named in `regression`."""
    return [n for n, v in expected.items() if n in batched and v.ndim == 2 and v.shape[1] >= 2 and n not in regression]


def _breaches(path: str, outputs: Sequence[OutputFigures], limits: Mapping[str, float | None]) -> tuple[Breach, ...]:
    found = []
    for o in outputs:
        if limits["atol"] is not None and not o.max_abs_error <= limits["atol"]:
            found.append(Breach(path, o.name, "max_abs_error", limits["atol"], o.max_abs_error))
        if limits["min_agreement"] is not None and o.top1_agreement is not None \
                and o.top1_agreement < limits["min_agreement"]:
            found.append(Breach(path, o.name, "top1_agreement", limits["min_agreement"], o.top1_agreement))
        if limits["max_accuracy_drop"] is not None and o.accuracy_drop is not None \
                and o.accuracy_drop > limits["max_accuracy_drop"]:
            found.append(Breach(path, o.name, "accuracy_drop", limits["max_accuracy_drop"], o.accuracy_drop))
    return tuple(found)
