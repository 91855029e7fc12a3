import pytest

from xgrid.tasks import TaskRegistry, TaskSpec, UnknownTaskError, default_registry
from xgrid.data.sources import EmbeddedSource


def test_language_variants_fan_out(registry):
    assert registry.select("mb_xnli").languages == ("en", "xa", "xb", "xc")
    assert registry.select("mb_xnli.xb").languages == ("xb",)
    with pytest.raises(UnknownTaskError, match=r"unknown task 'mb_xnli.xx'"):
        registry.select("mb_xnli.xx")


def test_unknown_task_suggests_close_names(registry):
    with pytest.raises(UnknownTaskError) as err:
        registry.get("mb_udpso")
    assert err.value.suggestions[0] == "mb_udpos"  # closest first
    assert str(err.value).startswith("unknown task 'mb_udpso'; did you mean 'mb_udpos'")
    with pytest.raises(UnknownTaskError) as err:
        registry.get("completely_different")
    assert err.value.suggestions == [] and str(err.value) == "unknown task 'completely_different'"


def test_registry_rejects_duplicates_and_dotted_names():
    spec = TaskSpec("a", "tagging", "syntactic", ("en",), EmbeddedSource("mb_chunk"), "f1")
    with pytest.raises(ValueError, match="registered twice"):
        TaskRegistry([spec, spec])
    with pytest.raises(ValueError, match="must not contain '.'"):
        TaskRegistry([TaskSpec("a.b", "tagging", "syntactic", ("en",), EmbeddedSource("mb_chunk"), "f1")])


def test_taskspec_validates_kind_and_languages():
    with pytest.raises(ValueError, match="kind 'syntax'"):
        TaskSpec("a", "tagging", "syntax", ("en",), EmbeddedSource("mb_chunk"), "f1")
    with pytest.raises(ValueError, match="languages must not be empty"):
        TaskSpec("a", "tagging", "syntactic", (), EmbeddedSource("mb_chunk"), "f1")


def test_every_entry_names_a_known_format_and_its_train_task(registry):
    from xgrid.formats import FORMATS

    for task in registry:
        assert task.format in FORMATS, task.name
        assert registry.train_task_of(task).name in registry
        if task.is_target:
            assert "en" in task.languages or not registry.trains(task), task.name


def test_plugins_from_entry_points_are_registered(monkeypatch):
    """Another package contributes tasks through the `xgrid.tasks` entry-point group."""
    import types

    import xgrid.tasks as tasks

    plugin = types.SimpleNamespace(ENTRIES=(TaskSpec("plugged", "tagging", "syntactic", ("en",),
                                                     EmbeddedSource("mb_chunk"), "f1",
                                                     options={"tags": "pos_tags"}),))

    class EntryPoint:
        def load(self):
            return plugin

    monkeypatch.setattr(tasks, "entry_points", lambda group: [EntryPoint()] if group == "xgrid.tasks" else [])
    assert "plugged" in default_registry()
