"""A rough cost for a plan, printed by `xgrid search --dry-run` before anything runs.

Work is counted in training example-passes (examples x epochs, per stage). Time is estimated two ways:
on CPU for the embedded tiny model, from a throughput measured on a 2-core machine; for real encoders, in
GPU-hours from 6 x parameters x tokens FLOPs at an assumed 40% of an H100's dense bf16 peak.
Both are estimates for planning, not promises: eval passes, start-up and data loading come on top.
"""

from __future__ import annotations

from dataclasses import dataclass

from xgrid.config import EMBEDDED_TINY
from xgrid.data.sources import LoadContext
from xgrid.planning.plan import Plan
from xgrid.tasks import TaskSpec

# Measured on 2 CPUs with the default tiny model (`python benchmarks/planted_effect.py` prints per-cell times):
# training examples per second.
TINY_CPU_EXAMPLES_PER_S = 1500.0
TINY_TRIAL_OVERHEAD_S = 2.0
H100_BF16_PEAK_FLOPS = 989e12
ASSUMED_MFU = 0.4
# Parameter counts of the encoders the study names (from their model cards); others are estimated as unknown.
KNOWN_PARAMS = {
    "FacebookAI/xlm-roberta-base": 278e6, "FacebookAI/xlm-roberta-large": 560e6,
    "facebook/xlm-roberta-xl": 3.5e9, "facebook/xlm-roberta-xxl": 10.7e9,
    "google-bert/bert-base-multilingual-cased": 178e6, "google/mt5-xl": 3.7e9 / 2, "google/mt5-xxl": 13e9 / 2,
}


@dataclass
class Cost:
    stage1_jobs: int
    stage2_trials: int
    retrieval_evals: int
    stage1_example_passes: int | None
    stage2_example_passes: int | None
    cpu_seconds: float | None  # embedded tiny model only
    gpu_hours: float | None  # real encoders with known size
    notes: list[str]


def train_size(task: TaskSpec, load: LoadContext) -> int | None:
    """English training examples of a task: its declared size, else counted when that is cheap, else unknown."""
    hint = task.option("train_size")
    if hint is not None:
        return int(hint)
    if task.source.cheap_to_load:
        return len(task.source.load(task, "en", "train", load))
    return None


def estimate(plan: Plan) -> Cost:
    space = plan.space
    load = LoadContext(microbench_seed=space.microbench_seed)
    notes: list[str] = []

    def passes(tasks: tuple[TaskSpec, ...], settings) -> int | None:
        sizes = [train_size(t, load) for t in tasks]
        if any(s is None for s in sizes):
            notes.append(f"unknown training size for {[t.name for t, s in zip(tasks, sizes) if s is None]}")
            return None
        cap = settings.max_train_examples
        return sum(min(s, cap) if cap else s for s in sizes) * settings.epochs

    s1 = [passes(j.task_specs, space.intermediate_training) for j in plan.trained_jobs]
    s2 = [_times(passes((c.train_task,), space.target_training), plan.trials_per_cell) if c.trains else 0
          for c in plan.cells]
    s1_total = None if None in s1 else sum(s1)
    s2_total = None if None in s2 else sum(s2)
    cpu_s = gpu_h = None
    trials = plan.stage2_trials()
    if s1_total is not None and s2_total is not None:
        if all(m.source == EMBEDDED_TINY for m in space.base_models):
            cpu_s = (s1_total + s2_total) / TINY_CPU_EXAMPLES_PER_S + TINY_TRIAL_OVERHEAD_S * (trials + len(s1))
            cpu_s /= max(1, min(space.resources.max_concurrent_trials, 2))
        params = [KNOWN_PARAMS.get(m.source) for m in space.base_models]
        if all(p is not None for p in params):
            avg_params = sum(params) / len(params)
            tokens = (s1_total + s2_total) * space.target_training.max_length
            gpu_h = 6 * avg_params * tokens / (H100_BF16_PEAK_FLOPS * ASSUMED_MFU) / 3600
    return Cost(len(plan.trained_jobs), trials, plan.retrieval_evaluations(), s1_total, s2_total, cpu_s,
                gpu_h, sorted(set(notes)))


def _times(passes: int | None, trials: int) -> int | None:
    return None if passes is None else passes * trials
