"""Tests for the embedded micro-benchmark: hub schemas, determinism, and the planted mechanism."""

from __future__ import annotations

import collections
import dataclasses

import datasets
import pytest

from xgrid.data import microbench as mb

# The hub schemas, written out independently of the module so a drift in either shows up.
STR = datasets.Value("string")
SQUAD = datasets.Features({
    "id": STR, "title": STR, "context": STR, "question": STR,
    "answers": datasets.Sequence({"text": STR, "answer_start": datasets.Value("int32")}),
})
UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X"]
HUB_FEATURES = {
    "mb_chunk": {"id": STR, "tokens": datasets.Sequence(STR)},  # + the two tag sequences below
    "mb_deprel": {"id": STR, "tokens": datasets.Sequence(STR)},
    "mb_xpos": {"id": STR, "tokens": datasets.Sequence(STR)},  # + xpos_tags (PTB) and depth_tags below
    "mb_depth": {"id": STR, "tokens": datasets.Sequence(STR)},
    "mb_ccg": {"id": STR, "tokens": datasets.Sequence(STR)},
    "mb_semtag": {"id": STR, "tokens": datasets.Sequence(STR)},
    "mb_para": datasets.Features({"id": datasets.Value("int32"), "sentence1": STR, "sentence2": STR,
                                  "label": datasets.ClassLabel(names=["0", "1"])}),
    "mb_entail": datasets.Features({"sentence1": STR, "sentence2": STR, "label": datasets.ClassLabel(
        names=["entailment", "not_entailment"]), "idx": datasets.Value("int32")}),  # GLUE RTE
    "mb_qa": SQUAD,
    "mb_choice": datasets.Features({
        "ind": datasets.Value("int32"), "activity_label": STR, "ctx_a": STR, "ctx_b": STR, "ctx": STR,
        "endings": datasets.Sequence(STR), "source_id": STR, "split": STR, "split_type": STR,
        "label": STR}),
    "mb_xnli": datasets.Features({"premise": STR, "hypothesis": STR, "label": datasets.ClassLabel(
        names=["entailment", "neutral", "contradiction"])}),
    "mb_udpos": datasets.Features({"tokens": datasets.Sequence(STR),
                                   "pos_tags": datasets.Sequence(datasets.ClassLabel(names=UPOS))}),
    "mb_xquad": SQUAD,
    "mb_tatoeba": datasets.Features({"source_sentence": STR, "target_sentence": STR,
                                     "source_lang": STR, "target_lang": STR}),
}

ALL_SPLITS = [(name, lang, split) for name in mb.TASK_NAMES for lang in mb.languages(name)
              for split in mb.splits(name, lang)]


def names_of(feature: datasets.ClassLabel, ids: list[int]) -> list[str]:
    return [feature.names[i] for i in ids]


def tag_names(ds: datasets.Dataset, column: str) -> list[list[str]]:
    feature = ds.features[column].feature
    return [names_of(feature, row) for row in ds[column]]


# -- generation and its cache (first, so the remaining tests run on a warm cache) ------------------
# How long generation takes is measured by `python benchmarks/microbench_generation.py`, not asserted here.

def test_every_split_is_generated_once_from_a_cold_cache_then_cached():
    """Runs first (file order), from a cold cache; every later test reuses what it generated."""
    mb.clear_cache()
    for name, lang, split in ALL_SPLITS:
        mb.load(name, lang, split)
    mb.corpus()
    generated = mb._rendered.cache_info()
    assert generated.misses == len(ALL_SPLITS) and generated.currsize == len(ALL_SPLITS)
    assert mb.lexicon.cache_info().currsize == 1  # one lexicon serves every task and the corpus
    for name, lang, split in ALL_SPLITS:  # a second pass generates nothing
        mb.load(name, lang, split)
    again = mb._rendered.cache_info()
    assert again.misses == generated.misses and again.hits == generated.hits + len(ALL_SPLITS)


# -- registry and arguments ------------------------------------------------------------------------

def test_task_names_languages_and_splits():
    assert mb.SYNTACTIC_TASKS == ("mb_chunk", "mb_deprel", "mb_xpos", "mb_depth", "mb_ccg")
    assert mb.SEMANTIC_TASKS == ("mb_para", "mb_qa", "mb_choice", "mb_entail", "mb_semtag")
    assert mb.TASK_NAMES == mb.SYNTACTIC_TASKS + mb.SEMANTIC_TASKS + ("mb_xnli", "mb_udpos", "mb_xquad",
                                                                      "mb_tatoeba")
    assert mb.LANGUAGES == ("en", "xa", "xb", "xc")
    for name in mb.INTERMEDIATE_TASKS:
        assert mb.languages(name) == ("en",)
        assert mb.splits(name, "en") == ("train", "validation")
    for name in ("mb_xnli", "mb_udpos", "mb_xquad"):
        assert mb.languages(name) == mb.LANGUAGES
        assert mb.splits(name, "en") == ("train", "validation", "test")
        assert mb.splits(name, "xc") == ("validation", "test")
    assert mb.languages("mb_tatoeba") == ("xa", "xb", "xc")
    assert mb.splits("mb_tatoeba", "xb") == ("validation", "test")


@pytest.mark.parametrize("call, bad", [
    (lambda: mb.load("mb_nope", "en", "train"), "mb_nope"),
    (lambda: mb.load("mb_xnli", "fr", "test"), "fr"),
    (lambda: mb.load("mb_xnli", "xa", "train"), "train"),
    (lambda: mb.load("mb_chunk", "xa", "train"), "xa"),
    (lambda: mb.load("mb_tatoeba", "en", "test"), "en"),
    (lambda: mb.load("mb_udpos", "en", "dev"), "dev"),
    (lambda: mb.splits("mb_nope", "en"), "mb_nope"),
    (lambda: mb.languages("squad"), "squad"),
    (lambda: mb.latent("mb_qa", "en", "test"), "test"),
])
def test_unknown_values_raise_value_error_naming_them(call, bad):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert repr(bad) in message or f"'{bad}'" in message or bad in message
    assert "valid" in message


def test_tatoeba_english_error_is_explicit():
    with pytest.raises(ValueError, match="no 'en' side"):
        mb.splits("mb_tatoeba", "en")


def test_config_validation():
    with pytest.raises(ValueError):
        mb.MicroBenchConfig(xa=mb.LanguageSpec(shared_stem_fraction=1.5))
    with pytest.raises(ValueError):
        mb.MicroBenchConfig(target_train_heldout_fraction=1.0)


# -- schemas and sizes -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, lang, split", ALL_SPLITS)
def test_schema_matches_the_hub(name, lang, split):
    ds = mb.load(name, lang, split)
    assert isinstance(ds, datasets.Dataset)
    expected = HUB_FEATURES[name]
    if name == "mb_chunk":
        assert ds.column_names == ["id", "tokens", "pos_tags", "chunk_tags"]
        pos, chunk = ds.features["pos_tags"].feature, ds.features["chunk_tags"].feature
        assert isinstance(pos, datasets.ClassLabel) and pos.num_classes == 44
        assert pos.names[:9] == ["''", "#", "$", "(", ")", ",", ".", ":", "``"]
        assert {"DT", "NN", "NNS", "NNP", "VBD", "JJ", "IN", "MD", "RB", "WRB"} <= set(pos.names)
        assert isinstance(chunk, datasets.ClassLabel) and chunk.num_classes == 23
        assert chunk.names[0] == "O" and chunk.names[-2:] == ["B-VP", "I-VP"]
    elif name == "mb_deprel":
        assert ds.column_names == ["id", "tokens", "deprel_tags"]
        deprel = ds.features["deprel_tags"].feature
        assert isinstance(deprel, datasets.ClassLabel)
        assert {"det", "amod", "nsubj", "obj", "root", "advmod", "case", "obl"} <= set(deprel.names)
    elif name == "mb_xpos":
        assert ds.column_names == ["id", "tokens", "xpos_tags"]
        assert ds.features["xpos_tags"].feature == datasets.ClassLabel(names=list(mb.PTB_NAMES))
    elif name == "mb_depth":
        assert ds.column_names == ["id", "tokens", "depth_tags"]
        assert ds.features["depth_tags"].feature.names == ["D1", "D2", "D3", "D4", "D5"]
    elif name in ("mb_ccg", "mb_semtag"):
        column = "ccg_tags" if name == "mb_ccg" else "sem_tags"
        assert ds.column_names == ["id", "tokens", column]
        names = mb.CCG_NAMES if name == "mb_ccg" else mb.SEM_NAMES
        assert ds.features[column].feature == datasets.ClassLabel(names=list(names))
    else:
        assert ds.features == expected
        assert ds.column_names == list(expected)
    for column, feature in expected.items():
        assert ds.features[column] == feature
    assert len(ds) > 0


def test_default_sizes():
    cfg = mb.MicroBenchConfig()
    assert len(mb.load("mb_chunk", "en", "train")) == cfg.intermediate_train_size == 2000
    assert len(mb.load("mb_qa", "en", "validation")) == cfg.intermediate_validation_size == 250
    assert len(mb.load("mb_udpos", "en", "train")) == cfg.target_train_size == 300
    assert len(mb.load("mb_xquad", "en", "train")) == cfg.target_train_size
    assert len(mb.load("mb_xnli", "en", "train")) == cfg.nli_target_train_size == 1200
    for name in ("mb_xpos", "mb_depth", "mb_entail"):
        assert len(mb.load(name, "en", "train")) == cfg.intermediate_train_size
        assert len(mb.load(name, "en", "validation")) == cfg.intermediate_validation_size
    assert len(mb.load("mb_udpos", "xb", "test")) == cfg.target_eval_size == 200
    assert len(mb.load("mb_tatoeba", "xc", "validation")) == cfg.tatoeba_size == 200


def test_config_sizes_are_honoured():
    cfg = mb.MicroBenchConfig(intermediate_train_size=37, target_train_size=11, target_eval_size=13,
                              tatoeba_size=7, corpus_sentences_per_language=20, nli_target_train_size=17)
    assert len(mb.load("mb_choice", "en", "train", config=cfg)) == 37
    assert len(mb.load("mb_entail", "en", "train", config=cfg)) == 37
    assert len(mb.load("mb_xnli", "en", "train", config=cfg)) == 17
    assert len(mb.load("mb_xnli", "xa", "test", config=cfg)) == 13
    assert len(mb.load("mb_udpos", "en", "train", config=cfg)) == 11
    assert len(mb.load("mb_xquad", "xa", "test", config=cfg)) == 13
    assert len(mb.load("mb_tatoeba", "xa", "test", config=cfg)) == 7
    assert len(mb.corpus(config=cfg)) == 4 * 20


def test_ids_look_like_the_hub():
    assert mb.load("mb_para", "en", "train")["id"][:3] == [1, 2, 3]
    qa_ids = mb.load("mb_qa", "en", "train")["id"]
    assert len(set(qa_ids)) == len(qa_ids) and all(len(i) == 24 for i in qa_ids)
    # XQuAD is parallel: the same ids in every language.
    assert mb.load("mb_xquad", "en", "test")["id"] == mb.load("mb_xquad", "xc", "test")["id"]
    choice = mb.load("mb_choice", "en", "validation")
    assert choice["ind"][:2] == [0, 1] and set(choice["split"]) == {"val"}
    assert all(c == f"{a} {b}" for a, b, c in zip(choice["ctx_a"], choice["ctx_b"], choice["ctx"]))


# -- determinism -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", mb.TASK_NAMES)
def test_different_seed_different_data(name):
    lang = mb.languages(name)[-1]
    a = mb.load(name, lang, "validation", seed=0).to_dict()
    b = mb.load(name, lang, "validation", seed=1).to_dict()
    assert a != b


def test_splits_differ():
    assert mb.load("mb_udpos", "en", "validation")["tokens"] != mb.load("mb_udpos", "en", "test")["tokens"]


def test_latent_is_a_copy():
    lat = mb.latent("mb_udpos", "en", "test")
    lat[0]["lexemes"].clear()
    assert mb.latent("mb_udpos", "en", "test")[0]["lexemes"]


# -- text hygiene ----------------------------------------------------------------------------------

def test_qa_answer_offsets_are_exact():
    for name in ("mb_qa", "mb_xquad"):
        for lang in mb.languages(name):
            for split in mb.splits(name, lang):
                for row in mb.load(name, lang, split):
                    (text,), (start,) = row["answers"]["text"], row["answers"]["answer_start"]
                    assert text and row["context"][start:start + len(text)] == text
                    # Token-aligned: the span starts and ends at whitespace boundaries.
                    assert start == 0 or row["context"][start - 1] == " "
                    assert row["context"][start + len(text)] == " "


@pytest.mark.parametrize("name, column", [("mb_chunk", "pos_tags"), ("mb_chunk", "chunk_tags"),
                                          ("mb_deprel", "deprel_tags"), ("mb_xpos", "xpos_tags"),
                                          ("mb_depth", "depth_tags"), ("mb_ccg", "ccg_tags"),
                                          ("mb_semtag", "sem_tags"), ("mb_udpos", "pos_tags")])
def test_tags_aligned_with_tokens(name, column):
    for lang in mb.languages(name):
        for split in mb.splits(name, lang):
            ds = mb.load(name, lang, split)
            lat = mb.latent(name, lang, split)
            for tokens, tags, meta in zip(ds["tokens"], ds[column], lat):
                assert len(tokens) == len(tags) == len(meta["lexemes"])
                assert 5 <= len(tokens) <= 14


def test_text_is_whitespace_tokenised_with_separate_punctuation():
    for row in mb.load("mb_xnli", "xb", "test"):
        for text in (row["premise"], row["hypothesis"]):
            assert text.endswith(" .") and "  " not in text
            assert all(tok.isalpha() or tok in ".?" for tok in text.split())
    for q in mb.load("mb_xquad", "xc", "test")["question"]:
        assert q.endswith(" ?")


def test_label_balance():
    def shares(values):
        counts = collections.Counter(values)
        return [c / len(values) for c in counts.values()], len(counts)

    for name, lang, split, n_labels in [("mb_xnli", "en", "train", 3), ("mb_xnli", "xc", "test", 3),
                                        ("mb_para", "en", "train", 2), ("mb_choice", "en", "train", 4),
                                        ("mb_entail", "en", "train", 2), ("mb_entail", "en", "validation", 2)]:
        fractions, n = shares(mb.load(name, lang, split)["label"])
        assert n == n_labels
        assert max(fractions) - min(fractions) <= 0.02


# -- languages -------------------------------------------------------------------------------------

def test_shared_stem_fractions_match_the_config():
    cfg = mb.MicroBenchConfig()
    lex = mb.lexicon()
    assert 150 <= len(lex) <= 400
    for lang in ("xa", "xb", "xc"):
        assert abs(lex.shared_fraction(lang) - cfg.language_spec(lang).shared_stem_fraction) < 0.01
    tuned = dataclasses.replace(cfg, xb=mb.LanguageSpec(shared_stem_fraction=0.2, suffix="ek"))
    assert abs(mb.lexicon(0, tuned).shared_fraction("xb") - 0.2) < 0.01


def test_non_english_surface_differs_but_shares_stems_in_range():
    """Measured on the data itself: the share of word types that are English stems (after the
    language suffix is stripped) sits near the configured fraction, and sentences differ."""
    cfg = mb.MicroBenchConfig()
    english = set(mb.lexicon().surfaces["en"])
    for lang in ("xa", "xb", "xc"):
        spec = cfg.language_spec(lang)
        ds = mb.load("mb_tatoeba", lang, "test")
        types = {w for s in ds["source_sentence"] for w in s.split() if w not in ".?"}
        suffix = spec.suffix

        def is_shared(word: str) -> bool:
            return word in english or bool(suffix) and word.endswith(suffix) \
                and word[:-len(suffix)] in english

        fraction = sum(map(is_shared, types)) / len(types)
        assert abs(fraction - spec.shared_stem_fraction) < 0.1, (lang, fraction)
        differ = [s != t for s, t in zip(ds["source_sentence"], ds["target_sentence"])]
        assert sum(differ) / len(differ) >= (0.25 if lang == "xa" else 1.0)
        assert set(ds["source_lang"]) == {lang} and set(ds["target_lang"]) == {"en"}


def test_graded_divergence():
    """xa is closest to English, xc furthest: token overlap with the English translation falls."""
    overlap = {}
    for lang in ("xa", "xb", "xc"):
        ds = mb.load("mb_tatoeba", lang, "validation")
        pairs = zip(ds["source_sentence"], ds["target_sentence"])
        same = [sum(a == b for a, b in zip(s.split(), t.split())) / len(t.split()) for s, t in pairs]
        overlap[lang] = sum(same) / len(same)
    assert overlap["xa"] > overlap["xb"] > overlap["xc"]


def test_head_final_language_is_verb_final():
    lex = mb.lexicon()
    for lang, verb_final in (("en", False), ("xc", True)):
        lat = mb.latent("mb_udpos", lang, "test")
        final = [lex.lexemes[m["lexemes"][-2]].upos in ("VERB", "AUX") for m in lat]
        assert all(final) if verb_final else sum(final) / len(final) < 0.5


def test_target_eval_sets_are_parallel():
    en, xc = mb.latent("mb_xnli", "en", "test"), mb.latent("mb_xnli", "xc", "test")
    assert [sorted(m["premise_lexemes"]) for m in en] == [sorted(m["premise_lexemes"]) for m in xc]
    assert mb.load("mb_xnli", "en", "test")["label"] == mb.load("mb_xnli", "xc", "test")["label"]


def test_corpus_covers_every_language_and_word_form():
    lex = mb.lexicon()
    lines = mb.corpus()
    assert len(lines) == 4 * mb.MicroBenchConfig().corpus_sentences_per_language
    words = {w for line in lines for w in line.split()}
    for lang in mb.LANGUAGES:
        assert set(lex.surfaces[lang]) <= words
    assert any(line.endswith(" ?") for line in lines)


# -- the planted mechanism, checked at the data level ------------------------------------------------

def test_udpos_tags_are_the_latent_class_and_homographs_need_context():
    lex = mb.lexicon()
    seen_tags: dict[str, set[str]] = collections.defaultdict(set)
    for lang in mb.LANGUAGES:
        for split in mb.splits("mb_udpos", lang):
            ds = mb.load("mb_udpos", lang, split)
            for tokens, tags, meta in zip(ds["tokens"], tag_names(ds, "pos_tags"),
                                          mb.latent("mb_udpos", lang, split)):
                for k, (tok, tag, lid) in enumerate(zip(tokens, tags, meta["lexemes"])):
                    assert tag == ("PUNCT" if lid < 0 else lex.lexemes[lid].upos)
                    if lid >= 0:
                        assert lex.surface(lid, lang) == tok
                    if len(lex.lookup(tok, lang)) > 1:  # an ambiguous written form
                        seen_tags[lang + ":" + tok].add(tag)
                        if lang == "en":  # English: the previous tag alone decides noun vs verb
                            prev = tags[k - 1] if k else None
                            expected = "NOUN" if prev in (None, "DET", "NUM", "ADJ", "ADP") else "VERB"
                            assert tag == expected, (tokens, tags)
    assert len(lex.homograph_forms) == mb.MicroBenchConfig().homographs
    both = [w for w, tags in seen_tags.items() if tags == {"NOUN", "VERB"}]
    assert len(both) >= 10  # the same word is tagged NOUN and VERB in different contexts


def reference_chunks(ptb: list[str]) -> list[str]:
    """An independent chunker that only looks at PTB classes and neighbours."""
    out = []
    for k, tag in enumerate(ptb):
        prev = ptb[k - 1] if k else None
        nxt = ptb[k + 1] if k + 1 < len(ptb) else None
        if tag == ".":
            out.append("O")
        elif tag == "IN":
            out.append("B-PP")
        elif tag in ("DT", "CD", "NNP", "PRP"):
            out.append("B-NP")
        elif tag in ("JJ", "NN", "NNS"):
            out.append("I-NP" if prev in ("DT", "CD", "JJ") else "B-NP")
        elif tag == "MD":
            out.append("B-VP")
        elif tag == "RB":
            out.append(("I-VP" if prev == "MD" else "B-VP") if nxt in ("VB", "VBD") else "B-ADVP")
        else:
            assert tag in ("VB", "VBD")
            out.append("I-VP" if prev in ("MD", "RB") else "B-VP")
    return out


def test_chunk_tags_are_a_function_of_syntactic_class_and_position():
    for split in ("train", "validation"):
        ds = mb.load("mb_chunk", "en", split)
        for ptb, chunks in zip(tag_names(ds, "pos_tags"), tag_names(ds, "chunk_tags")):
            assert chunks == reference_chunks(ptb)


def test_deprel_tags_are_a_function_of_syntactic_class_and_position():
    lex = mb.lexicon()
    by_class = {"DET": "det", "NUM": "nummod", "ADJ": "amod", "ADV": "advmod", "AUX": "aux",
                "ADP": "case", "VERB": "root"}
    ds = mb.load("mb_deprel", "en", "train")
    for rels, meta in zip(tag_names(ds, "deprel_tags"), mb.latent("mb_deprel", "en", "train")):
        classes = ["PUNCT" if i < 0 else lex.lexemes[i].upos for i in meta["lexemes"]]
        root = classes.index("VERB")
        nominals_after_root = 0
        for k, (cls, rel) in enumerate(zip(classes, rels)):
            if cls == "PUNCT":
                assert rel == "punct"
            elif cls in by_class:
                assert rel == by_class[cls]
            elif k < root:
                assert rel == "nsubj"
            else:  # the first nominal after the verb is its object, later ones sit in the PP
                assert rel == ("obj" if nominals_after_root == 0 else "obl")
                nominals_after_root += 1


def test_xpos_tags_are_the_ptb_tags_of_the_chunking_grammar():
    """mb_xpos draws its own sentences but tags them as mb_chunk's pos_tags column does: PTB by class,
    NNS after a numeral, VB after a modal; the words' clusters never matter."""
    lex = mb.lexicon()
    by_class = {"DET": "DT", "NUM": "CD", "ADJ": "JJ", "ADV": "RB", "AUX": "MD", "ADP": "IN", "PRON": "PRP",
                "PROPN": "NNP", "PUNCT": "."}
    ds = mb.load("mb_xpos", "en", "train")
    assert ds["tokens"] != mb.load("mb_chunk", "en", "train")["tokens"]
    for tags, meta in zip(tag_names(ds, "xpos_tags"), mb.latent("mb_xpos", "en", "train")):
        classes = ["PUNCT" if i < 0 else lex.lexemes[i].upos for i in meta["lexemes"]]
        for k, (cls, tag) in enumerate(zip(classes, tags)):
            if cls in by_class:
                assert tag == by_class[cls]
            elif cls == "NOUN":  # [DT|CD] JJ* NN: plural after a numeral
                front = k - 1
                while front >= 0 and tags[front] == "JJ":
                    front -= 1
                assert tag == ("NNS" if front >= 0 and tags[front] == "CD" else "NN")
            else:
                assert cls == "VERB" and tag == ("VB" if "MD" in tags[:k] else "VBD")


def test_depth_tags_count_the_brackets_around_each_token():
    """(S (NP det (ADJP adj) noun) (VP aux (ADVP adv) verb (NP obj) (PP adp (NP ..)) (ADVP adv)) .): read back
    from the deprel of the same token, an independent description of the same tree."""
    depth_of_relation = {"punct": "D1", "nsubj": "D2", "root": "D2", "aux": "D2", "obj": "D3", "case": "D3",
                         "obl": "D4"}
    for split in mb.splits("mb_depth", "en"):
        clauses = mb._latent_examples("mb_depth", split, 0, mb.MicroBenchConfig())
        lex = mb.lexicon()
        ds = mb.load("mb_depth", "en", split)
        for clause, depths in zip(clauses, tag_names(ds, "depth_tags")):
            toks = mb.linearize(clause, lex, "en")
            assert len(toks) == len(depths)
            head = {"subj": 2, "obj": 3, "pp": 4}
            for tok, depth in zip(toks, depths):
                if tok.deprel in depth_of_relation:
                    assert depth == depth_of_relation[tok.deprel]
                elif tok.deprel in ("det", "nummod"):  # directly in the noun phrase of its slot
                    assert depth == f"D{head[tok.slot]}"
                elif tok.deprel == "amod":  # in an ADJP one below the noun phrase
                    assert depth == f"D{head[tok.slot] + 1}"
                else:  # an adverb: in an ADVP inside the verb group, or its own ADVP under the VP
                    assert tok.deprel == "advmod" and depth == "D3"
        assert {"D1", "D2", "D3", "D4", "D5"} == {d for row in tag_names(ds, "depth_tags") for d in row}


def test_depth_tells_a_modifier_from_its_head():
    """What lets mb_depth teach word classes: an adjective is always one bracket deeper than the noun it
    modifies, so the two never share a depth within a noun phrase."""
    lex = mb.lexicon()
    ds = mb.load("mb_depth", "en", "train")
    for depths, meta in zip(tag_names(ds, "depth_tags"), mb.latent("mb_depth", "en", "train")):
        classes = ["PUNCT" if i < 0 else lex.lexemes[i].upos for i in meta["lexemes"]]
        for k, cls in enumerate(classes):
            if cls == "ADJ":
                noun = next(j for j in range(k + 1, len(classes)) if classes[j] == "NOUN")
                assert int(depths[k][1]) == int(depths[noun][1]) + 1


def test_ccg_categories_are_a_function_of_syntactic_class_and_position():
    """CCGbank categories: a determiner NP/N, a prenominal adjective or numeral N/N, a noun N, a pronoun NP,
    a transitive verb (S[dcl]\\NP)/NP, bare (S[b]\\NP)/NP after a modal, the modal itself
    (S[dcl]\\NP)/(S[b]\\NP), an adverb before the verb (S\\NP)/(S\\NP) and after it (S\\NP)\\(S\\NP), an
    adposition heading a VP-modifying PP; the words' clusters never matter."""
    lex = mb.lexicon()
    by_class = {"DET": "NP/N", "NUM": "N/N", "ADJ": "N/N", "NOUN": "N", "PROPN": "N", "PRON": "NP",
                "AUX": r"(S[dcl]\NP)/(S[b]\NP)", "ADP": r"((S\NP)\(S\NP))/NP", "PUNCT": "."}
    ds = mb.load("mb_ccg", "en", "train")
    for tags, meta in zip(tag_names(ds, "ccg_tags"), mb.latent("mb_ccg", "en", "train")):
        classes = ["PUNCT" if i < 0 else lex.lexemes[i].upos for i in meta["lexemes"]]
        verb = classes.index("VERB")
        for k, (cls, tag) in enumerate(zip(classes, tags)):
            if cls in by_class:
                assert tag == by_class[cls]
            elif cls == "VERB":
                assert tag == (r"(S[b]\NP)/NP" if "AUX" in classes[:k] else r"(S[dcl]\NP)/NP")
            else:
                assert cls == "ADV" and tag == (r"(S\NP)/(S\NP)" if k < verb else r"(S\NP)\(S\NP)")
    assert set(mb.CCG_NAMES) == {t for row in tag_names(ds, "ccg_tags") for t in row}


def test_semantic_tags_are_features_of_meaning_never_of_class():
    """mb_semtag tags a content word by its polarity (nouns unmarked, as a positive pole) and domain: two
    content words of different classes with the same features get the same tag, two synonyms always one tag,
    antonyms the opposite polarity; function words by their meaning category."""
    lex = mb.lexicon()
    ds = mb.load("mb_semtag", "en", "train")
    tag_of: dict[int, str] = {}
    classes_of_tag: dict[str, set[str]] = collections.defaultdict(set)
    for tags, meta in zip(tag_names(ds, "sem_tags"), mb.latent("mb_semtag", "en", "train")):
        for i, tag in zip(meta["lexemes"], tags):
            assert tag_of.setdefault(i, tag) == tag  # a word's tag never depends on its sentence
            if i < 0:
                assert tag == "NIL"
                continue
            x = lex.lexemes[i]
            if x.role == "content":
                assert tag == f"{'NEG' if x.polarity < 0 else 'POS'}{x.domain}"
                classes_of_tag[tag].add(x.upos)
            else:
                assert tag in ("DEF", "QUC", "REL", "PRO", "NAM", "MOD")
    assert classes_of_tag["POS0"] == classes_of_tag["POS1"] == set(mb.CONTENT_UPOS)  # class decides nothing
    assert classes_of_tag["NEG0"] == {"VERB", "ADJ", "ADV"}
    for cluster in lex.clusters:
        seen = {tag_of[i] for i in cluster if i in tag_of}
        assert len(seen) <= 1
        antonym = lex.lexemes[cluster[0]].antonym
        if seen and antonym >= 0:
            other = {tag_of[i] for i in lex.clusters[antonym] if i in tag_of}
            assert other and other != seen and {t[3] for t in other} == {t[3] for t in seen}


def test_entailment_is_the_nli_edits_with_neutral_and_contradiction_merged():
    ds = mb.load("mb_entail", "en", "train")
    names = ds.features["label"].names
    edits = collections.Counter()
    for label, meta in zip(ds["label"], mb.latent("mb_entail", "en", "train")):
        assert names[label] == ("entailment" if mb.NLI_EDIT_LABEL[meta["edit"]] == "entailment"
                                else "not_entailment")
        edits[meta["edit"]] += 1
    assert set(edits) == set(mb.NLI_EDIT_LABEL)
    assert mb.load("mb_entail", "en", "train")["idx"][:3] == [0, 1, 2]


def content_clusters(lex: mb.Lexicon, ids: list[int]) -> list[int]:
    return [lex.lexemes[i].cluster for i in ids if i >= 0 and lex.lexemes[i].cluster >= 0]


def has_antonym(lex: mb.Lexicon, premise: list[int], hypothesis: list[int]) -> bool:
    antonyms = {lex.lexemes[lex.clusters[c][0]].antonym for c in content_clusters(lex, premise)}
    return any(c in antonyms for c in content_clusters(lex, hypothesis))


def test_xnli_labels_are_decided_by_clusters_and_antonyms():
    lex = mb.lexicon()
    for lang in mb.LANGUAGES:
        for split in mb.splits("mb_xnli", lang):
            ds = mb.load("mb_xnli", lang, split)
            for label, meta in zip(ds["label"], mb.latent("mb_xnli", lang, split)):
                name = mb.NLI_NAMES[label]
                assert name == mb.NLI_EDIT_LABEL[meta["edit"]]
                p, h = meta["premise_lexemes"], meta["hypothesis_lexemes"]
                # Contradiction exactly when the hypothesis holds an antonym of a premise word.
                assert has_antonym(lex, p, h) == (name == "contradiction")
                new = set(content_clusters(lex, h)) - set(content_clusters(lex, p))
                if name == "entailment":  # only synonyms of premise words, nothing new
                    assert not new
                elif name == "neutral":  # something the premise does not mention
                    assert new


def test_xnli_flips_when_an_antonym_is_swapped_in():
    """Counterfactual: swapping an entailment hypothesis word for its antonym yields exactly the
    pattern that defines contradiction in the generated data."""
    lex = mb.lexicon()
    flipped = 0
    for meta in mb.latent("mb_xnli", "en", "train"):
        if meta["edit"] != "synonym":
            continue
        h = list(meta["hypothesis_lexemes"])
        assert not has_antonym(lex, meta["premise_lexemes"], h)
        k = next(k for k, i in enumerate(h) if i >= 0 and lex.lexemes[i].upos == "VERB")
        h[k] = lex.clusters[lex.lexemes[h[k]].antonym][0]
        assert has_antonym(lex, meta["premise_lexemes"], h)
        flipped += 1
    assert flipped > 30


def test_xnli_needs_lexical_semantics():
    """Entailment (synonym swap), neutral (unrelated swap) and contradiction (antonym swap) all
    come with same-length hypotheses, so the label cannot be read off length or structure."""
    by_edit = collections.Counter(m["edit"] for m in mb.latent("mb_xnli", "en", "train"))
    assert by_edit["synonym"] > 20 and by_edit["unrelated"] > 20 and by_edit["antonym"] > 80
    lengths = collections.defaultdict(set)
    ds = mb.load("mb_xnli", "en", "train")
    for row in ds:
        lengths[row["label"]].add(len(row["hypothesis"].split()) - len(row["premise"].split()))
    assert all({-1, 0} <= lengths[label] for label in range(3))


def test_paraphrase_labels_are_decided_by_clusters():
    lex = mb.lexicon()
    ds = mb.load("mb_para", "en", "train")
    lexical_change = 0
    for row, meta in zip(ds, mb.latent("mb_para", "en", "train")):
        same = sorted(content_clusters(lex, meta["premise_lexemes"])) == \
            sorted(content_clusters(lex, meta["hypothesis_lexemes"]))
        assert same == (row["label"] == 1) == (meta["edit"] == "synonym")
        lexical_change += row["sentence1"] != row["sentence2"]
    assert lexical_change == len(ds)  # a paraphrase is never a plain copy


def split_clauses(ids: list[int]) -> list[list[int]]:
    clauses, current = [], []
    for i in ids:
        if i < 0:
            clauses.append(current)
            current = []
        else:
            current.append(i)
    return clauses


def qa_key(lex: mb.Lexicon, ids: list[int], kind: str) -> tuple[int, int]:
    """(subject noun, verb) clusters for what/where questions, (verb, object noun) for who."""
    verb = next(k for k, i in enumerate(ids) if lex.lexemes[i].upos == "VERB")
    nouns = [k for k, i in enumerate(ids) if lex.lexemes[i].upos == "NOUN"]
    cluster = lambda k: lex.lexemes[ids[k]].cluster  # noqa: E731
    if kind == "who":
        return cluster(verb), cluster(min(k for k in nouns if k > verb))
    return cluster(max(k for k in nouns if k < verb)), cluster(verb)


@pytest.mark.parametrize("name, lang", [("mb_qa", "en"), ("mb_xquad", "en"), ("mb_xquad", "xb")])
def test_qa_answer_is_the_clause_the_question_names_through_synonyms(name, lang):
    lex = mb.lexicon()
    split = mb.splits(name, lang)[-1]
    ds = mb.load(name, lang, split)
    distractor_shares_a_key, synonym_questions = 0, 0
    for row, meta in zip(ds, mb.latent(name, lang, split)):
        kind = meta["question_type"]
        clauses = split_clauses(meta["context_lexemes"])
        question = qa_key(lex, meta["question_lexemes"][:-1], kind)
        matches = [k for k, c in enumerate(clauses) if qa_key(lex, c, kind) == question]
        assert matches == [meta["answer_clause"]]
        # The answer span sits inside that clause.
        ends = [k for k, ch in enumerate(row["context"]) if row["context"][k:k + 2] == " ."]
        lo = 0 if not matches[0] else ends[matches[0] - 1] + 3
        assert lo <= row["answers"]["answer_start"][0] < ends[matches[0]]
        keys = [qa_key(lex, c, kind) for c in clauses]
        distractor_shares_a_key += sum(1 for k in keys if k != question and (
            k[0] == question[0] or k[1] == question[1])) >= 2
        synonym_questions += bool(set(meta["question_lexemes"]) - set(meta["context_lexemes"]))
    assert distractor_shares_a_key == len(ds)  # two distractors each share half of the key
    assert synonym_questions / len(ds) > 0.5   # most questions need synonym knowledge


def test_choice_answer_is_consistent_in_cluster_and_polarity():
    lex = mb.lexicon()
    ds = mb.load("mb_choice", "en", "train")
    for row, meta in zip(ds, mb.latent("mb_choice", "en", "train")):
        ctx = meta["context_lexemes"]
        verb = next(i for i in ctx if i >= 0 and lex.lexemes[i].upos == "VERB")
        obj = [i for i in ctx[ctx.index(verb):] if i >= 0 and lex.lexemes[i].upos == "NOUN"][0]
        consistent = []
        for ending in meta["ending_lexemes"]:
            e_verb = next(lex.lexemes[i] for i in ending if i >= 0 and lex.lexemes[i].upos == "VERB")
            e_obj = next(lex.lexemes[i] for i in ending if i >= 0 and lex.lexemes[i].upos == "NOUN")
            consistent.append(e_verb.polarity == lex.lexemes[verb].polarity
                              and e_obj.cluster == lex.lexemes[obj].cluster and e_obj.id != obj)
        assert consistent.count(True) == 1
        assert consistent.index(True) == int(row["label"])
        assert meta["ending_kinds"][int(row["label"])] == "match"


def test_target_train_sets_hold_out_part_of_the_lexicon():
    lex = mb.lexicon()
    assert lex.heldout_groups and lex.seen_groups
    for upos in mb.CONTENT_UPOS:  # every class keeps seen and held-out groups
        groups = {x.group for x in lex.lexemes if x.upos == upos and x.role == "content"}
        assert groups & lex.heldout_groups and groups & lex.seen_groups

    def heldout_share(name, lang, split, fields):
        ids = [i for m in mb.latent(name, lang, split) for f in fields for i in m[f] if i >= 0]
        content = [i for i in ids if lex.lexemes[i].group >= 0]
        return sum(lex.lexemes[i].group in lex.heldout_groups for i in content) / len(content)

    pair = ("premise_lexemes", "hypothesis_lexemes")
    qa = ("context_lexemes", "question_lexemes")
    for name, fields in (("mb_udpos", ("lexemes",)), ("mb_xnli", pair), ("mb_xquad", qa)):
        assert heldout_share(name, "en", "train", fields) == 0.0
        assert heldout_share(name, "en", "test", fields) > 0.3
        assert heldout_share(name, "xc", "test", fields) > 0.3
    for name, fields in (("mb_chunk", ("lexemes",)), ("mb_deprel", ("lexemes",)), ("mb_xpos", ("lexemes",)),
                         ("mb_depth", ("lexemes",)), ("mb_ccg", ("lexemes",)), ("mb_semtag", ("lexemes",)),
                         ("mb_para", pair), ("mb_entail", pair), ("mb_qa", qa)):
        assert heldout_share(name, "en", "train", fields) > 0.3  # intermediates cover it all


def verb_of(lex: mb.Lexicon, ids: list[int]) -> mb.Lexeme:
    return next(lex.lexemes[i] for i in ids if i >= 0 and lex.lexemes[i].upos == "VERB")


def test_lexicon_features_are_few_and_shared():
    """Few large clusters; antonym pairs share field and domain and have opposite polarity; every
    cluster keeps at least two seen members (a synonym) and some held-out ones."""
    lex = mb.lexicon()
    cfg = mb.MicroBenchConfig()
    for members in lex.clusters:
        assert len(members) == cfg.cluster_size
        first = lex.lexemes[members[0]]
        assert len({(lex.lexemes[i].field, lex.lexemes[i].polarity, lex.lexemes[i].domain)
                    for i in members}) == 1
        if first.antonym >= 0:
            other = lex.lexemes[lex.clusters[first.antonym][0]]
            assert (other.field, other.domain, other.polarity) == (first.field, first.domain,
                                                                   -first.polarity)
        seen = [i for i in members if lex.lexemes[i].group in lex.seen_groups]
        assert 2 <= len(seen) < len(members)
    for upos in mb.CONTENT_UPOS:
        assert {x.domain for x in lex.lexemes if x.upos == upos and x.role == "content"} == {0, 1}


@pytest.mark.parametrize("name", ["mb_para", "mb_xnli", "mb_entail"])
def test_pair_label_is_decided_by_the_verb_relation(name):
    """The deciding edit is on the verb: synonym, antonym (opposite polarity, same field) or an
    unrelated verb of the other domain; the rest of the pair is aligned word by word."""
    lex = mb.lexicon()
    for split in mb.splits(name, "en"):
        ds = mb.load(name, "en", split)
        for label, meta in zip(ds["label"], mb.latent(name, "en", split)):
            p, h = verb_of(lex, meta["premise_lexemes"]), verb_of(lex, meta["hypothesis_lexemes"])
            relation = ("synonym" if p.cluster == h.cluster else "antonym" if p.field == h.field
                        else "unrelated")
            assert relation != "antonym" or p.polarity == -h.polarity
            assert relation != "unrelated" or p.domain != h.domain
            if name == "mb_para":
                assert relation == meta["edit"] and (label == 1) == (relation == "synonym")
            else:
                expected = meta["edit"] if meta["edit"] in ("synonym", "antonym", "unrelated") \
                    else "synonym"  # drop/add leave the verb (or swap a synonym in)
                assert relation == expected
            if name == "mb_para":  # aligned word by word: same length, same verb position
                assert len(meta["premise_lexemes"]) == len(meta["hypothesis_lexemes"])
                assert meta["premise_lexemes"].index(p.id) == meta["hypothesis_lexemes"].index(h.id)


def test_premise_verbs_are_biased_to_the_unmarked_pole_and_domain():
    """The first-order cue that makes the semantic tasks learnable: premise (and choice context)
    verbs are mostly positive and of domain 0, so a marked or other-domain verb in a hypothesis
    signals the relation; the relation itself is still needed for the rest."""
    lex = mb.lexicon()
    bias = mb.MicroBenchConfig().premise_bias
    for name, field in (("mb_para", "premise_lexemes"), ("mb_xnli", "premise_lexemes"),
                        ("mb_entail", "premise_lexemes"), ("mb_choice", "context_lexemes")):
        verbs = [verb_of(lex, m[field]) for m in mb.latent(name, "en", "train")]
        positive = sum(v.polarity == 1 for v in verbs) / len(verbs)
        domain0 = sum(v.domain == 0 for v in verbs) / len(verbs)
        assert abs(positive - bias) < 0.05 and abs(domain0 - bias) < 0.05, (name, positive, domain0)
        assert positive < 1.0 and domain0 < 1.0  # both poles occur in premises too


def test_heldout_verbs_reach_xnli_evaluation_only_through_the_whole_lexicon():
    """Held-out verbs decide part of the xnli evaluation labels, never the train labels, while the
    semantic intermediate tasks train on them."""
    lex = mb.lexicon()

    def heldout_verb_share(name, lang, split):
        metas = mb.latent(name, lang, split)
        verbs = [verb_of(lex, m["hypothesis_lexemes"]) for m in metas]
        return sum(v.group in lex.heldout_groups for v in verbs) / len(verbs)

    assert heldout_verb_share("mb_xnli", "en", "train") == 0.0
    assert heldout_verb_share("mb_xnli", "en", "validation") > 0.3
    assert heldout_verb_share("mb_xnli", "xc", "test") > 0.3
    assert heldout_verb_share("mb_para", "en", "train") > 0.3


def test_semantic_inputs_are_short():
    """Pairs and QA contexts stay short, so a 64-subword window holds most examples."""
    for name, cols in (("mb_para", ("sentence1", "sentence2")), ("mb_xnli", ("premise", "hypothesis"))):
        ds = mb.load(name, "en", "train")
        lengths = [sum(len(row[c].split()) for c in cols) for row in ds]
        assert sum(lengths) / len(lengths) < 18
    qa = mb.load("mb_qa", "en", "train")
    lengths = [len(c.split()) + len(q.split()) for c, q in zip(qa["context"], qa["question"])]
    assert sum(lengths) / len(lengths) < 32


# -- determinism from scratch (last: it empties the shared cache) -----------------------------------

def test_same_seed_same_data_even_from_a_cold_cache():
    """Last in the file: it empties the cache that the other tests share."""
    before = {n: mb.load(n, mb.languages(n)[-1], "validation").to_dict() for n in mb.TASK_NAMES}
    corpus_before = mb.corpus(seed=0)
    mb.clear_cache()
    after = {n: mb.load(n, mb.languages(n)[-1], "validation").to_dict() for n in mb.TASK_NAMES}
    assert before == after
    assert mb.corpus(seed=0) == corpus_before
    # An equal but distinct config object gives the same data.
    assert mb.load("mb_xnli", "xa", "test", config=mb.MicroBenchConfig()).to_dict() == \
        mb.load("mb_xnli", "xa", "test").to_dict()
