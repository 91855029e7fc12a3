from xgrid.config import parse_space
from xgrid.planning.plan import build_plan
from xgrid.planning.plan import stage1_key as _stage1_key

SPACE = {
    "name": "p",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_chunk", "mb_para", {"name": "both", "tasks": ["mb_chunk", "mb_para"]}],
    "targets": ["mb_xnli", "mb_udpos", "mb_tatoeba"],
    "seeds": [0, 1],
    "target_training": {"learning_rate": {"low": 1e-4, "high": 1e-2}},
    "search": {"trials_per_cell": 3},
}


def test_cells_and_shared_stage1_jobs(registry):
    plan = build_plan(parse_space(SPACE, registry), registry)
    assert len(plan.cells) == 4 * 3 * 2
    # 3 trained entries x 2 seeds, shared by all 3 targets; `none` trains nothing (one job: the base model).
    assert len(plan.trained_jobs) == 6
    assert len(plan.jobs) == 7
    keys_by_target = {t: {c.stage1_key for c in plan.cells_for(t)} for t in SPACE["targets"]}
    assert keys_by_target["mb_xnli"] == keys_by_target["mb_udpos"] == keys_by_target["mb_tatoeba"]
    kinds = {c.intermediate: c.kind for c in plan.cells}
    assert kinds == {"none": "none", "mb_chunk": "syntactic", "mb_para": "semantic", "both": "multi"}
    assert plan.stage2_trials() == 2 * 4 * 2 * 3  # trained targets x intermediates x seeds x trials
    assert plan.retrieval_evaluations() == 4 * 2


def test_stage1_key_depends_on_what_the_checkpoint_depends_on_and_nothing_else(registry):
    space = parse_space(SPACE, registry)
    base = space.base_models[0]

    def stage1_key(space, base, names, seed):  # the key takes the resolved tasks
        return _stage1_key(space, base, tuple(registry.get(n) for n in names), seed)
    key = stage1_key(space, base, ("mb_chunk",), 0)
    assert key == stage1_key(space, base, ("mb_chunk",), 0)
    assert key != stage1_key(space, base, ("mb_chunk",), 1)
    assert key != stage1_key(space, base, ("mb_para",), 0)
    assert stage1_key(space, base, ("mb_chunk", "mb_para"), 0) == stage1_key(space, base, ("mb_para", "mb_chunk"), 0)
    other_targets = parse_space(SPACE | {"targets": ["mb_xquad"]}, registry)
    assert stage1_key(other_targets, base, ("mb_chunk",), 0) == key  # targets never enter the key
    other_target_lr = parse_space(SPACE | {"target_training": {"learning_rate": 0.5e-3}}, registry)
    assert stage1_key(other_target_lr, base, ("mb_chunk",), 0) == key
    other_hparams = parse_space(SPACE | {"intermediate_training": {"epochs": 7}}, registry)
    assert stage1_key(other_hparams, base, ("mb_chunk",), 0) != key
    other_data = parse_space(SPACE | {"microbench_seed": 3}, registry)
    assert stage1_key(other_data, base, ("mb_chunk",), 0) != key


def test_own_training_data_is_flagged(registry):
    space = parse_space(SPACE | {"intermediates": ["none", "mb_xnli", "mb_chunk"]}, registry)
    plan = build_plan(space, registry)
    flagged = {(c.intermediate, c.target) for c in plan.cells if c.own_data}
    assert flagged == {("mb_xnli", "mb_xnli")}
    assert any("mb_xnli -> mb_xnli" in note for note in plan.notes)


def test_cells_carry_their_resolved_tasks(registry):
    plan = build_plan(parse_space(SPACE, registry), registry)
    xnli = next(c for c in plan.cells if c.target == "mb_xnli")
    assert xnli.target_task is registry.get("mb_xnli") and xnli.trains and xnli.metric == "accuracy"
    assert xnli.train_task is registry.train_task_of(registry.get("mb_xnli"))
    assert xnli.languages == registry.get("mb_xnli").languages
    tatoeba = next(c for c in plan.cells if c.target == "mb_tatoeba")
    assert not tatoeba.trains and tatoeba.train_task is None
    both = next(j for j in plan.jobs if j.intermediate == "both")
    assert [t.name for t in both.task_specs] == ["mb_chunk", "mb_para"]


def test_a_language_selection_is_evaluated_with_english_for_selection(registry):
    plan = build_plan(parse_space(SPACE | {"targets": ["mb_udpos.xb", "mb_tatoeba.xa"]}, registry), registry)
    assert {c.languages for c in plan.cells_for("mb_udpos.xb")} == {("en", "xb")}
    assert {c.languages for c in plan.cells_for("mb_tatoeba.xa")} == {("xa",)}  # Tatoeba has no English side


def test_the_microbench_seed_enters_keys_through_the_data_source_not_a_name(registry):
    """A hub task whose name starts with `mb_` would not depend on the micro-benchmark seed; the source says."""
    import dataclasses

    space = parse_space(SPACE, registry)
    base = space.base_models[0].model_copy(update={"source": "some/hub-model"})
    embedded = registry.get("mb_chunk")
    hub_like = dataclasses.replace(embedded, source=registry.get("udpos").source)
    reseeded = space.model_copy(update={"microbench_seed": 7})
    assert _stage1_key(space, base, (embedded,), 0) != _stage1_key(reseeded, base, (embedded,), 0)
    assert _stage1_key(space, base, (hub_like,), 0) == _stage1_key(reseeded, base, (hub_like,), 0)


def test_the_plan_record_names_its_jobs_and_cells(registry):
    """plan.json: what the search folder keeps of the plan (TaskSpecs are not part of the record)."""
    import json

    plan = build_plan(parse_space(SPACE, registry), registry)
    record = json.loads(json.dumps(plan.describe(), default=str))
    assert len(record["jobs"]) == 7 and len(record["cells"]) == 24
    assert {"key", "intermediate", "tasks", "kind", "seed", "base_model"} == set(record["jobs"][0])
    assert record["cells"][0] == plan.cells[0].tags()
