"""A rough cost for a plan, printed by `xgrid search --dry-run` before anything runs.

Work is counted in training example-passes (examples x epochs, per stage), for the stage-1 checkpoints still
to train only (`estimate(plan, has=store.has)`: those already in the store cost nothing) and every stage-2 trial.
Time is estimated per base model: on 2 CPUs for the embedded tiny model, from a real default search timed phase
by phase (`benchmarks/cost_calibration.py`); for any other encoder whose size is known offline (the list below,
a local folder's config.json, or a config in the Hugging Face cache), in H100 GPU-hours from 6 x parameters x
training tokens (each stage at its own max length) plus 2 x parameters x evaluation tokens (every epoch's dev pass
over every evaluated language, and the test pass of up to two selected epochs; counted where `max_eval_examples`
bounds them or the task declares its sizes, else left out with a note) FLOPs at an assumed 40% of the dense bf16 peak. A model whose size cannot be known offline gets a note
saying so, never a silent gap. Both are estimates for planning, not promises.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from xgrid.config import EMBEDDED_TINY
from xgrid.data.sources import LoadContext
from xgrid.planning.plan import Plan
from xgrid.tasks import TaskSpec

# The embedded tiny model on 2 CPUs, from a real default search (`xgrid search`: 16 stage-1 jobs, 36 stage-2
# trials, 18 retrieval evaluations, max_concurrent 2, MLflow on SQLite) timed phase by phase from its progress
# lines with `python benchmarks/cost_calibration.py` on an otherwise idle machine (2026-12-02: 176 s wall; stage 1
# 52 s, stage 2 xnli 77 s, udpos 25 s, retrieval 8 s, 14 s outside the search). The fit: overhead 0.9 s per unit,
# stage 1 642 and stage 2 717 examples/s, 5 s per target. A machine busy with other work is slower: the earlier
# 90-trial default (with span QA, ~2.5x slower per example) took 530 s and 712 s under load, ~2.5x its idle time.
CPU_SLOTS = 2  # units of work running at once on 2 CPUs (at most max_concurrent_trials)
# A retrieval evaluation trains nothing: its wall per slot is the fixed cost of a unit of work (start, load the
# encoder, featurize, evaluate every language, report, track). Charged to every stage-1 job and stage-2 trial too.
TINY_TRIAL_OVERHEAD_S = 0.9
# Training example-passes per second per slot once that overhead is off: stage 1 from its phase wall, stage 2
# from the two trained targets' walls (NLI and tagging; span QA is ~2.5x slower per example, which this rate does
# not charge: a space with a QA target on the tiny model takes longer than estimated).
TINY_STAGE1_EXAMPLES_PER_S = 640.0
TINY_STAGE2_EXAMPLES_PER_S = 720.0
# A trial or stage-1 job that is a TorchTrainer run (`trial_backend: ray_train`, several workers, FSDP) pays its
# start-up instead: benchmarks/trial_overhead.py measured +21.75 s per trial on 2 CPUs (README, "Trial overhead").
TORCH_TRAINER_OVERHEAD_S = 21.75
TINY_TARGET_START_S = 5.0  # per target: its Tuner, its Optuna study, the first trial's actor
TINY_SEARCH_START_S = 14.0  # the process, local Ray, the MLflow store, the tiny model; the end-of-search report
H100_BF16_PEAK_FLOPS = 989e12
ASSUMED_MFU = 0.4
# Parameter counts of the encoders the study names (from their model cards); others are read from their config.
KNOWN_PARAMS = {
    "FacebookAI/xlm-roberta-base": 278e6, "FacebookAI/xlm-roberta-large": 560e6,
    "facebook/xlm-roberta-xl": 3.5e9, "facebook/xlm-roberta-xxl": 10.7e9,
    "google-bert/bert-base-multilingual-cased": 178e6, "google/mt5-xl": 3.7e9 / 2, "google/mt5-xxl": 13e9 / 2,
}
NOT_CACHED = "its size is unknown offline (not in the HF cache; run `xgrid prefetch SPACE`)"


@dataclass
class ModelCost:
    """One base model's share of a plan: its work and its time, or why there is no time."""

    model: str
    source: str
    params: float | None  # None: unknown offline (or the embedded tiny model, timed on CPU instead)
    stage1_to_train: int
    stage2_trials: int
    retrieval_evals: int
    stage1_example_passes: int | None
    stage2_example_passes: int | None
    cpu_seconds: float | None = None  # the embedded tiny model: wall on 2 CPUs (its share, start-up aside)
    gpu_hours: float | None = None  # any other encoder of known size
    reason: str | None = None  # why neither is known
    eval_tokens: int = 0  # evaluation tokens counted in gpu_hours (forward only)
    eval_left_out: tuple[str, ...] = ()  # stages / targets whose evaluation passes are not counted (size unknown)

    @property
    def estimated(self) -> bool:
        return self.cpu_seconds is not None or self.gpu_hours is not None


@dataclass
class Cost:
    stage1_jobs: int  # unique stage-1 checkpoints the plan needs
    stage1_to_train: int  # of those, not in the store (all of them when no store was looked at)
    stage1_in_store: int | None  # None: no store looked at
    stage2_trials: int
    retrieval_evals: int
    stage1_example_passes: int | None  # checkpoints still to train only
    stage2_example_passes: int | None
    models: list[ModelCost] = field(default_factory=list)
    cpu_start_seconds: float = 0.0  # start-up of a search on CPU (once per search, per target), in cpu_seconds
    notes: list[str] = field(default_factory=list)

    @property
    def cpu_seconds(self) -> float | None:
        """Wall on 2 CPUs of the models timed on CPU, with the search's start-up; None when none is."""
        timed = [m.cpu_seconds for m in self.models if m.cpu_seconds is not None]
        return sum(timed) + self.cpu_start_seconds if timed else None

    @property
    def gpu_hours(self) -> float | None:
        timed = [m.gpu_hours for m in self.models if m.gpu_hours is not None]
        return sum(timed) if timed else None

    @property
    def complete(self) -> bool:
        """Every base model has an estimate (else the totals leave some out)."""
        return all(m.estimated for m in self.models)


def train_size(task: TaskSpec, load: LoadContext) -> int | None:
    """English training examples of a task: its declared size, else counted when that is cheap, else unknown."""
    hint = task.option("train_size")
    if hint is not None:
        return int(hint)
    if task.source.cheap_to_load:
        return len(task.source.load(task, "en", "train", load))
    return None


@functools.lru_cache(maxsize=None)
def model_params(source: str) -> tuple[float | None, str | None]:
    """(parameters, None) for a model whose size is known offline, else (None, why not). Never downloads: the
    study's list, then the config of a local folder or of a hub id in the Hugging Face cache, counted on the
    meta device (no weights are read or allocated)."""
    if source in KNOWN_PARAMS:
        return KNOWN_PARAMS[source], None
    folder = Path(source).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            return None, f"its size is unknown: {folder} has no config.json"
        return _count(str(folder), local=True)
    return _count(source, local=False)


def _count(source: str, local: bool) -> tuple[float | None, str | None]:
    from transformers import AutoConfig

    from xgrid.models.loading import quiet_transformers

    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - not cached (OSError), not a valid repo id, a config of another version
        if not local:
            return None, NOT_CACHED
        return None, f"its config could not be read: {_first_line(err)}"
    try:
        return float(_count_parameters(config)), None
    except Exception as err:  # noqa: BLE001 - a model type this transformers cannot build
        return None, f"its size could not be counted from its config ({config.model_type}): {_first_line(err)}"


def _count_parameters(config) -> int:
    """Parameters of the encoder xgrid trains (encoder-only for T5-style models), built on the meta device."""
    import torch
    import transformers

    from xgrid.models.loading import ENCODER_ONLY_CLASSES, POOLER_FAMILIES

    class_name = ENCODER_ONLY_CLASSES.get(config.model_type)
    with torch.device("meta"):
        if class_name:
            model = getattr(transformers, class_name)(config)
        else:
            kwargs = {"add_pooling_layer": False} if config.model_type in POOLER_FAMILIES else {}
            model = transformers.AutoModel.from_config(config, **kwargs)
    return sum(p.numel() for p in model.parameters())


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


def estimate(plan: Plan, has: Callable[[str], bool] | None = None) -> Cost:
    """The plan's work and time. `has(key)`: whether a stage-1 checkpoint is already in the store (those are
    reused, not trained, and cost nothing); None counts every checkpoint as still to train."""
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

    to_train = [j for j in plan.trained_jobs if not (has and has(j.key))]
    eval_size = EvalSizes(load)  # shared by every base model: each split counted once
    models = []
    for base in space.base_models:
        # Each base model with its own settings and resources (`model_overrides`), each target with its own
        # protocol (`target_overrides`): epochs, caps and whether its rate is searched.
        resources = space.resources_for(base.name)
        # What runs at once on 2 CPUs: a trial of W workers x c CPUs takes W*c of them.
        per_trial_cpus = max(1, int(resources.workers_per_trial * resources.cpus_per_worker))
        slots = max(1, min(resources.max_concurrent_trials, CPU_SLOTS // per_trial_cpus))
        stage1_settings = space.intermediate_training_for(base.name)
        jobs = [j for j in to_train if j.base_model == base]
        cells = [c for c in plan.cells if c.base_model == base]
        s1 = _total([passes(j.task_specs, stage1_settings) for j in jobs])
        trained = [c for c in cells if c.trains]
        settings = {c.target: space.training_for(c.target, base.name) for c in trained}
        per_cell = [(_times(passes((c.train_task,), settings[c.target]), plan.trials_of(c)),
                     settings[c.target].max_length) for c in trained]
        s2 = _total([p for p, _ in per_cell])
        s2_tokens = _total([_times(p, length) for p, length in per_cell])
        cost = ModelCost(base.name, base.source, None, len(jobs), sum(plan.trials_of(c) for c in trained),
                         sum(not c.trains for c in cells), s1, s2)
        if s1 is None or s2 is None:
            cost.reason = "its training size is unknown"
        elif base.source == EMBEDDED_TINY:
            trained_units = cost.stage1_to_train + cost.stage2_trials
            # Retrieval evaluations always run inline (a Ray task); the others start a TorchTrainer if they use one.
            per_unit = TORCH_TRAINER_OVERHEAD_S if resources.uses_ray_train else TINY_TRIAL_OVERHEAD_S
            cost.cpu_seconds = (trained_units * per_unit + cost.retrieval_evals * TINY_TRIAL_OVERHEAD_S
                                + s1 / TINY_STAGE1_EXAMPLES_PER_S + s2 / TINY_STAGE2_EXAMPLES_PER_S) / slots
        else:
            cost.params, cost.reason = model_params(base.source)
            if cost.params is not None:
                tokens = s1 * stage1_settings.max_length + s2_tokens
                cost.eval_tokens, cost.eval_left_out = _eval_tokens(plan, eval_size, jobs, cells, stage1_settings,
                                                                    settings)
                if cost.eval_left_out:
                    notes.append(f"{base.name}: evaluation passes not counted for {', '.join(cost.eval_left_out)} "
                                 "(no declared dev/test size; max_eval_examples bounds them)")
                flops = 6 * cost.params * tokens + 2 * cost.params * cost.eval_tokens
                cost.gpu_hours = flops / (H100_BF16_PEAK_FLOPS * ASSUMED_MFU) / 3600
            else:
                notes.append(f"no time estimate for {base.name}: {cost.reason}")
        models.append(cost)
    s1_total = _total([m.stage1_example_passes for m in models])
    s2_total = _total([m.stage2_example_passes for m in models])
    start = TINY_SEARCH_START_S + TINY_TARGET_START_S * len(space.targets)
    return Cost(len(plan.trained_jobs), len(to_train), None if has is None else len(plan.trained_jobs) - len(to_train),
                plan.stage2_trials(), plan.retrieval_evaluations(), s1_total, s2_total, models,
                start if any(m.cpu_seconds is not None for m in models) else 0.0, sorted(set(notes)))


SELECTED_EPOCHS_SCORED = 2  # the test split is scored once per distinct selected epoch: at most one per policy


class EvalSizes:
    """Examples of one evaluation split as a phase reads them: counted where that is cheap (the micro-benchmark;
    each split once), else the task's declared `eval_size`, bounded by `max_eval_examples`; None when neither is
    known."""

    def __init__(self, load: LoadContext):
        self.load, self._counted = load, {}

    def __call__(self, task: TaskSpec, language: str, split: str, cap: int | None) -> int | None:
        if not task.source.cheap_to_load:
            declared = task.option("eval_size")
            if isinstance(declared, dict):
                declared = declared.get(split)
            return cap if declared is None else min(declared, cap) if cap else declared
        key = (task.name, language, split)
        if key not in self._counted:
            try:
                self._counted[key] = len(task.source.load(task, language, split, self.load) or [])
            except (KeyError, ValueError, FileNotFoundError):  # a language without that split: nothing scored
                self._counted[key] = 0
        return min(self._counted[key], cap) if cap else self._counted[key]


def _eval_tokens(plan: Plan, eval_size: "EvalSizes", jobs, cells, stage1_settings,
                 settings) -> tuple[int, tuple[str, ...]]:
    """Evaluation tokens (forward passes) of a model's stage-1 jobs and cells, where their sizes are known or
    bounded, and what is left out. Stage 1 scores each task's English dev every epoch; a trained cell scores its
    target's dev in every evaluated language every epoch, then the test split for each selected epoch; a
    retrieval cell embeds its test split once."""
    counted, left_out = 0, []
    for job in jobs:
        sizes = [eval_size(t, "en", "dev", stage1_settings.max_eval_examples) for t in job.task_specs]
        if None in sizes:
            left_out.append("stage 1")
        else:
            counted += sum(sizes) * stage1_settings.epochs * stage1_settings.max_length
    for cell in cells:
        own = settings.get(cell.target) or plan.space.training_for(cell.target, cell.base_model.name)
        languages = cell.languages or cell.target_task.languages
        tests = [eval_size(cell.target_task, lang, "test", own.max_eval_examples) for lang in languages]
        devs = ([eval_size(cell.target_task, lang, "dev", own.max_eval_examples) for lang in languages]
                if cell.trains else [])
        if None in tests or None in devs:
            left_out.append(cell.target)
            continue
        trials = plan.trials_of(cell) if cell.trains else 1
        passes = own.epochs * sum(devs) + SELECTED_EPOCHS_SCORED * sum(tests) if cell.trains else sum(tests)
        counted += trials * passes * own.max_length
    return counted, tuple(dict.fromkeys(left_out))


def _total(values: list[int | None]) -> int | None:
    return None if None in values else sum(values)


def _times(passes: int | None, trials: int) -> int | None:
    return None if passes is None else passes * trials
