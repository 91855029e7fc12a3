"""The names xgrid writes (phase reports, results files, MLflow) and `xgrid compare` reads back: the one place
they are spelled, so writer and reader agree. Nothing here imports the rest of xgrid.

Every run of a search lives in one experiment. The parent run (stage "search") holds the space, the plan and
the comparison artifacts; every child (stage "stage1", "stage2" or "retrieval") carries `mlflow.parentRunId`.

Tags of every child run (all strings):
  stage, search_id, cell_id, base_model, intermediate, intermediate_tasks (comma-separated, "none"),
  intermediate_kind (syntactic / semantic / ner / other / multi / none), target, target_format, target_group,
  seed, stage1_key, own_data ("true" when the intermediate is the target's own English data), selection_policy,
  retrieval_layer, retrieval_pooling, trial_id, trial_status (completed / stopped / failed), target_metric,
  selected ("true" on the trial of each cell that the declared policy selects: filter `tags.selected = "true"`).
  Stage-1 runs carry the intermediate tags and stage1_key but no target tags.
Metrics:
  per epoch (step = epoch): train_loss, dev.<metric>.<lang> (targets), dev.<task>.<metric> (intermediates),
  select.english_dev, select.target_dev;
  at the end: <metric>.<lang>, <metric>.avg (all languages), <metric>.avg_xling (without English) under the
  declared selection policy; the other policy's copies prefixed with its name (target_dev.f1.de);
  best.english_dev / best.target_dev: the selected epoch's selection score; seconds: the phase's wall time.
  A stage-1 run logs its per-epoch history and, at the end, the intermediate task's English dev scores by their
  metric names (`f1`, `accuracy`). Nothing else: Tune's bookkeeping in a trial's results (pid, timestamp,
  time_total_s, training_iteration ...) is not logged (`is_xgrid_metric`).
Params: learning_rate, epochs, batch_size, grad_accum, max_length, warmup_ratio, weight_decay, grad_clip, and the
  intermediate phase's as intermediate.<name>.
"""

from pathlib import Path

DEFAULT_DB = "mlflow.db"

# --- model-selection policies: English dev is true zero-shot, target-language dev an oracle (Keung et al. 2020)
ENGLISH_DEV, TARGET_DEV = "english_dev", "target_dev"
POLICIES = (ENGLISH_DEV, TARGET_DEV)
DEFAULT_POLICY = ENGLISH_DEV  # SearchSpace.selection_policy's default, also for runs written without the tag

# --- tags -----------------------------------------------------------------------------------------------------
STAGE = "stage"
SEARCH_STAGE, STAGE1, STAGE2, RETRIEVAL = "search", "stage1", "stage2", "retrieval"
CHILD_STAGES = (STAGE2, RETRIEVAL)  # the runs that carry a target's results
POLICY_TAG = "selection_policy"
STATUS_TAG = "trial_status"
NODE_TAG = "xgrid.node"  # the Ray node (IP) that ran a trial, a retrieval evaluation or a stage-1 training
PARENT_TAG = "mlflow.parentRunId"
KIND_TAG = "intermediate_kind"
METRIC_TAG = "target_metric"  # the target's primary metric, so readers need not know the registry
ERROR_TAG = "error"
SEARCH_ID_TAG = "search_id"
CELL_TAG = "cell_id"

# --- metrics --------------------------------------------------------------------------------------------------
EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
SECONDS = "seconds"
DEV_PREFIX, SELECT_PREFIX, BEST_PREFIX = "dev", "select", "best"
AGGREGATES = ("avg", "avg_xling")  # every language / without English
# Metric families a run logs besides the target's final metrics: never a primary metric.
NOT_PRIMARY = {DEV_PREFIX, SELECT_PREFIX, BEST_PREFIX, TRAIN_LOSS, *POLICIES}


def select_metric(policy: str) -> str:
    """Per-epoch selection score under a policy: what early stopping and the searcher rank (`select.english_dev`)."""
    return f"{SELECT_PREFIX}.{policy}"


def best_metric(policy: str) -> str:
    """The selected epoch's selection score (`best.english_dev`): how the trials of a cell are ranked."""
    return f"{BEST_PREFIX}.{policy}"


def target_dev_metric(metric: str, language: str) -> str:
    """A target's per-epoch dev score in one language: `dev.f1.de`."""
    return f"{DEV_PREFIX}.{metric}.{language}"


def intermediate_dev_metric(task: str, metric: str) -> str:
    """An intermediate task's per-epoch English dev score: `dev.mb_chunk.f1`."""
    return f"{DEV_PREFIX}.{task}.{metric}"


def is_epoch_metric(name: str) -> bool:
    """Logged at every epoch (step = epoch) rather than once at the end."""
    return name == TRAIN_LOSS or name.startswith((f"{DEV_PREFIX}.", f"{SELECT_PREFIX}."))


def is_xgrid_metric(name: str) -> bool:
    """A name xgrid's phases report: the loss, the phase's seconds, or a dotted family (`dev.f1.de`, `f1.avg`,
    `best.english_dev`). Tune adds undotted bookkeeping to every result, and none of it is xgrid's."""
    return name in (TRAIN_LOSS, SECONDS) or "." in name


def final_metric_name(metric: str, language: str, policy: str, declared_policy: str) -> str:
    """`f1.de` under the declared policy, `target_dev.f1.de` under the other one (`language` may be an
    aggregate: `f1.avg`)."""
    name = f"{metric}.{language}"
    return name if policy == declared_policy else f"{policy}.{name}"


def default_tracking_uri(output_root: str | Path = "xgrid_runs") -> str:
    """A local SQLite store under the output folder; absolute, because Ray changes working directories."""
    return f"sqlite:///{(Path(output_root) / DEFAULT_DB).absolute()}"


# --- more tags: a run's cell (`xgrid.planning.plan.Cell.tags` writes them), its trial and the parent's space ----
BASE_MODEL_TAG = "base_model"
INTERMEDIATE_TAG, INTERMEDIATE_TASKS_TAG = "intermediate", "intermediate_tasks"
TARGET_TAG, TARGET_FORMAT_TAG, TARGET_GROUP_TAG = "target", "target_format", "target_group"
SEED_TAG = "seed"
STAGE1_KEY_TAG = "stage1_key"
OWN_DATA_TAG = "own_data"
TRIAL_ID_TAG = "trial_id"
SELECTED_TAG = "selected"  # "true" on the selected trial of its cell (set when its target ends)
RETRIEVAL_LAYER_TAG, RETRIEVAL_POOLING_TAG = "retrieval_layer", "retrieval_pooling"
# How a retrieval target was scored: "xtreme" (from the cell's encoder) or "xtreme_r:<task>" (after fine-tuning on
# <task>); "-" on other targets.
RETRIEVAL_PROTOCOL_TAG = "retrieval_protocol"
SPACE_TAG, SPACE_FINGERPRINT_TAG = "space", "space_fingerprint"
# A budgeted search (`budget:` in the space): every run carries the round it ran in; the parent run logs, per
# target, each round's decision interval as metrics `budget.<target>.<field>` at step = round, and tags
# `budget.<target>.status` / `budget.<target>.round` with the latest decision; `budget.method` states the design.
ROUND_TAG = "round"
# Every target's English training data: English results are not zero-shot (compare and a budget's rounds leave it out).
SOURCE_LANGUAGE = "en"
BUDGET_PREFIX = "budget."
BUDGET_METHOD_TAG = "budget.method"
BUDGET_FIELDS = ("diff", "low", "high", "p_value", "level", "seeds")


def budget_key(target: str, field: str) -> str:
    return f"{BUDGET_PREFIX}{target}.{field}"

# --- more metrics and params -----------------------------------------------------------------------------------
AVG = AGGREGATES[0]  # `<metric>.avg`: every run with final results logs it
LEARNING_RATE = "learning_rate"
INTERMEDIATE_PARAM_PREFIX = "intermediate."  # the intermediate phase's settings on a stage-2 / retrieval run
