"""The rounds of a budgeted search, without Ray: `run_rounds` with a stand-in for one round's stage 1 and stage 2
that writes trial records with known scores. What it decides, what it runs next, what it keeps in rounds.json, and
that a second driver of the same folder (a resume) never runs a finished round again."""

from __future__ import annotations

import json

import pytest

from xgrid.config import parse_space
from xgrid.events import SearchListener, TrialRecord
from xgrid.planning.plan import build_plan
from xgrid.search.rounds import ROUNDS_FILE, RoundsState, gains_of, run_rounds
from xgrid.statistics.sequential import BUDGET_SPENT, OPEN, SEMANTIC_HIGHER, SYNTACTIC_HIGHER
from xgrid.tasks import default_registry

SPACE = {
    "name": "rounds", "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_xpos", "mb_deprel", "mb_ccg", "mb_para", "mb_entail", "mb_semtag"],
    "targets": ["mb_udpos", "mb_xnli", "mb_tatoeba"], "seeds": [0, 1],
    "target_training": {"learning_rate": 0.002, "epochs": 1},
    "budget": {"half_width": 0.5, "max_seeds": 5, "seeds_per_round": 1},
}
# The true syntactic - semantic effect per target; tatoeba's tasks disagree wildly, so it never decides.
EFFECT = {"mb_udpos": 8.0, "mb_xnli": -6.0}


def score(cell) -> float:
    if cell.kind == "none":
        return 50.0
    if cell.target == "mb_tatoeba":
        return 50.0 + {"mb_xpos": 9, "mb_deprel": -9, "mb_ccg": 1, "mb_para": 8, "mb_entail": -8,
                       "mb_semtag": 0}[cell.intermediate] + 0.3 * cell.seed
    effect = EFFECT[cell.target] / 2 * (1 if cell.kind == "syntactic" else -1)
    jitter = {"mb_xpos": 0.4, "mb_deprel": -0.3, "mb_ccg": 0.1, "mb_para": 0.2, "mb_entail": -0.4,
              "mb_semtag": 0.3}[cell.intermediate]
    return 50.0 + effect + jitter + 0.2 * ((cell.seed * 7) % 3 - 1)


class Rounds(SearchListener):
    def __init__(self):
        self.started, self.restored, self.finished = [], [], []

    def round_started(self, round_no, plan):
        self.started.append((round_no, sorted({(c.target, c.seed) for c in plan.cells})))

    def round_restored(self, round_no, plan, decisions):
        self.restored.append(round_no)

    def round_finished(self, round_no, decisions, state):
        self.finished.append((round_no, {d.target: d.status for d in decisions}))


@pytest.fixture
def plan():
    return build_plan(parse_space(SPACE, default_registry()), default_registry())


def fake_round(records: list[TrialRecord], ran: list[int]):
    def run_round(part, round_no):
        ran.append(round_no)
        for cell in part.cells:
            value = score(cell)
            metrics = {f"{cell.metric}.{lang}": value for lang in cell.languages}
            metrics[f"{cell.metric}.avg"] = value
            records.append(TrialRecord(f"t-{cell.id}", cell, None if not cell.trains else 0.002, metrics=metrics))
    return run_round


def test_the_plan_holds_the_worst_case_and_round_one_the_declared_seeds(plan):
    assert plan.space.planned_seeds() == [0, 1, 2, 3, 4]
    assert {c.seed for c in plan.cells} == {0, 1, 2, 3, 4}
    assert len(plan.cells) == 7 * 3 * 5


def test_decided_targets_stop_and_the_open_one_gets_a_seed_each_round(plan, tmp_path):
    records, ran, heard = [], [], Rounds()
    state = run_rounds(plan, tmp_path, heard, fake_round(records, ran), lambda: records)
    assert heard.started[0][1] == sorted((t, s) for t in SPACE["targets"] for s in (0, 1))
    assert heard.finished[0][1] == {"mb_udpos": SYNTACTIC_HIGHER, "mb_xnli": SEMANTIC_HIGHER, "mb_tatoeba": OPEN}
    # later rounds: tatoeba alone, one new seed each, until max_seeds
    assert [r for r, _ in heard.started] == [1, 2, 3, 4]
    assert [cells for _, cells in heard.started[1:]] == [[("mb_tatoeba", s)] for s in (2, 3, 4)]
    assert heard.finished[-1][1] == {"mb_tatoeba": BUDGET_SPENT}
    assert state.stopped_by == "max_seeds"
    # what it spent against the fixed design (every target at 5 seeds)
    assert state.fixed == {"stage1_checkpoints": 30, "stage2_trials": 70, "retrieval_evaluations": 35}
    assert state.spent == {"stage1_checkpoints": 30, "stage2_trials": 28, "retrieval_evaluations": 35}
    saved = json.loads((tmp_path / ROUNDS_FILE).read_text())
    assert [r["round"] for r in saved["rounds"]] == [1, 2, 3, 4] and "Bonferroni" in saved["method"]
    latest = RoundsState.read(tmp_path).latest()
    assert latest[("tiny", "mb_udpos")].round == 1 and latest[("tiny", "mb_udpos")].low > 0


def test_a_resumed_search_never_runs_a_finished_round_again(plan, tmp_path):
    records, ran = [], []
    first = run_rounds(plan, tmp_path, SearchListener(), fake_round(records, ran), lambda: records)
    # a driver that died during round 3: rounds.json holds rounds 1 and 2 only
    state = RoundsState.read(tmp_path)
    state.rounds = state.rounds[:2]
    state.write(tmp_path)
    records = [r for r in records if r.cell.seed < 3]
    again, heard = [], Rounds()
    second = run_rounds(plan, tmp_path, heard, fake_round(records, again), lambda: records)
    assert heard.restored == [1, 2] and again == [3, 4]
    assert [r["round"] for r in second.rounds] == [1, 2, 3, 4]
    assert second.spent == first.spent and second.latest() == first.latest()


def test_a_stratum_without_its_baseline_yet_has_no_gains(plan):
    cells = [c for c in plan.cells if c.target == "mb_udpos" and c.seed == 0 and c.kind != "none"]
    records = [TrialRecord(f"t{c.id}", c, 0.002, metrics={"f1.xa": 60.0, "f1.avg": 60.0}) for c in cells]
    assert gains_of(records, plan.space).empty


def test_budget_is_checked_against_the_space():
    registry = default_registry()
    with pytest.raises(Exception, match="budget.max_seeds: 1 is fewer than the 2 seeds"):
        parse_space(SPACE | {"budget": {"max_seeds": 1}}, registry)
    with pytest.raises(Exception, match="max_gpu_hours: this space runs on CPUs"):
        parse_space(SPACE | {"budget": {"max_seeds": 3, "max_gpu_hours": 10}}, registry)
    with pytest.raises(Exception, match="spending"):
        parse_space(SPACE | {"budget": {"max_seeds": 3, "spending": "haybittle"}}, registry)
    assert parse_space(SPACE | {"seeds": [3, 7], "budget": {"max_seeds": 4}}, registry).planned_seeds() == [3, 7, 8, 9]


def test_a_round_that_would_pass_max_gpu_hours_is_not_run(tmp_path):
    registry = default_registry()
    space = parse_space(SPACE | {"budget": {"half_width": 0.5, "max_seeds": 5, "max_gpu_hours": 100.0},
                                 "resources": {"gpus_per_worker": 1}}, registry)
    plan = build_plan(space, registry)
    records, ran, costs = [], [], []

    def gpu_hours(part):  # one GPU-hour a cell: round 1 has 42 cells, each later round 7 more (tatoeba)
        costs.append(len(part.cells))
        return float(len(part.cells))

    state = run_rounds(plan, tmp_path, SearchListener(), fake_round(records, ran), lambda: records, gpu_hours)
    # before each later round, what ran so far plus that round: 49, 56, 63 cells, all under 100
    assert ran == [1, 2, 3, 4] and costs == [49, 56, 63]
    tight = parse_space(SPACE | {"budget": {"half_width": 0.5, "max_seeds": 5, "max_gpu_hours": 50.0},
                                 "resources": {"gpus_per_worker": 1}}, registry)
    records, ran = [], []
    (tmp_path / "tight").mkdir()  # a search folder exists before its rounds
    state = run_rounds(build_plan(tight, registry), tmp_path / "tight", SearchListener(), fake_round(records, ran),
                       lambda: records, gpu_hours)
    assert ran == [1, 2] and state.stopped_by == "max_gpu_hours"
    assert (tmp_path / "tight" / "rounds.json").is_file()


def test_xgrid_status_counts_a_stopped_target_as_done_not_incomplete(plan, tmp_path):
    from xgrid.search.results import ResultsFile
    from xgrid.search.resume import FINISHED, update_state
    from xgrid.search.runner import write_search_files
    from xgrid.search.status import search_status

    write_search_files(tmp_path, plan)
    records, ran = [], []
    run_rounds(plan, tmp_path, SearchListener(), fake_round(records, ran), lambda: records)
    results = ResultsFile(tmp_path, plan.space)
    results.add(records)
    results.write()
    update_state(tmp_path, status=FINISHED)
    status = search_status(tmp_path, None)
    by_target = {t.target: t for t in status.targets}
    assert by_target["mb_udpos"].planned == 14 and by_target["mb_udpos"].state == "done"  # 7 x seeds 0, 1
    assert by_target["mb_tatoeba"].planned == 35 and by_target["mb_tatoeba"].state == "done"
    assert any("mb_udpos: syntactic higher in round 1 at 2 seed(s); its later seeds are not run" in n
               for n in status.notes)
