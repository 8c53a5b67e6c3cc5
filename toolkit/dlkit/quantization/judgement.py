"""The quantized model judged as `dlkit verify` judges it, by the same thresholds (`core.judging`), so that a file
quantize writes without a warning is one verify passes on the same data."""

from __future__ import annotations

from dataclasses import dataclass

from dlkit.core import judging
from dlkit.quantization.measurement import Measurement
from dlkit.quantization.sources import CheckSamples

THRESHOLDS = {"min_agreement": judging.MIN_AGREEMENT, "max_accuracy_drop": judging.MAX_ACCURACY_DROP}


@dataclass(frozen=True)
class Judgement:
    """passed: within verify's thresholds (None when nothing was judged). warnings: one line each."""

    passed: bool | None
    warnings: tuple[str, ...]


def judge(measured: Measurement, check: CheckSamples) -> Judgement:
    """Top-1 agreement on the check samples and the accuracy drop on the labelled eval data against verify's
    default thresholds, and a note when the labelled sample is too small to read the drop alone.

    Random check samples are not judged: agreement on noise says nothing about the data the model will see.
    """
    warnings = []
    top1 = measured.accuracy
    if top1 is not None and top1.count < judging.SMALL_SAMPLE:
        low, high = top1.interval
        warnings.append(f"the accuracy drop ({100 * top1.drop:.2f} points) is measured on only {top1.count} labelled "
                        f"samples (fewer than {judging.SMALL_SAMPLE}): its 95% interval is {100 * low:+.2f} to "
                        f"{100 * high:+.2f} points; give more --eval-data for a firmer figure")
    breaches = []
    agreement = measured.agreement
    if agreement is not None and check.source != "random" and agreement < judging.MIN_AGREEMENT:
        counted = top1.count if top1 is not None else check.count  # all the eval data, or the check samples
        breaches.append(f"top-1 agreement {agreement:.4f} on {counted} samples is below {judging.MIN_AGREEMENT:g}")
    if top1 is not None and top1.drop > judging.MAX_ACCURACY_DROP:
        breaches.append(f"the accuracy drop {100 * top1.drop:.2f} points is above "
                        f"{100 * judging.MAX_ACCURACY_DROP:g}")
    if breaches:
        warnings.append(f"below dlkit verify's default thresholds, which will fail this file on the same data: "
                        f"{'; '.join(breaches)}; keep sensitive nodes in float with --max-accuracy-drop "
                        f"{judging.MAX_ACCURACY_DROP:g} (labelled --eval-data) or --max-output-error")
    judged = top1 is not None or (agreement is not None and check.source != "random")
    return Judgement(not breaches if judged else None, tuple(warnings))
