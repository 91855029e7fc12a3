"""Hub loading: offline-first reads, the one clear error for data that cannot be had, split-role mapping and the
data traps (English-only training data, unlabeled rows), local corpora, and `datasets`' tokenization cache."""

from __future__ import annotations

import json

import datasets
import pytest

from tests.tasks import hub_fake
from tests.tasks.hub_fake import FIXTURES, LOCAL, fixture_dataset, fixture_features
from xgrid.data.hub import DatasetNotCachedError, DatasetUnavailableError, HubPart, load_part
from xgrid.data.local_corpora import CcgbankSource, LocalDataMissingError, parse_auto, parse_stagged
from xgrid.data.sources import MissingSplitError
from xgrid.formats import get_format
from xgrid.models.loading import load_tokenizer
from xgrid.tasks import LoadContext, default_registry

REGISTRY = default_registry()


@pytest.fixture
def no_network(monkeypatch):
    """Records (and refuses) every attempt to resolve a host or open a connection; the test asserts none."""
    attempts = hub_fake.refuse_connections(monkeypatch)
    yield attempts
    assert attempts == [], f"network access attempted: {attempts}"


def test_uncached_dataset_offline_raises_one_clear_error(monkeypatch, tmp_path, no_network):
    # HF_DATASETS_OFFLINE=1 as the user would set it, an empty cache and the real `datasets.load_dataset`.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    task = REGISTRY.get("xnli")
    with pytest.raises(DatasetNotCachedError) as err:
        task.source.load(task, "de", "test", LoadContext(cache_dir=str(tmp_path / "empty-cache")))
    message = str(err.value)
    assert "'facebook/xnli'" in message and "config 'de'" in message and "split 'test'" in message
    assert "xgrid prefetch SPACE" in message
    assert isinstance(err.value, DatasetUnavailableError)


def test_cache_first_read_makes_no_request(monkeypatch, tmp_path, no_network):
    # Hub reachable as far as xgrid knows (no offline variable): the cache-only attempt still makes no request.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with pytest.raises(DatasetNotCachedError, match="google/xtreme"):
        load_part(HubPart("google/xtreme", "PAN-X.de", "test"), LoadContext(cache_dir=str(tmp_path)),
                  allow_network=False)


def test_reads_are_cache_first_then_hub(monkeypatch):
    calls = []

    def hub(path, name=None, split=None, **kwargs):  # cached nowhere: only the online call succeeds
        calls.append(datasets.config.HF_HUB_OFFLINE)
        if datasets.config.HF_HUB_OFFLINE:
            raise ConnectionError(f"Couldn't reach {path!r} on the Hub (OfflineModeIsEnabled)")
        return fixture_dataset(path, name, split)

    monkeypatch.setattr(datasets, "load_dataset", hub)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    task = REGISTRY.get("xnli")
    assert len(task.source.load(task, "de", "test", LoadContext())) == 4
    assert calls == [True, False]  # the cache without a request first, then the hub
    assert datasets.config.HF_HUB_OFFLINE is False  # restored
    calls.clear()
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # the user said offline: never ask the hub
    with pytest.raises(DatasetNotCachedError, match="offline mode"):
        task.source.load(task, "de", "test", LoadContext())
    assert calls == [True]


def test_split_roles_and_data_traps(fake_hub):
    xnli, pawsx, xquad = REGISTRY.get("xnli"), REGISTRY.get("pawsx"), REGISTRY.get("xquad")
    with pytest.raises(MissingSplitError):  # XNLI has no train split: it trains on MNLI
        xnli.source.load(xnli, "en", "train", LoadContext())
    assert len(pawsx.source.load(pawsx, "en", "train", LoadContext())) > 0
    with pytest.raises(MissingSplitError):  # machine-translated training data is never read
        pawsx.source.load(pawsx, "de", "train", LoadContext())
    with pytest.raises(MissingSplitError):  # XQuAD has no dev set in German ...
        xquad.source.load(xquad, "de", "dev", LoadContext())
    english_dev = xquad.source.load(xquad, "en", "dev", LoadContext())  # ... and English dev is SQuAD's
    assert fake_hub.calls[-1]["path"] == "rajpurkar/squad" and fake_hub.calls[-1]["split"] == "validation"
    assert len(english_dev) == 3
    assert xquad.source.load(xquad, "de", "test", LoadContext()).column_names == ["id", "context", "question", "answers"]
    snli = REGISTRY.get("snli")
    assert -1 not in snli.source.load(snli, "en", "train", LoadContext())["label"]
    anli = REGISTRY.get("anli")
    assert len(anli.source.load(anli, "en", "train", LoadContext())) == 9  # rounds 1-3 concatenated


def test_tydiqa_english_training_only_with_held_out_dev(fake_hub):
    task = REGISTRY.get("tydiqa")
    train = task.source.load(task, "en", "train", LoadContext())
    dev = task.source.load(task, "en", "dev", LoadContext())
    assert all(i.startswith("english-") for i in list(train["id"]) + list(dev["id"]))
    assert not set(train["id"]) & set(dev["id"]) and len(train) + len(dev) == 11
    with pytest.raises(MissingSplitError):
        task.source.load(task, "ar", "train", LoadContext())
    assert all(i.startswith("arabic-") for i in task.source.load(task, "ar", "test", LoadContext())["id"])


def test_ud_sources_keep_a_closed_label_set(fake_hub):
    deprel = REGISTRY.get("ud_deprel")
    rows = deprel.source.load(deprel, "en", "train", LoadContext())
    assert {r for rels in rows["deprel"] for r in rels} <= set(deprel.option("labels"))
    udpos = REGISTRY.get("udpos")
    lt = udpos.source.load(udpos, "lt", "test", LoadContext())  # UD 2.7 treebanks in XTREME's udpos schema
    assert lt.features == fixture_features("google/xtreme", "udpos.English")
    assert len(lt) == 3  # lt_alksnis (2 sentences) + lt_hse (1)
    assert len(udpos.source.load(udpos, "lt", "dev", LoadContext())) == 1  # lt_hse has no dev split


def test_local_corpora_name_their_option(tmp_path):
    ccg, mewsli = REGISTRY.get("ccg"), REGISTRY.get("mewsli_x")
    for task in (ccg, mewsli):
        with pytest.raises(LocalDataMissingError, match=f"local_paths.{task.name}"):
            task.source.load(task, "en", "test", LoadContext())
        missing = str(tmp_path / "nowhere")
        with pytest.raises(LocalDataMissingError, match="nowhere"):
            task.source.load(task, "en", "test", LoadContext(local_paths={task.name: missing}))
    assert issubclass(LocalDataMissingError, DatasetUnavailableError)


def test_ccgbank_formats_parse(tmp_path):
    auto = (FIXTURES / "local" / "ccgbank" / "data" / "AUTO" / "00" / "wsj_0001.auto").read_text()
    sentences = parse_auto(auto)
    assert sentences[0] == (["The", "cat", "sees", "dogs", "."], ["NP[nb]/N", "N", "(S[dcl]\\NP)/NP", "N", "."])
    assert parse_stagged("The|DT|NP[nb]/N cat|NN|N\n") == [(["The", "cat"], ["NP[nb]/N", "N"])]
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.stagged").write_text("The|DT|NP[nb]/N cat|NN|N sleeps|VBZ|S[dcl]\\NP\n" * 10)
    task = REGISTRY.get("ccg")
    rows = CcgbankSource().load(task, "en", "dev", LoadContext(local_paths={"ccg": str(tmp_path)}))
    names = rows.features["supertags"].feature.names
    assert names == ["N", "NP[nb]/N", "S[dcl]\\NP", "<UNK>"] and len(rows) == 10
    standard = CcgbankSource().load(task, "en", "test", LoadContext(local_paths={"ccg": LOCAL["ccg"]}))
    assert len(standard) == 2  # section 23 only


def test_mewsli_x_reads_the_official_files():
    task = REGISTRY.get("mewsli_x")
    ctx = LoadContext(local_paths={"mewsli_x": LOCAL["mewsli_x"]})
    rows = task.source.load(task, "de", "test", ctx)
    assert list(rows["mention"]) == ["Chile", "Richterskala"]
    assert list(rows["context"]) == ["Ein Erdbeben traf Chile.", "Die Stärke lag auf der Richterskala bei 7."]
    assert len(task.source.load_candidates(task, ctx)) == 6


def test_featurized_rows_are_cached_by_datasets(tmp_path, tiny_xlmr):
    """Rows read from the datasets cache (here a JSON build with the hub's Features) keep a deterministic
    fingerprint, so the format's `map` result is written once per (tokenizer, max length) and then reused."""
    cache = str(tmp_path / "cache")
    data_file = str(FIXTURES / "facebook__xnli" / "en" / "test.jsonl")
    features = fixture_features("facebook/xnli", "en")
    task = REGISTRY.get("xnli")
    fmt = get_format(task.format)

    def featurize(max_length):
        rows = datasets.load_dataset("json", data_files=data_file, features=features, split="train", cache_dir=cache)
        return fmt.featurize(rows, load_tokenizer(tiny_xlmr), task, max_length, training=False)

    first, again, longer = featurize(64), featurize(64), featurize(32)
    assert first.cache_files and first.cache_files == again.cache_files  # same tokenizer + length: reused
    assert longer.cache_files != first.cache_files  # another max length: its own cache file
    assert json.loads(json.dumps(first[0]["labels"])) == 0
