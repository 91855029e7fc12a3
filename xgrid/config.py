"""The search space: YAML -> validated, frozen objects. Nothing in xgrid reads YAML anywhere else.

Task names are checked against a registry passed in the validation context, so this module imports nothing
from the rest of xgrid but the policy names of `tracking_schema`, and every error names its field path (`targets[2]: unknown task 'mb_xnl'; did you
mean 'mb_xnli'?`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, RootModel, Tag, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from xgrid.tracking_schema import DEFAULT_POLICY, ENGLISH_DEV, TARGET_DEV

NONE_BASELINE = "none"
EMBEDDED_TINY = "embedded:tiny"


class SpaceError(ValueError):
    """A search space that cannot be used; `str()` is one line per problem, each naming the field path."""


class Strict(BaseModel):
    # allow_inf_nan=False: YAML reads `.inf` and `.nan` as floats, and an infinite learning rate or grad clip
    # passes every `gt=` bound (nan fails them with a confusing message); neither is ever meant.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Seeds go to numpy and Optuna's samplers, which take 32-bit unsigned seeds; a bigger one fails in every trial.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


# --- learning-rate search ------------------------------------------------------------------------------------
# Each form owns what the search does with it: its Optuna distribution, the trials enqueued for each cell, and
# the one value a plain (unsearched) run uses. Nothing outside this block takes the union apart.
# A learning rate, in every form: positive and below 1 (what AdamW fine-tuning ever uses; 1e3 is a typo).
Rate = Annotated[float, Field(gt=0, lt=1)]


class FixedRate(RootModel[Rate]):
    """A single learning rate, written (and dumped) as a bare number."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)
    searched: ClassVar[bool] = False

    @property
    def value(self) -> float:
        return self.root

    def __float__(self) -> float:
        return self.root

    def __str__(self) -> str:
        return str(self.root)

    def optuna_distribution(self):
        import optuna.distributions as d

        return d.CategoricalDistribution([self.value])

    def planned_trials(self, trials_per_cell: int) -> int:
        return 1  # nothing to search

    def enqueued_points(self, cell_ids: list[str], trials_per_cell: int) -> list[dict[str, Any]]:
        return [{"cell": c, "learning_rate": self.value} for c in cell_ids]

    def fixed_value(self) -> float:
        return self.value

    def label(self) -> str:
        return f"{self.value:g}"


def round_robin(cell_ids: list[str], trials_per_cell: int, point) -> list[dict[str, Any]]:
    """A target's planned trials, `point(cell, i)` for the i-th trial of each cell, in rounds: every cell's first
    trial, then every cell's second, ... One study (and sampler) serves all the cells of a target, so by a cell's
    second trial the sampler has seen the first trial of every cell; in cell order the first cells would get only
    the sampler's random start-up trials (`benchmarks/search_efficiency.py`)."""
    return [point(c, i) for i in range(trials_per_cell) for c in cell_ids]


class LogRange(Strict):
    low: Rate
    high: Rate
    log: bool = True
    searched: ClassVar[bool] = True

    @model_validator(mode="after")
    def _ordered(self) -> "LogRange":
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    def optuna_distribution(self):
        import optuna.distributions as d

        return d.FloatDistribution(self.low, self.high, log=self.log)

    def planned_trials(self, trials_per_cell: int) -> int:
        return trials_per_cell

    def enqueued_points(self, cell_ids: list[str], trials_per_cell: int) -> list[dict[str, Any]]:
        # The cell is fixed, the rate left to the sampler (Optuna samples what an enqueued trial omits).
        return round_robin(cell_ids, trials_per_cell, lambda c, i: {"cell": c})

    def fixed_value(self) -> float:
        """The geometric middle of the range (for plain runs)."""
        return (self.low * self.high) ** 0.5

    def label(self) -> str:
        return f"{self.low:g}..{self.high:g}"


class Choices(Strict):
    values: Annotated[list[Rate], Field(min_length=1)]
    searched: ClassVar[bool] = True

    def optuna_distribution(self):
        import optuna.distributions as d

        return d.CategoricalDistribution(sorted(self.values))

    def planned_trials(self, trials_per_cell: int) -> int:
        # At most once per value: a second trial of a value in the same cell (same seed) would repeat the first.
        return min(trials_per_cell, len(self.values))

    def enqueued_points(self, cell_ids: list[str], trials_per_cell: int) -> list[dict[str, Any]]:
        if len(self.values) > trials_per_cell:  # more values than trials: the sampler picks among them
            return round_robin(cell_ids, trials_per_cell, lambda c, i: {"cell": c})
        # Each value for each cell, so the grid inside a cell is complete.
        values = sorted(self.values)
        return round_robin(cell_ids, trials_per_cell, lambda c, i: {"cell": c, "learning_rate": values[i % len(values)]})

    def fixed_value(self) -> float:
        """The middle value (for plain runs)."""
        return sorted(self.values)[len(self.values) // 2]

    def label(self) -> str:
        return ",".join(f"{v:g}" for v in sorted(self.values))


def _is_number_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
        return True
    except ValueError:
        return False


def _learning_rate_form(value: Any) -> str | None:
    """Pick the form from the value's shape, so an error speaks of the form the user meant, not all three."""
    if isinstance(value, FixedRate) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return "fixed"
    if _is_number_text(value):  # '1e-3' quoted, or from JSON: the number it reads as
        return "fixed"
    if isinstance(value, (dict, Choices)):
        return "choices" if isinstance(value, Choices) or "values" in value else "range"
    return "range" if isinstance(value, LogRange) else None


LearningRate = Annotated[
    Union[Annotated[FixedRate, Tag("fixed")], Annotated[LogRange, Tag("range")],
          Annotated[Choices, Tag("choices")]],
    Discriminator(_learning_rate_form, custom_error_type="learning_rate_form",
                  custom_error_message="a learning rate is a number, {low, high, log} or {values: [...]}"),
]


class TrainingSettings(Strict):
    learning_rate: LearningRate
    epochs: Annotated[int, Field(ge=1, le=1000)] = 3
    # The global batch of one optimizer micro-step: split evenly over `resources.workers_per_trial` (each worker
    # takes batch_size / workers), so results do not change with the number of workers; x grad_accum per update.
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    grad_accum: Annotated[int, Field(ge=1, le=1024)] = 1
    max_length: Annotated[int, Field(ge=8, le=8192)] = 128
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.1
    weight_decay: Annotated[float, Field(ge=0, lt=1)] = 0.01
    grad_clip: Annotated[float, Field(gt=0, le=1e6)] = 1.0
    max_train_examples: Annotated[int, Field(ge=1, le=10**9)] | None = None  # cap for smoke runs
    max_eval_examples: Annotated[int, Field(ge=1, le=10**9)] | None = None

    @property
    def searched(self) -> bool:
        return self.learning_rate.searched


class IntermediateTraining(TrainingSettings):
    learning_rate: Rate = 1e-3  # fixed: it is part of the checkpoint key


# The fields of `target_training` one target may set for itself (jiant trains UD-POS 10 epochs, XNLI 2).
OVERRIDABLE = ("learning_rate", "epochs", "batch_size", "grad_accum", "max_length", "max_train_examples",
               "max_eval_examples", "warmup_ratio", "weight_decay")


class TrainingOverride(Strict):
    """Where one target's (or one base model's) fine-tuning differs from the shared block; unset fields keep the
    shared value."""

    learning_rate: LearningRate | None = None
    epochs: Annotated[int, Field(ge=1, le=1000)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=4096)] | None = None
    grad_accum: Annotated[int, Field(ge=1, le=1024)] | None = None
    max_length: Annotated[int, Field(ge=8, le=8192)] | None = None
    max_train_examples: Annotated[int, Field(ge=1, le=10**9)] | None = None
    max_eval_examples: Annotated[int, Field(ge=1, le=10**9)] | None = None
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] | None = None
    weight_decay: Annotated[float, Field(ge=0, lt=1)] | None = None

    def applied_to(self, shared: TrainingSettings) -> TrainingSettings:
        changes = {k: getattr(self, k) for k in OVERRIDABLE if getattr(self, k) is not None}
        return shared.model_copy(update=changes) if changes else shared


class TargetOverride(TrainingOverride):
    """One target's protocol where it differs from `target_training`; unset fields keep the shared value.
    `languages` narrows the evaluated languages (English, the selection language, is always kept)."""

    languages: Annotated[list[str], Field(min_length=1)] | None = None


class IntermediateOverride(TrainingOverride):
    """One base model's stage-1 settings where they differ from `intermediate_training` (a fixed learning rate:
    it is part of the checkpoint key)."""

    learning_rate: Rate | None = None


class ResourcesOverride(Strict):
    """One base model's resources where they differ from the space's `resources` block; the merged block is
    checked by the same rules (bf16 needs a GPU, inline is one CPU worker)."""

    workers_per_trial: Annotated[int, Field(ge=1, le=1024)] | None = None
    cpus_per_worker: Annotated[float, Field(gt=0, le=4096)] | None = None
    gpus_per_worker: Annotated[float, Field(ge=0, le=1024)] | None = None
    max_concurrent_trials: Annotated[int, Field(ge=1, le=100_000)] | None = None
    strategy: Literal["ddp", "fsdp"] | None = None
    precision: Literal["fp32", "bf16"] | None = None
    trial_backend: Literal["auto", "ray_train", "inline"] | None = None
    activation_checkpointing: bool | None = None
    cpu_offload: bool | None = None

    def set_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ModelOverride(Strict):
    """One base model's own settings over the space's shared blocks: a 3.5B encoder wants other learning rates
    and other hardware than a 270M one (a real encoder at the tiny model's 2e-3 collapses). Precedence, most
    specific last: `target_training` < `model_overrides.<model>.target_training` < `target_overrides.<target>`."""

    intermediate_training: IntermediateOverride = IntermediateOverride()
    target_training: TrainingOverride = TrainingOverride()
    resources: ResourcesOverride = ResourcesOverride()


class PowerOverride(Strict):
    task_sd: Annotated[float, Field(gt=0, le=100)] | None = None
    seed_sd: Annotated[float, Field(ge=0, le=100)] | None = None


class PowerAssumptions(Strict):
    """What `xgrid search --dry-run` assumes to predict the width of the syntactic - semantic interval, in points
    of the target's metric. Defaults: the spread of intermediate-task gains on XTREME targets in Phang et al.
    (2020, X-STILTs; 3-5 points between intermediate tasks, so an sd of about 2 after averaging languages) and
    seed-to-seed sd of about 1 point for fine-tuned encoders (Dodge et al. 2020; Mosbach et al. 2021)."""

    task_sd: Annotated[float, Field(gt=0, le=100)] = 2.0  # sd of a task's true mean gain around its kind's mean
    seed_sd: Annotated[float, Field(ge=0, le=100)] = 1.0  # sd of one seed's gain around its task's mean
    half_width: Annotated[float, Field(gt=0, le=100)] = 2.0  # the precision the study wants: +-2 points
    per_target: dict[str, PowerOverride] = {}  # a target with its own spread



class Budget(Strict):
    """A question-driven budget (`xgrid.statistics.sequential`): the search runs in rounds. Round 1 is the declared
    design at its seeds; after each round every target's syntactic - semantic contrast is looked at, and only the
    targets still undecided (interval covering 0 and wider than +-half_width) get `seeds_per_round` more seeds
    (their stage-1 checkpoints and stage-2 trials), up to `max_seeds`. Alpha is spent over the looks by `spending`
    so that looking after every round keeps the chance of any false direction at or under `alpha`."""

    goal: Literal["decide"] = "decide"
    half_width: Annotated[float, Field(gt=0, le=100)] = 2.0  # a target whose interval is narrower stops too
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05  # family-wise, over every look and target
    max_seeds: Annotated[int, Field(ge=1, le=100)]
    seeds_per_round: Annotated[int, Field(ge=1, le=100)] = 1
    spending: Literal["pocock", "obrien_fleming", "uniform"] = "pocock"
    max_gpu_hours: Annotated[float, Field(gt=0)] | None = None  # estimated H100 GPU-hours the rounds may spend


# --- models, tasks --------------------------------------------------------------------------------------------
class BaseModelSpec(Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]
    source: Annotated[str, Field(min_length=1)] = EMBEDDED_TINY  # embedded:tiny, a hub id, or a local folder
    family: Literal["auto", "xlm-roberta", "xlm-roberta-xl", "bert", "mt5"] = "auto"


class IntermediateGroup(Strict):
    """Several intermediate tasks trained together (multi-task), named for tags and tables."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")]
    tasks: Annotated[list[str], Field(min_length=2)]


def _intermediate_form(value: Any) -> str | None:
    if isinstance(value, str):
        return "task"
    return "group" if isinstance(value, (dict, IntermediateGroup)) else None


Intermediate = Annotated[
    Union[Annotated[str, Tag("task")], Annotated[IntermediateGroup, Tag("group")]],
    Discriminator(_intermediate_form, custom_error_type="intermediate_form",
                  custom_error_message="an intermediate is a task name, `none`, or {name, tasks: [...]}"),
]


class RetrievalConfig(Strict):
    # hidden_states index; 0 = embeddings, None = last layer. A negative index would count from the end (a
    # different layer in each model), and no encoder has hundreds of layers; whether the layer exists in each
    # base model is checked against the model before a run.
    layer: Annotated[int, Field(ge=0, le=256)] | None = None
    pooling: Literal["mean", "cls"] = "mean"
    # xtreme: every retrieval target scored straight from the cell's encoder (XTREME). xtreme_r: a target whose
    # registry entry declares a fine-tuning task (Tatoeba, LAReQA: SQuAD v1.1) is scored after the cell's encoder
    # is fine-tuned on it, as XTREME-R does; the others as in xtreme. The `retrieval_protocol` tag records it.
    protocol: Literal["xtreme", "xtreme_r"] = "xtreme"


class SearchSettings(Strict):
    # 8: on the micro-benchmark, Optuna + ASHA with 8 trials per cell comes within 0.5 points of the exhaustive
    # 6-rate grid's best in every cell with 30% of the grid's trial-epochs (2 per cell: 4 of 6 cells; 4: 5 of 6;
    # `benchmarks/search_efficiency.py`); ASHA stops most of them after an epoch or two. A fixed rate runs once,
    # and a list of values at most once per value (`SearchSpace.trials_per_cell`).
    trials_per_cell: Annotated[int, Field(ge=1, le=1000)] = 8
    scheduler: Literal["asha", "median", "none"] = "asha"
    grace_period: Annotated[int, Field(ge=1, le=1000)] = 1  # epochs (at most 1000)
    reduction_factor: Annotated[float, Field(gt=1, le=100)] = 2.0
    sampler_seed: Seed = 0
    # A trial whose worker process dies (pre-emption, OOM kill) is retried up to this many times by Ray, from
    # its last per-epoch checkpoint.
    max_failures: Annotated[int, Field(ge=0, le=100)] = 2
    # Trials of a target one at a time, in the order Optuna hands them out: a rerun of the space then repeats every
    # sampled learning rate and every early-stopping decision (concurrent trials finish in an order that depends
    # on the machine's load, and both the sampler and ASHA see results in that order).
    deterministic: bool = False


class Resources(Strict):
    workers_per_trial: Annotated[int, Field(ge=1, le=1024)] = 1
    cpus_per_worker: Annotated[float, Field(gt=0, le=4096)] = 1
    gpus_per_worker: Annotated[float, Field(ge=0, le=1024)] = 0
    max_concurrent_trials: Annotated[int, Field(ge=1, le=100_000)] = 2
    strategy: Literal["ddp", "fsdp"] = "ddp"
    precision: Literal["fp32", "bf16"] = "fp32"
    # "auto": a single-worker CPU trial runs its loop in the Tune trial's own process (see README, "Trial
    # overhead"); anything bigger is a TorchTrainer. "ray_train" forces a TorchTrainer for every trial.
    trial_backend: Literal["auto", "ray_train", "inline"] = "auto"
    # Recompute each transformer block's activations in backward instead of keeping them: activation memory
    # drops from every layer's to about one layer's, for ~30% more compute (what lets XL train on one GPU).
    activation_checkpointing: bool = False
    # FSDP2 keeps the sharded parameters, gradients and optimizer state in host memory and moves each block's to
    # the GPU for its forward/backward (XXL on fewer GPUs, at the cost of PCIe traffic every step).
    cpu_offload: bool = False

    @model_validator(mode="after")
    def _coherent(self) -> "Resources":
        if self.precision == "bf16" and self.gpus_per_worker == 0:
            raise ValueError("precision bf16 needs gpus_per_worker > 0 (CPU runs are fp32)")
        if self.trial_backend == "inline" and (self.workers_per_trial > 1 or self.gpus_per_worker > 0):
            raise ValueError("trial_backend inline runs one CPU worker; use auto or ray_train for more")
        if self.cpu_offload and self.strategy != "fsdp":
            raise ValueError("cpu_offload is FSDP2's parameter offload: it needs strategy fsdp")
        return self

    @property
    def uses_ray_train(self) -> bool:
        """`auto`: a single CPU worker runs in the trial's own process (no TorchTrainer start-up, see README);
        several workers, GPUs or FSDP go through a TorchTrainer."""
        if self.trial_backend != "auto":
            return self.trial_backend == "ray_train"
        return self.workers_per_trial > 1 or self.gpus_per_worker > 0 or self.strategy == "fsdp"


def _local_folder(value: str) -> str:
    """A `local_paths` value: a folder on a file system, made absolute where the space is read, so that a Ray
    worker with another working directory (or on another node of a shared file system) finds the same folder."""
    if not value.strip():
        raise ValueError("the path is empty")
    if "://" in value:
        raise ValueError(f"a folder on a file system every node sees (a shared mount), not a URL: {value!r}")
    return os.path.abspath(os.path.expanduser(value))


LocalFolder = Annotated[str, AfterValidator(_local_folder)]


# Cells a space may make. Planning is linear (about 0.1 ms a cell), but each cell trains `trials_per_cell`
# models: 100,000 cells is already years of accelerator time, and 200,000 seeds x 20 would plan for minutes.
MAX_CELLS = 100_000


class SearchSpace(Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]
    description: str = ""
    base_models: Annotated[list[BaseModelSpec], Field(min_length=1)]
    intermediates: Annotated[list[Intermediate], Field(min_length=1)]
    targets: Annotated[list[str], Field(min_length=1)]
    seeds: Annotated[list[Seed], Field(min_length=1)]
    intermediate_training: IntermediateTraining = IntermediateTraining()
    target_training: TrainingSettings
    # target name (as listed in `targets`) -> where its protocol differs from target_training
    target_overrides: dict[str, TargetOverride] = {}
    # base model name (as listed in `base_models`) -> its own training settings and resources
    model_overrides: dict[str, ModelOverride] = {}
    power: PowerAssumptions = PowerAssumptions()
    budget: Budget | None = None
    selection_policy: Literal[ENGLISH_DEV, TARGET_DEV] = DEFAULT_POLICY
    retrieval: RetrievalConfig = RetrievalConfig()
    search: SearchSettings = SearchSettings()
    resources: Resources = Resources()
    microbench_seed: Seed = 0
    # task name -> a local copy of its hub data (xgrid prefetch --to) or a local-only corpus (CCGbank, Mewsli-X)
    local_paths: dict[str, LocalFolder] = {}

    @field_validator("seeds", "targets")
    @classmethod
    def _unique(cls, values: list[Any]) -> list[Any]:
        dupes = _duplicates(values)
        if dupes:
            raise ValueError(f"duplicate entries: {', '.join(dupes)}")
        return values

    @field_validator("base_models")
    @classmethod
    def _unique_models(cls, models: list[BaseModelSpec]) -> list[BaseModelSpec]:
        dupes = _duplicates([m.name for m in models])
        if dupes:
            raise ValueError(f"duplicate base model names: {', '.join(dupes)}")
        return models

    @model_validator(mode="after")
    def _known_tasks(self, info: ValidationInfo) -> "SearchSpace":
        registry = (info.context or {}).get("registry")
        if registry is None:
            return self
        problems = []
        for i, entry in enumerate(self.intermediates):
            names = entry.tasks if isinstance(entry, IntermediateGroup) else [entry]
            for j, name in enumerate(names):
                path = f"intermediates[{i}].tasks[{j}]" if isinstance(entry, IntermediateGroup) else f"intermediates[{i}]"
                if name == NONE_BASELINE and not isinstance(entry, IntermediateGroup):
                    continue
                problems += _task_problem(registry, name, path, want_target=False)
        for i, name in enumerate(self.targets):
            problems += _task_problem(registry, name, f"targets[{i}]", want_target=True)
        read = _tasks_read(self, registry)
        for name in self.local_paths:
            problems += (_task_problem(registry, name, "local_paths" + _loc_part(name), want_target=None)
                         or _local_path_problem(registry, name, read))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _overrides_name_targets(self, info: ValidationInfo) -> "SearchSpace":
        registry = (info.context or {}).get("registry")
        problems = []
        for field_name, names in (("target_overrides", self.target_overrides), ("power.per_target",
                                                                                self.power.per_target)):
            for name in names:
                if name not in self.targets:
                    problems.append(f"{field_name}{_loc_part(name)}: {name!r} is not one of the space's targets ("
                                    f"{', '.join(self.targets)})" + _did_you_mean(name, list(self.targets)))
        if registry is not None:
            for name, override in self.target_overrides.items():
                if name not in self.targets or override.languages is None:
                    continue
                try:
                    offered = registry.select(name).languages
                except KeyError:  # an unknown target has its own error
                    continue
                unknown = [lang for lang in override.languages if lang not in offered]
                if unknown:
                    problems.append(f"target_overrides{_loc_part(name)}.languages: {', '.join(map(repr, unknown))} "
                                    f"not evaluated by {name!r} (it has {', '.join(offered)})")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _model_overrides_name_models(self) -> "SearchSpace":
        names = [m.name for m in self.base_models]
        problems = []
        for name, override in self.model_overrides.items():
            where = "model_overrides" + _loc_part(name)
            if name not in names:
                problems.append(f"{where}: {name!r} is not one of the space's base models ({', '.join(names)})"
                                + _did_you_mean(name, names))
                continue
            try:
                Resources.model_validate(self.resources.model_dump() | override.resources.set_fields())
            except ValidationError as err:
                problems += [f"{where}.resources: {line}" for line in format_validation_error(err).splitlines()]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _unique_intermediates(self) -> "SearchSpace":
        dupes = _duplicates([intermediate_label(e) for e in self.intermediates])
        if dupes:
            raise ValueError(f"intermediates: duplicate entries: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _batches_split_over_workers(self) -> "SearchSpace":
        problems = []
        for model in self.base_models:
            name = model.name
            # Runs after `_model_overrides_name_models`, so every model's merged resources are valid here.
            workers = self.resources_for(name).workers_per_trial
            if workers <= 1:
                continue
            own = self.model_overrides.get(name)
            where_workers = (f"model_overrides.{name}.resources.workers_per_trial"
                             if own and own.resources.workers_per_trial else "resources.workers_per_trial")
            blocks = [(f"model_overrides.{name}.intermediate_training" if own and own.intermediate_training.batch_size
                       else "intermediate_training", self.intermediate_training_for(name)),
                      (f"model_overrides.{name}.target_training" if own and own.target_training.batch_size
                       else "target_training", self.training_for(None, name))]
            blocks += [(f"target_overrides.{t}", self.training_for(t, name)) for t, o in self.target_overrides.items()
                       if o.batch_size is not None]
            problems += [f"{where}.batch_size: {block.batch_size} is the global batch and must split evenly over the "
                         f"{workers} workers of a {name} trial ({where_workers}); use a multiple of {workers}"
                         for where, block in blocks if block.batch_size % workers]
        if problems:
            raise ValueError("\n".join(dict.fromkeys(problems)))
        return self

    @model_validator(mode="after")
    def _budget_fits(self) -> "SearchSpace":
        budget = self.budget
        if budget is None:
            return self
        if budget.max_seeds < len(self.seeds):
            raise ValueError(f"budget.max_seeds: {budget.max_seeds} is fewer than the {len(self.seeds)} seeds the "
                             "space declares (round 1 runs them all)")
        if budget.max_gpu_hours is not None and not any(self.resources_for(m.name).gpus_per_worker
                                                        for m in self.base_models):
            raise ValueError("budget.max_gpu_hours: this space runs on CPUs (resources.gpus_per_worker is 0), so "
                             "its GPU-hours are not estimated; leave max_gpu_hours out, or give the trials GPUs")
        return self

    @model_validator(mode="after")
    def _grid_size(self) -> "SearchSpace":
        seeds = self.budget.max_seeds if self.budget else len(self.seeds)
        cells = len(self.base_models) * len(self.intermediates) * len(self.targets) * seeds
        if cells > MAX_CELLS:
            raise ValueError(f"the grid has {cells:,} cells (base_models x intermediates x targets x seeds: "
                             f"{len(self.base_models)} x {len(self.intermediates)} x {len(self.targets)} x "
                             f"{seeds}), more than the {MAX_CELLS:,} a search can plan; split it")
        return self

    # --- derived ---------------------------------------------------------------------------------------------
    def with_resources(self, overrides: dict[str, Any]) -> "SearchSpace":
        """The space with resource overrides applied (CLI flags; None keeps the space's value) to every base
        model (a flag beats a model's own `resources`), validated again so an override cannot bypass the resource
        rules (nor leave a global batch that no longer splits over the workers)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if not overrides:
            return self
        resources = Resources.model_validate(self.resources.model_dump() | overrides)
        models = {name: o.model_copy(update={"resources": o.resources.model_copy(update=dict.fromkeys(overrides))})
                  for name, o in self.model_overrides.items()}
        data = self.model_dump(mode="json") | {"resources": resources.model_dump(mode="json"),
                                               "model_overrides": {n: o.model_dump(mode="json")
                                                                   for n, o in models.items()}}
        return SearchSpace.model_validate(data)

    def resources_for(self, model: str) -> Resources:
        """A base model's resources: the space's `resources` with its `model_overrides` entry applied."""
        own = self.model_overrides.get(model)
        changes = own.resources.set_fields() if own else {}
        return Resources.model_validate(self.resources.model_dump() | changes) if changes else self.resources

    def intermediate_training_for(self, model: str) -> IntermediateTraining:
        """A base model's stage-1 settings: `intermediate_training` with its model override applied."""
        own = self.model_overrides.get(model)
        return own.intermediate_training.applied_to(self.intermediate_training) if own else self.intermediate_training

    def training_for(self, target: str | None, model: str | None = None) -> TrainingSettings:
        """A target's fine-tuning settings for a base model: `target_training`, then the model's
        `model_overrides` entry, then the target's `target_overrides` entry (most specific last). `model` None: the
        shared settings of a space whose base models override none of them; `target` None: no target override."""
        settings = self.target_training
        own = self.model_overrides.get(model) if model is not None else None
        if own is not None:
            settings = own.target_training.applied_to(settings)
        override = self.target_overrides.get(target) if target is not None else None
        return override.applied_to(settings) if override else settings

    def stage2_runs(self, target: str) -> list[tuple[str, tuple[str, ...]]]:
        """The Tune runs (each with its Optuna study) of a target's stage 2, as (run name, base model names).
        Base models with the same settings and resources for the target share one run, named after the target;
        models that differ (`model_overrides`) get a run each, `<target>.<first model>`: one Tuner has one
        learning-rate distribution, one early-stopping horizon and one resource request per trial."""
        groups: dict[str, list[str]] = {}
        for model in self.base_models:
            key = json.dumps([self.training_for(target, model.name).model_dump(mode="json"),
                              self.resources_for(model.name).model_dump(mode="json")], sort_keys=True)
            groups.setdefault(key, []).append(model.name)
        if len(groups) == 1:
            return [(target, tuple(next(iter(groups.values()))))]
        return [(f"{target}.{names[0]}", tuple(names)) for names in groups.values()]

    def trials_per_cell(self, target: str, model: str | None = None) -> int:
        """Stage-2 trials of a trained cell of the target and base model, as its learning rate plans them: one
        for a fixed rate, at most one per value of a list, `search.trials_per_cell` for a range."""
        return self.training_for(target, model).learning_rate.planned_trials(self.search.trials_per_cell)

    def planned_seeds(self) -> list[int]:
        """Every seed the search may run: the declared ones, and with a budget the next free integers after the
        largest, up to `budget.max_seeds` (a later round adds them in this order)."""
        seeds = list(self.seeds)
        if self.budget is None:
            return seeds
        taken, candidate = set(seeds), max(seeds) + 1
        while len(seeds) < self.budget.max_seeds:
            if candidate not in taken:
                seeds.append(candidate)
            candidate += 1
        return seeds

    def power_for(self, target: str) -> tuple[float, float]:
        """(task_sd, seed_sd) the dry run's power lines assume for a target."""
        own = self.power.per_target.get(target)
        task_sd = own.task_sd if own and own.task_sd is not None else self.power.task_sd
        seed_sd = own.seed_sd if own and own.seed_sd is not None else self.power.seed_sd
        return task_sd, seed_sd

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]


def _duplicates(values: list[Any]) -> list[str]:
    """The values that occur more than once, as sorted strings; one pass (a space may list 200,000 seeds)."""
    return sorted(str(v) for v, n in Counter(values).items() if n > 1)


def _task_problem(registry: Any, name: str, path: str, want_target: bool | None) -> list[str]:
    from_registry = getattr(registry, "select", None)
    try:
        selection = from_registry(name)
    except KeyError as err:  # UnknownTaskError carries the suggestion
        return [f"{path}: {err}"]
    task = selection.task
    if want_target is True and not task.is_target:
        return [f"{path}: {name!r} is not a target task (it has no evaluation languages group); "
                f"targets are: {', '.join(t.name for t in registry if t.is_target)}"]
    if want_target is False and not registry.trains(task):
        return [f"{path}: {name!r} is a {task.format} task (scored, not trained) and cannot be an intermediate task"]
    return []


def _tasks_read(space: "SearchSpace", registry: Any) -> set[str]:
    """The tasks whose data a run of the space reads: every intermediate task, every target and the task each
    target trains on (XNLI trains on MNLI)."""
    names = {n for entry in space.intermediates for n in intermediate_tasks(entry)}
    for target in space.targets:
        try:
            task = registry.select(target).task
            names.add(task.name)
            if registry.trains(task):
                names.add(registry.train_task_of(task).name)
        except KeyError:  # an unknown target has its own error
            continue
    return names


def _local_path_problem(registry: Any, name: str, read: set[str]) -> list[str]:
    path = "local_paths" + _loc_part(name)
    task = registry.select(name).task
    if task.name != name:
        return [f"{path}: name the task, not a language variant: local_paths.{task.name}"]
    source = task.source
    # What the source does with a local path (xgrid.data.sources.LOCAL_DATA); config sits below data, so by name.
    kind = getattr(source, "local_data", None if getattr(source, "seeded_by_microbench", False) else "files")
    if kind is None:
        return [f"{path}: {name!r} is generated by the embedded micro-benchmark ({source.describe()}) and reads no "
                f"files; remove the entry"]
    if name not in read:
        return [f"{path}: task {name!r} is not read by this space (not an intermediate, a target or a target's "
                f"training task: {', '.join(sorted(read)) or 'none'}); remove the entry or fix its name"]
    return []


def missing_local_paths(space: "SearchSpace") -> list[str]:
    """One line per `local_paths` folder that does not exist on this machine. Not a validation error: a space
    is validated (and prefetched, and planned) where its data is not, e.g. on a laptop for a cluster; a run
    calls this before it starts, where the data must be."""
    return [f"local_paths.{name}: {path!r} does not exist" for name, path in space.local_paths.items()
            if not Path(path).exists()]


def intermediate_label(entry: Intermediate) -> str:
    return entry.name if isinstance(entry, IntermediateGroup) else entry


def intermediate_tasks(entry: Intermediate) -> tuple[str, ...]:
    if isinstance(entry, IntermediateGroup):
        return tuple(entry.tasks)
    return () if entry == NONE_BASELINE else (entry,)


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: `field.path[2]: what is wrong`. Model-level validators that check several fields
    (task names) write their own paths, so their messages pass through unprefixed."""
    lines = []
    for e in err.errors():
        loc = "".join(_loc_part(p) for p in e["loc"]).lstrip(".")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field" + _did_you_mean(str(e["loc"][-1]), _ALL_FIELDS)
        elif e["type"] == "missing":
            msg = "required field is missing"
        lines += [f"{loc}: {m}" if loc else m for m in msg.split("\n")]
    return "\n".join(dict.fromkeys(lines))


def _loc_part(part: Any) -> str:
    """`.field`, `[2]`, or `['a key\\nwith a newline']`: a key from the file never breaks its problem's line."""
    if isinstance(part, int):
        return f"[{part}]"
    return f".{part}" if str(part).isprintable() and str(part).strip() == str(part) and str(part) else f"[{str(part)!r}]"


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_space(data: Any, registry: Any = None, source: str = "<space>") -> SearchSpace:
    if data is None:
        raise SpaceError(f"{source}: the file is empty (a search space is a YAML mapping: name, base_models, ...)")
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: a search space is a YAML mapping, got {type(data).__name__}")
    try:
        return SearchSpace.model_validate(data, context={"registry": registry})
    except ValidationError as err:
        raise SpaceError(format_validation_error(err)) from None


# A space is a page of YAML (the shipped ones are a few KB). 4 MiB leaves room for generated spaces (200,000
# seeds take 1.5 MB) and refuses a wrong file (a data set, a checkpoint) at once instead of parsing it.
MAX_SPACE_BYTES = 4 * 2**20
# Values after YAML aliases are expanded: `&a [*b, *b, ...]` nested ten deep is a few hundred bytes that expand
# to billions of values (validation would never end); no space file needs more than a file's worth.
MAX_SPACE_VALUES = 2_000_000


class _SpaceLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml where built: 3x faster
    """Safe YAML that refuses what `safe_load` lets through silently: a key given twice in one mapping (the
    second silently wins), and a number or date Python cannot build (an error naming its line, not a
    ValueError). Merge keys (`<<: *defaults`) still override, as YAML defines."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base class reports it with its line
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first given on line {first.start_mark.line + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _value_error_at_its_line(construct):
    """A scalar constructor whose ValueError (an int of 5,000 digits, the date 2024-13-45) becomes a YAML error
    naming the line."""
    def checked(loader, node):
        try:
            return construct(loader, node)
        except (ValueError, OverflowError) as err:
            reason = str(err).split(";")[0]
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {node.value[:40]!r}: {reason}",
                                                    node.start_mark) from None
    return checked


# YAML 1.1 (PyYAML) reads `1e-3` as a string, since its floats need a dot; YAML 1.2 and every user read it as
# 0.001, the way learning rates are written.
_SpaceLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                   list("-+0123456789"))

for _kind in ("int", "float", "timestamp"):
    _SpaceLoader.add_constructor(f"tag:yaml.org,2002:{_kind}",
                                 _value_error_at_its_line(getattr(yaml.SafeLoader, f"construct_yaml_{_kind}")))


def _expanded_size(root: yaml.Node, limit: int) -> int | None:
    """The number of values the node graph stands for once every alias is expanded (linear in the graph,
    without expanding anything), or None when an alias refers to a node that contains it (infinite)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # entered, not finished: the path from the root (depth-first)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        if finished:
            open_nodes.discard(id(node))
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
        elif id(node) in open_nodes:
            return None
        elif id(node) not in sizes:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack += [(c, False) for c in children if id(c) not in sizes]
    return sizes[id(root)]


def _read_yaml(path: Path) -> Any:
    """The YAML document in `path`; SpaceError (one line naming the file) for anything that is not a
    reasonable UTF-8 YAML file. The only exception it raises."""
    try:
        size = path.stat().st_size
        if size > MAX_SPACE_BYTES:  # before reading a byte
            raise SpaceError(f"{path}: {size:,} bytes is too big for a search space (at most {MAX_SPACE_BYTES:,})")
        with path.open("rb") as f:
            raw = f.read(MAX_SPACE_BYTES + 1)  # the size may lie (a file still growing, /proc)
    except OSError as err:
        raise SpaceError(f"{path}: cannot read the space file: {err.strerror or err}") from None
    if len(raw) > MAX_SPACE_BYTES:
        raise SpaceError(f"{path}: more than {MAX_SPACE_BYTES:,} bytes is too big for a search space")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise SpaceError(f"{path}: not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start} (line {line}); "
                         f"save the file as UTF-8") from None
    loader = _SpaceLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, MAX_SPACE_VALUES)
        if size is None:
            raise SpaceError(f"{path}: a YAML alias refers to a value that contains it (an endless value)")
        if size > MAX_SPACE_VALUES:
            raise SpaceError(f"{path}: YAML aliases expand to more than {MAX_SPACE_VALUES:,} values; write the "
                             f"values out instead of nesting aliases")
        return loader.construct_document(node)
    except yaml.reader.ReaderError as err:  # a control character: the reader has no line, only a position
        char = f"U+{err.character:04X}" if isinstance(err.character, int) else repr(err.character)
        raise SpaceError(f"{path}: not valid YAML: character {char} at position {err.position}: {err.reason}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SpaceError(f"{path}: not valid YAML{where}: {' '.join(str(problem).split())}") from None
    except RecursionError:  # nesting too deep for the constructor (libyaml stops its own at 1000 levels)
        raise SpaceError(f"{path}: values nested too deeply for a search space") from None
    finally:
        loader.dispose()


def load_space(path: str | Path, registry: Any = None) -> SearchSpace:
    """A validated space from a YAML file; `SpaceError` (one line per problem) is the only exception it raises,
    for any content (tests/test_space_fuzz.py)."""
    path = Path(path)
    shown = str(path) if str(path).isprintable() else repr(str(path))
    try:
        is_dir, is_file, exists = path.is_dir(), path.is_file(), path.exists()
    except OSError as err:  # a name too long for the file system
        raise SpaceError(f"search space file cannot be opened: {shown[:200]}: {err.strerror or err}") from None
    if is_dir:
        raise SpaceError(f"{shown}: is a folder, not a search space file")
    if not is_file:  # a FIFO or a device would block the read or never end
        raise SpaceError(f"search space file {'is not a regular file' if exists else 'not found'}: {shown}")
    return parse_space(_read_yaml(path), registry, str(path))


_ALL_FIELDS = sorted({f for model in (SearchSpace, TrainingSettings, BaseModelSpec, IntermediateGroup, RetrievalConfig,
                                      SearchSettings, Resources, LogRange, Choices, TargetOverride, PowerAssumptions,
                                      ModelOverride)
                       for f in model.model_fields})
