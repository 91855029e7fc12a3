"""What a stage-2 trial tells Ray Tune: the few numbers Tune acts on, and every metric packed into one string.

Tune keeps running statistics (six figures: max, min, avg, last, last-5-avg, last-10-avg) of every numeric metric of
every trial for the whole run, and a cached JSON copy of each trial's state. A stage-2 report carries ~70 metrics
(each language's scores, each policy's selection), which cost the driver about 120 KB per finished trial: 600 MB at
5,000 trials (`benchmarks/driver_scale.py`). Tune only acts on the epoch (the schedulers' time attribute) and the
selection scores (the searcher's and the scheduler's metric), so those stay numbers; the rest travels as one JSON
string that `TuneEvents` unpacks into the trial's record, bit for bit (JSON keeps a float's repr, NaN included).
"""

from __future__ import annotations

import json
from typing import Any

from xgrid.tracking_schema import EPOCH, SECONDS, SELECT_PREFIX

PACKED = "xgrid_metrics"  # the one string metric of a packed report


def _acts_on(name: str) -> bool:
    return name in (EPOCH, SECONDS) or name.startswith(f"{SELECT_PREFIX}.")


def packed(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` as Tune should get them: what Tune acts on as numbers, and all of them in `PACKED`."""
    return {k: v for k, v in metrics.items() if _acts_on(k)} | {PACKED: json.dumps(metrics)}


def unpacked(result: dict[str, Any]) -> dict[str, Any]:
    """A Tune result's numeric metrics: Tune's own (time_total_s, training_iteration, ...) and the trial's, the
    packed ones unpacked. A result that was not packed gives its numbers as they are."""
    numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    text = result.get(PACKED)
    return numbers | json.loads(text) if isinstance(text, str) else numbers


def tune_report(metrics: dict[str, Any], checkpoint=None) -> None:
    """`ray.tune.report` of a packed report: an inline trial's reporter."""
    from ray import tune

    tune.report(packed(metrics), checkpoint=checkpoint)


def packing_report_callback():
    """Ray Train's `TuneReportCallback` (a TorchTrainer's rank-0 reports forwarded to the Tune trial driving it),
    forwarding packed reports."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class PackedTuneReport(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            super().after_report(run_context, [packed(metrics[0]), *metrics[1:]], checkpoint)

    return PackedTuneReport()
