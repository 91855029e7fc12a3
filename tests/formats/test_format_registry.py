"""A format is one entry of FORMATS: registering a new ScoredFormat is all it takes for a task of that format to be
scored from the encoder as it is, with no training, by the registry and the phase alike."""

import dataclasses

from xgrid.formats import FORMATS, ScoredFormat
from xgrid.training.phase import Hparams, PhaseRequest, run_phase


class CountRows(ScoredFormat):
    """A stand-in protocol whose score shows it was the one called, on the rows the phase loaded."""

    name = "count_rows"

    def evaluate_encoder(self, encoder, tokenizer, examples, task, language, settings, device="cpu", load=None):
        return {"accuracy": float(len(examples))}


def test_a_new_scored_format_makes_its_tasks_scored(monkeypatch, registry, tiny_model):
    monkeypatch.setitem(FORMATS, CountRows.name, CountRows())
    task = dataclasses.replace(registry.get("mb_tatoeba"), name="mb_counted", format=CountRows.name)
    assert not registry.trains(task)
    result = run_phase(PhaseRequest(tiny_model, (), Hparams(1e-3, max_eval_examples=5), 0, eval_task=task))
    assert result.history == []  # nothing was trained
    assert result.final["english_dev"] == {language: {"accuracy": 5.0} for language in task.languages}
