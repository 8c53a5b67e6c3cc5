"""The searches that keep nodes in float: the most sensitive ones until the bound holds, then, when the outputs
collapsed, the last ones of the graph until they are cured."""

from __future__ import annotations

from dlkit.errors import ToleranceError
from dlkit.quantization.candidate import Candidates
from dlkit.quantization.measurement import Measurement
from dlkit.quantization.quantizers import rank_sensitive_nodes, tail_nodes
from dlkit.quantization.results import KeptNode

_CURED_COSINE = 0.98  # a retry cures a collapse only when it brings the outputs this close to the float model's
_COLLAPSE_RETRIES = 3  # the last quantized nodes, kept in float by sensitivity, before a collapse is an error


def keep_sensitive_in_float(candidates: Candidates, measured: Measurement) -> Measurement:
    """Keeps the most sensitive nodes in float, one at a time, until the bound holds (without a bound, or when it
    holds already, `measured` is the answer).

    Raises:
        ToleranceError: the bound cannot be met, even with every ranked node in float.
    """
    bound = measured.bound
    if bound is None or measured.metric <= bound:
        return measured
    reference = candidates.reference
    ranking = rank_sensitive_nodes(reference.prepared, measured.model, reference.check.feeds, candidates.excluded)
    kept = candidates.kept
    for node in ranking:
        measured = candidates.keep_in_float(node)
        kept.append(KeptNode(node.name, node.op_type, node.sqnr_db, measured.metric))
        if measured.metric <= bound:
            return measured
    metric, mode = measured.metric, candidates.mode
    if not kept:  # the ranking reads QDQ pairs: only static int8 has them
        fix = {"static": "keep nodes in float with --exclude-node/--exclude-op-type",
               "fp16": "keep the float32 model"}.get(
            mode, "use --mode static with --calibration data, which can keep sensitive nodes in float")
        raise ToleranceError(f"the bound {bound:g} is not met ({metric:.4g}) and {mode} mode has no nodes to "
                             f"rank and keep in float; loosen the bound or {fix}")
    raise ToleranceError(f"the bound {bound:g} cannot be met: with all {len(kept)} sensitive nodes kept in "
                         f"float the figure is {metric:.4g}; loosen the bound or use --mode fp16")


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
