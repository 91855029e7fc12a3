"""The names xgrid writes to MLflow and `xgrid compare` reads back: one place, so writer and reader agree.

Every run of a search lives in one experiment. The parent run (stage "search") holds the space, the plan and
the comparison artifacts; every child (stage "stage1", "stage2" or "retrieval") carries `mlflow.parentRunId`.

Tags of every child run (all strings):
  stage, search_id, cell_id, base_model, intermediate, intermediate_tasks (comma-separated, "none"),
  intermediate_kind (syntactic / semantic / ner / other / multi / none), target, target_format, target_group,
  seed, stage1_key, own_data ("true" when the intermediate is the target's own English data), selection_policy,
  retrieval_layer, retrieval_pooling, trial_id, trial_status (completed / stopped / failed), target_metric.
  Stage-1 runs carry the intermediate tags and stage1_key but no target tags.
Metrics:
  per epoch (step = epoch): train_loss, dev.<metric>.<lang> (targets), dev.<task>.<metric> (intermediates),
  select.english_dev, select.target_dev;
  at the end: <metric>.<lang>, <metric>.avg (all languages), <metric>.avg_xling (without English) under the
  declared selection policy; the other policy's copies prefixed with its name (target_dev.f1.de);
  best.english_dev / best.target_dev: the selected epoch's selection score.
Params: learning_rate, epochs, batch_size, grad_accum, max_length, warmup_ratio, weight_decay, grad_clip, and the
  intermediate phase's as intermediate.<name>.
"""

from pathlib import Path

DEFAULT_DB = "mlflow.db"

STAGE = "stage"
SEARCH_STAGE, STAGE1, STAGE2, RETRIEVAL = "search", "stage1", "stage2", "retrieval"
POLICY_TAG = "selection_policy"
STATUS_TAG = "trial_status"
PARENT_TAG = "mlflow.parentRunId"
KIND_TAG = "intermediate_kind"
METRIC_TAG = "target_metric"  # the target's primary metric, so readers need not know the registry


def default_tracking_uri(output_root: str | Path = "xgrid_runs") -> str:
    """A local SQLite store under the output folder; absolute, because Ray changes working directories."""
    return f"sqlite:///{(Path(output_root) / DEFAULT_DB).absolute()}"


def final_metric_name(metric: str, language: str, policy: str, declared_policy: str) -> str:
    """`f1.de` under the declared policy, `target_dev.f1.de` under the other one."""
    name = f"{metric}.{language}"
    return name if policy == declared_policy else f"{policy}.{name}"
