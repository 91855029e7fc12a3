"""An embedded, offline, deterministic multilingual micro-benchmark.

Everything here is generated from a seed; nothing is downloaded. Every task returns a
``datasets.Dataset`` with the same column names and feature types as the Hugging Face hub dataset it
stands in for, so the featurizers written for the real data serve this data unchanged:

================  ==========================  =======================================================
task              stands in for               columns
================  ==========================  =======================================================
``mb_chunk``      ``conll2000``               id, tokens, pos_tags (PTB), chunk_tags (BIO)
``mb_deprel``     UD ``en_ewt`` deprel        id, tokens, deprel_tags
``mb_xpos``       UD ``en_ewt`` xpos (PTB)    id, tokens, xpos_tags
``mb_depth``      constituency depth          id, tokens, depth_tags (D1..D5: brackets around a token)
``mb_ccg``        CCGbank supertags           id, tokens, ccg_tags (CCG lexical categories)
``mb_semtag``     PMB semantic tags           id, tokens, sem_tags (polarity and domain of content words)
``mb_para``       ``paws`` labeled_final      id, sentence1, sentence2, label ("0"/"1", 1 = paraphrase)
``mb_entail``     ``glue/rte``                sentence1, sentence2, label (entailment/not_entailment), idx
``mb_qa``         ``squad`` (v1.1)            id, title, context, question, answers{text, answer_start}
``mb_choice``     ``Rowan/hellaswag``         ind, activity_label, ctx_a, ctx_b, ctx, endings, ..., label
``mb_xnli``       ``xnli`` / MNLI             premise, hypothesis, label (entailment/neutral/contradiction)
``mb_udpos``      XTREME ``udpos.<lang>``     tokens, pos_tags (UPOS)
``mb_xquad``      XTREME ``XQuAD.<lang>``     SQuAD columns
``mb_tatoeba``    XTREME ``tatoeba.<lang>``   source_sentence, target_sentence, source_lang, target_lang
================  ==========================  =======================================================

The first ten are English intermediate tasks, five syntactic and five semantic (splits ``train``,
``validation``); the last four are targets (English ``train``/``validation``/``test``, other languages
``validation``/``test``; Tatoeba has no English side and no train split).

Languages
---------
``en`` plus three synthetic languages ``xa``, ``xb``, ``xc`` that share ONE latent lexicon and ONE
latent sentence structure with English and differ only in surface form. Each lexeme has a *form*
(homographs share one), and each form has a stem per language: the English stem for a configured
fraction of forms, a language-specific stem (built from that language's own letters) otherwise.
Content words may carry a language suffix, and a language may be head-final (adjective after noun,
postpositions, verb-final clauses). Defaults: ``xa`` shares 90% of stems, ``xb`` 60% plus a suffix,
``xc`` 40% plus head-final order, so zero-shot transfer from English is possible but graded. A tiny
encoder trained from scratch can only transfer through shared stems/subwords.

The target evaluation sets are parallel: the same latent examples are rendered in every language, so
differences between languages come from surface form alone.

The planted effect
------------------
By construction, syntactic intermediate tasks should help the tagging target (``mb_udpos``) more than
semantic ones do, and semantic intermediate tasks should help the pair-classification target
(``mb_xnli``) more than syntactic ones do:

* Every lexeme has a syntactic class (UPOS). Content lexemes belong to a *synonym cluster* of
  ``cluster_size`` words; clusters are few and large, so a word's meaning is a handful of latent
  features shared by many words rather than a set of pairwise relations. Each noun cluster is one
  *field*; verb, adjective and adverb fields hold an antonym pair of clusters, a positive (unmarked)
  and a negative (marked) pole, so the features of a content word are its field, its polarity (+1/-1)
  and its field's *domain* (0/1: half of each class's fields). No clause holds two words of one field
  (so relations between words of two sentences are never ambiguous).
* Syntactic labels are functions of class and position only: ``mb_udpos`` tags are the lexeme's
  class; ``mb_chunk``/``mb_deprel``/``mb_xpos``/``mb_depth``/``mb_ccg`` tags are functions of class and the
  constituent the word sits in (every syntactic intermediate task therefore teaches word classes,
  which is what the tagging target needs for words its own training data never shows). How much of a
  word's class a task's tags carry varies: PTB tags, relations and CCG categories name it; a depth tag puts
  a modifier one bracket below its head; a chunk tag tells a noun phrase from a verb group but not an
  adjective from its noun (``benchmarks/planted_effect.py`` measures each task's gain).
  Clusters never matter. Some noun and verb lexemes share a form, so the tag of such a word depends on
  context (noun after a determiner/numeral/adjective/adposition or at the start, verb otherwise).
* Semantic labels are functions of the latent features only, and syntactic classes never decide them.
  ``mb_semtag`` tags each content word with its polarity (nouns are unmarked, like a positive pole) and
  domain, and each function word with its meaning category (PMB-style: DEF, QUC, REL, PRO, NAM, MOD).
  The two sentences of a pair are aligned word by word (no reordering), and the edit that decides the
  label is made on the verb: a paraphrase (``mb_para`` label 1) swaps it for a synonym, a
  non-paraphrase for its antonym (same field and domain, opposite polarity) or for an unrelated verb
  (a field of the other domain). An NLI hypothesis entails the premise after a verb synonym swap or a
  dropped modifier, is neutral after an added modifier or an unrelated verb, and contradicts it after
  the antonym verb (``mb_entail`` merges neutral and contradiction into not_entailment, as RTE does;
  an added modifier is drawn a quarter as often as each other edit: ``add_edit_weight``). Label-preserving noise: synonym swaps of other words, and a dropped modifier (so
  length does not give the label away). A QA question names its clause through (sometimes) synonyms
  of its subject/verb/object, against distractor clauses that share one of them (often with the
  antonym verb); the right HellaSwag-style ending re-mentions the object cluster with a verb of the
  context verb's polarity.
* Learnability: a relation between two words (same or opposite polarity) is an XOR of their features,
  which gives gradient descent no first-order signal, and a tiny encoder trained from scratch on a
  small budget never picks it up. So premise and context verbs are *biased*: with probability
  ``premise_bias`` a premise verb is of the positive pole, and (independently) of domain 0. The
  marked pole or the other domain in a hypothesis is then a first-order cue for
  contradiction / non-paraphrase / neutral, which must still be learned word by word: the features
  are arbitrary properties of arbitrary stems, never visible in the surface form. (With the tiny
  model, 2000 examples x 3 epochs: ``mb_para`` ~80-85% on English dev, ``mb_choice`` ~45%.)
* The English target train sets are small (NLI's larger: it is learned from the verb alone, word by
  word, and at the others' size it stays at chance even on English) and drawn from only part of the lexicon: the groups in
  ``Lexicon.heldout_groups`` (a group is one content lexeme; about half of every synonym cluster,
  always leaving at least two members of each cluster seen) never occur in them, while the
  intermediate tasks and all evaluation sets use the whole lexicon. What a model knows about a
  held-out word's class (for udpos) or polarity/domain (for xnli) can only come from the
  intermediate task, which is what lets the choice of intermediate task show up in the target scores.

Public helpers beyond the data: ``lexicon()`` exposes the latent lexicon and ``latent()`` the lexeme id
behind every token of every example, which the tests use to check the mechanism at the data level.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import gc
import hashlib
import random
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

import datasets
from datasets.table import InMemoryTable

# --------------------------------------------------------------------------------------------------
# Names and label sets
# --------------------------------------------------------------------------------------------------

# Bumped whenever a task's generated data change: stage-1 checkpoint keys and cell ids include it, so a store
# filled by an earlier version is not reused for data it was not trained on.
GENERATOR_VERSION = 2

LANGUAGES: tuple[str, ...] = ("en", "xa", "xb", "xc")
NON_ENGLISH: tuple[str, ...] = LANGUAGES[1:]

SYNTACTIC_TASKS: tuple[str, ...] = ("mb_chunk", "mb_deprel", "mb_xpos", "mb_depth", "mb_ccg")
SEMANTIC_TASKS: tuple[str, ...] = ("mb_para", "mb_qa", "mb_choice", "mb_entail", "mb_semtag")
INTERMEDIATE_TASKS: tuple[str, ...] = SYNTACTIC_TASKS + SEMANTIC_TASKS
TARGET_TASKS: tuple[str, ...] = ("mb_xnli", "mb_udpos", "mb_xquad", "mb_tatoeba")
TASK_NAMES: tuple[str, ...] = INTERMEDIATE_TASKS + TARGET_TASKS

UPOS_NAMES = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
              "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")
# conll2000 on the hub: 44 PTB tags and 23 chunk tags, in this order.
PTB_NAMES = ("''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ",
             "JJR", "JJS", "MD", "NN", "NNP", "NNPS", "NNS", "PDT", "POS", "PRP", "PRP$", "RB", "RBR",
             "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT", "WP", "WP$",
             "WRB")
CHUNK_NAMES = ("O", "B-ADJP", "I-ADJP", "B-ADVP", "I-ADVP", "B-CONJP", "I-CONJP", "B-INTJ", "I-INTJ",
               "B-LST", "I-LST", "B-NP", "I-NP", "B-PP", "I-PP", "B-PRT", "I-PRT", "B-SBAR", "I-SBAR",
               "B-UCP", "I-UCP", "B-VP", "I-VP")
# Only the relations this grammar produces, so no head has classes that can never occur.
DEPREL_NAMES = ("root", "nsubj", "obj", "obl", "det", "nummod", "amod", "advmod", "aux", "case",
                "punct")
NLI_NAMES = ("entailment", "neutral", "contradiction")
RTE_NAMES = ("entailment", "not_entailment")
# Constituency depth of a token: how many brackets of
# (S (NP .. (ADJP ..) ..) (VP .. (ADVP ..) .. (NP ..) (PP .. (NP ..)) (ADVP ..)) .) hold it. Subject and verb
# group sit at 2; object, adposition and final adverb at 3; the PP's noun phrase at 4; an adjective (in its ADJP)
# or a verb-group adverb (in its ADVP) one deeper than the phrase around it. Two characters each: seqeval reads
# the first as a chunk prefix and the rest as the type, so a bare digit would have no type at all.
DEPTH_NAMES = ("D1", "D2", "D3", "D4", "D5")
# CCGbank lexical categories of the grammar's words (transitive verbs; a PP and a final adverb modify the VP).
CCG_NAMES = ("NP/N", "N/N", "N", "NP", r"(S[dcl]\NP)/NP", r"(S[b]\NP)/NP", r"(S[dcl]\NP)/(S[b]\NP)",
             r"(S\NP)/(S\NP)", r"(S\NP)\(S\NP)", r"((S\NP)\(S\NP))/NP", ".")
# Parallel Meaning Bank-style semantic tags: content words by polarity (POS unmarked, NEG marked) and domain;
# function words by meaning category (DEF determiner, QUC cardinal, REL relation, PRO pronoun, NAM name,
# MOD modal, NIL punctuation).
SEM_NAMES = ("POS0", "POS1", "NEG0", "NEG1", "DEF", "QUC", "REL", "PRO", "NAM", "MOD", "NIL")

CONTENT_UPOS = ("NOUN", "VERB", "ADJ", "ADV")

# Which NLI / paraphrase edit produces which label (the edit is the only thing that decides it).
NLI_EDIT_LABEL = {"synonym": "entailment", "drop": "entailment", "add": "neutral",
                  "unrelated": "neutral", "antonym": "contradiction"}
PARA_EDIT_LABEL = {"synonym": 1, "antonym": 0, "unrelated": 0}


def _sequence_of(label_names: tuple[str, ...]) -> datasets.Sequence:
    return datasets.Sequence(datasets.ClassLabel(names=list(label_names)))


_STR = datasets.Value("string")
_SQUAD_FEATURES = datasets.Features({
    "id": _STR, "title": _STR, "context": _STR, "question": _STR,
    "answers": datasets.Sequence({"text": _STR, "answer_start": datasets.Value("int32")}),
})
FEATURES: dict[str, datasets.Features] = {
    "mb_chunk": datasets.Features({"id": _STR, "tokens": datasets.Sequence(_STR),
                                   "pos_tags": _sequence_of(PTB_NAMES),
                                   "chunk_tags": _sequence_of(CHUNK_NAMES)}),
    "mb_deprel": datasets.Features({"id": _STR, "tokens": datasets.Sequence(_STR),
                                    "deprel_tags": _sequence_of(DEPREL_NAMES)}),
    "mb_xpos": datasets.Features({"id": _STR, "tokens": datasets.Sequence(_STR),
                                  "xpos_tags": _sequence_of(PTB_NAMES)}),
    "mb_depth": datasets.Features({"id": _STR, "tokens": datasets.Sequence(_STR),
                                   "depth_tags": _sequence_of(DEPTH_NAMES)}),
    "mb_ccg": datasets.Features({"id": _STR, "tokens": datasets.Sequence(_STR),
                                 "ccg_tags": _sequence_of(CCG_NAMES)}),
    "mb_semtag": datasets.Features({"id": _STR, "tokens": datasets.Sequence(_STR),
                                    "sem_tags": _sequence_of(SEM_NAMES)}),
    "mb_para": datasets.Features({"id": datasets.Value("int32"), "sentence1": _STR, "sentence2": _STR,
                                  "label": datasets.ClassLabel(names=["0", "1"])}),
    "mb_entail": datasets.Features({"sentence1": _STR, "sentence2": _STR,
                                    "label": datasets.ClassLabel(names=list(RTE_NAMES)),
                                    "idx": datasets.Value("int32")}),
    "mb_qa": _SQUAD_FEATURES,
    "mb_choice": datasets.Features({
        "ind": datasets.Value("int32"), "activity_label": _STR, "ctx_a": _STR, "ctx_b": _STR,
        "ctx": _STR, "endings": datasets.Sequence(_STR), "source_id": _STR, "split": _STR,
        "split_type": _STR, "label": _STR}),
    "mb_xnli": datasets.Features({"premise": _STR, "hypothesis": _STR,
                                  "label": datasets.ClassLabel(names=list(NLI_NAMES))}),
    "mb_udpos": datasets.Features({"tokens": datasets.Sequence(_STR),
                                   "pos_tags": _sequence_of(UPOS_NAMES)}),
    "mb_xquad": _SQUAD_FEATURES,
    "mb_tatoeba": datasets.Features({"source_sentence": _STR, "target_sentence": _STR,
                                     "source_lang": _STR, "target_lang": _STR}),
}

# --------------------------------------------------------------------------------------------------
# Seeding and argument checks
# --------------------------------------------------------------------------------------------------


def _derive_seed(*parts: Any) -> int:
    """A stable integer from any parts (Python's hash() is salted per process, so never use it)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _rng(*parts: Any) -> random.Random:
    return random.Random(_derive_seed(*parts))


def _gc_paused(func: Callable) -> Callable:
    """Pause the cyclic garbage collector while generating: generation allocates hundreds of
    thousands of small acyclic tuples, and collector passes over them cost about a quarter of the
    total time."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return wrapper


def _check_choice(what: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LanguageSpec:
    """How one language realises the shared latent structure."""

    shared_stem_fraction: float
    suffix: str = ""            # appended to content words (nouns, verbs, adjectives, adverbs)
    head_final: bool = False    # adjective after noun, postpositions, verb-final clauses


@dataclass(frozen=True)
class MicroBenchConfig:
    """All sizes, lexicon shapes and surface-divergence settings; hashable so it can key caches."""

    # Lexicon. Every cluster holds cluster_size synonyms; verb/adjective/adverb clusters come in
    # antonym pairs (a "field" with a positive and a negative cluster). Few, large clusters make the
    # semantic relations properties shared by many words, learnable by a tiny model. About 200
    # lexemes with the defaults.
    noun_clusters: int = 12
    verb_pairs: int = 6
    adj_pairs: int = 6
    adv_pairs: int = 2
    proper_nouns: int = 8
    homographs: int = 6             # noun/verb pairs that share one written form
    cluster_size: int = 4
    # Surface divergence of the synthetic languages from English.
    xa: LanguageSpec = LanguageSpec(shared_stem_fraction=0.9)
    xb: LanguageSpec = LanguageSpec(shared_stem_fraction=0.6, suffix="ek")
    xc: LanguageSpec = LanguageSpec(shared_stem_fraction=0.4, head_final=True)
    # Sizes (examples per split; target eval sizes are per language).
    intermediate_train_size: int = 2000
    intermediate_validation_size: int = 250
    target_train_size: int = 300
    # NLI learns from the verb relation alone, word by word: 300 examples leave even English at chance.
    nli_target_train_size: int = 1200
    target_eval_size: int = 200
    tatoeba_size: int = 200
    corpus_sentences_per_language: int = 1500
    qa_context_clauses: int = 3
    max_sentence_tokens: int = 14
    # The planted effect: share of groups never seen in the English target train sets.
    target_train_heldout_fraction: float = 0.5
    synonym_swap_prob: float = 0.2      # per-word chance of a meaning-preserving synonym swap
    question_synonym_prob: float = 0.3  # per-word chance that a QA question names a word by a synonym
    # How often an added modifier (neutral: nothing in the premise says it) is drawn, relative to each other edit.
    # It is the one edit a word's polarity and domain say nothing about, so a rare one keeps NLI learnable
    # from the English target data alone.
    add_edit_weight: float = 0.25
    premise_bias: float = 0.9           # chance that a premise verb is positive, and in domain 0

    def __post_init__(self) -> None:
        for lang in NON_ENGLISH:
            fraction = self.language_spec(lang).shared_stem_fraction
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"{lang}.shared_stem_fraction must be in [0, 1], got {fraction}")
        if not 0.0 <= self.target_train_heldout_fraction < 1.0:
            raise ValueError("target_train_heldout_fraction must be in [0, 1)")
        if self.cluster_size < 3:
            raise ValueError("cluster_size must be at least 3 (seen and held-out members, synonyms)")
        if self.qa_context_clauses < 3:
            raise ValueError("qa_context_clauses must be at least 3 (target plus two distractors)")
        if self.max_sentence_tokens < 8:
            raise ValueError("max_sentence_tokens must be at least 8")

    def language_spec(self, language: str) -> LanguageSpec:
        _check_choice("language", language, LANGUAGES)
        return LanguageSpec(1.0) if language == "en" else getattr(self, language)


_DEFAULT_CONFIG = MicroBenchConfig()

# --------------------------------------------------------------------------------------------------
# The latent lexicon
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lexeme:
    id: int
    upos: str
    role: str          # "content" or the function: det, num, adp, pron, propn, aux, aux_q, wh_*
    form: int          # index of the written form (homographs share one)
    cluster: int = -1  # synonym cluster (content words), -1 otherwise
    field: int = -1    # noun cluster or antonym pair: no clause holds two words of one field
    group: int = -1    # the held-out unit: one per content lexeme
    antonym: int = -1  # cluster of antonyms, -1 if none
    polarity: int = 0  # +1/-1 for clusters in antonym pairs
    domain: int = -1   # 0/1 for content words: half of each class's fields are in either domain


# English function words: real words keep the examples readable; their class never varies.
_FUNCTION_WORDS = (
    ("DET", "det", ("the", "a", "this", "that")),
    ("NUM", "num", ("two", "three", "four", "five")),
    ("ADP", "adp", ("in", "on", "near", "with", "under", "behind")),
    ("PRON", "pron", ("he", "she", "they", "it")),
    ("AUX", "aux", ("will", "can", "must")),
    ("AUX", "aux_q", ("did",)),
    ("PRON", "wh_what", ("what",)),
    ("PRON", "wh_who", ("who",)),
    ("ADV", "wh_where", ("where",)),
)

# Letters per language: distinct inventories keep non-shared stems from sharing subwords by accident.
_INVENTORIES = {
    "en": ("bdfgklmnprstvz", ("a", "e", "i", "o", "u")),
    "xa": ("chjklmnqrstw", ("a", "e", "i", "o", "u", "ai")),
    "xb": ("bdgjkmnpstvz", ("a", "o", "u", "ei", "ou")),
    "xc": ("dhjklmnrsxz", ("a", "e", "i", "aa", "ee", "uu")),
}


def _make_word(rng: random.Random, language: str, syllables: int) -> str:
    consonants, vowels = _INVENTORIES[language]
    word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
    if rng.random() < 0.5:  # a closed final syllable for variety
        word += rng.choice(consonants)
    return word


class Lexicon:
    """The latent lexicon of one (seed, config): lexemes, clusters and per-language surface forms."""

    def __init__(self, seed: int, config: MicroBenchConfig):
        self.config = config
        rng = _rng("lexicon", seed)
        self.lexemes: list[Lexeme] = []
        self.clusters: list[tuple[int, ...]] = []
        self._form_is_content: list[bool] = []
        self._english_function_stems: list[Optional[str]] = []
        self._build_function_words()
        self._build_content_words(rng)
        self._build_homographs(rng)
        self._compact_forms()
        self._build_surfaces(rng)
        self._choose_heldout_groups(rng)
        # Hot-path lookups for linearisation.
        self.head_final = {lang: config.language_spec(lang).head_final for lang in LANGUAGES}
        self.upos = [x.upos for x in self.lexemes]
        self.by_role: dict[str, tuple[int, ...]] = {}
        for lexeme in self.lexemes:
            key = lexeme.upos if lexeme.role == "content" else lexeme.role
            self.by_role[key] = self.by_role.get(key, ()) + (lexeme.id,)

    # -- construction ------------------------------------------------------------------------------
    def _add(self, upos: str, role: str, english: Optional[str] = None, **fields: int) -> Lexeme:
        lexeme = Lexeme(id=len(self.lexemes), upos=upos, role=role, form=len(self._form_is_content),
                        **fields)
        self.lexemes.append(lexeme)
        self._form_is_content.append(role == "content")
        self._english_function_stems.append(english)
        return lexeme

    def _build_function_words(self) -> None:
        for upos, role, words in _FUNCTION_WORDS:
            for word in words:
                self._add(upos, role, english=word)
        for _ in range(self.config.proper_nouns):
            self._add("PROPN", "propn")

    def _new_cluster(self, upos: str, field: int, domain: int, antonym: int = -1,
                     polarity: int = 0) -> None:
        cluster = len(self.clusters)
        ids = []
        for _ in range(self.config.cluster_size):
            ids.append(self._add(upos, "content", cluster=cluster, field=field, group=self.n_groups,
                                 antonym=antonym, polarity=polarity, domain=domain).id)
            self.n_groups += 1
        self.clusters.append(tuple(ids))

    def _build_content_words(self, rng: random.Random) -> None:
        field, self.n_groups = 0, 0
        for k in range(self.config.noun_clusters):
            self._new_cluster("NOUN", field, domain=k % 2)
            field += 1
        for upos, pairs in (("VERB", self.config.verb_pairs), ("ADJ", self.config.adj_pairs),
                            ("ADV", self.config.adv_pairs)):
            for k in range(pairs):
                first = len(self.clusters)
                self._new_cluster(upos, field, k % 2, antonym=first + 1, polarity=+1)
                self._new_cluster(upos, field, k % 2, antonym=first, polarity=-1)
                field += 1
        self.n_fields = field

    def _build_homographs(self, rng: random.Random) -> None:
        """Give some verbs the written form of a noun, so their tag depends on context."""
        nouns = [x.id for x in self.lexemes if x.upos == "NOUN"]
        verbs = [x.id for x in self.lexemes if x.upos == "VERB"]
        count = min(self.config.homographs, len(nouns), len(verbs))
        for noun, verb in zip(rng.sample(nouns, count), rng.sample(verbs, count)):
            self.lexemes[verb] = dataclasses.replace(self.lexemes[verb], form=self.lexemes[noun].form)

    def _compact_forms(self) -> None:
        """Renumber forms 0..n-1 so the verbs' forms orphaned by homograph merging disappear."""
        used = sorted({x.form for x in self.lexemes})
        new_index = {old: new for new, old in enumerate(used)}
        self._form_is_content = [self._form_is_content[f] for f in used]
        self._english_function_stems = [self._english_function_stems[f] for f in used]
        self.lexemes = [dataclasses.replace(x, form=new_index[x.form]) for x in self.lexemes]
        owners: dict[int, set[str]] = {}
        for x in self.lexemes:
            owners.setdefault(x.form, set()).add(x.upos)
        self.homograph_forms = frozenset(f for f, classes in owners.items() if len(classes) > 1)

    def _build_surfaces(self, rng: random.Random) -> None:
        n_forms = len(self._form_is_content)
        english = self._english_stems(rng, n_forms)
        self.stems: dict[str, list[str]] = {"en": english}
        self.shared: dict[str, list[bool]] = {"en": [True] * n_forms}
        english_set = set(english)
        for lang in NON_ENGLISH:
            spec = self.config.language_spec(lang)
            n_shared = round(spec.shared_stem_fraction * n_forms)
            shared = set(rng.sample(range(n_forms), n_shared))
            stems: list[str] = []
            taken = {english[f] for f in shared}
            for form in range(n_forms):
                if form in shared:
                    stems.append(english[form])
                    continue
                syllables = 1 if not self._form_is_content[form] else rng.choice((2, 2, 3))
                stem = _make_word(rng, lang, syllables)
                # Never reuse an English stem: a non-shared stem must not look shared.
                while stem in taken or stem in english_set:
                    stem = _make_word(rng, lang, syllables)
                taken.add(stem)
                stems.append(stem)
            self.stems[lang] = stems
            self.shared[lang] = [form in shared for form in range(n_forms)]
        self.surfaces: dict[str, list[str]] = {}
        self._lookup: dict[str, dict[str, tuple[int, ...]]] = {}
        for lang in LANGUAGES:
            suffix = self.config.language_spec(lang).suffix
            forms = [stem + suffix if self._form_is_content[f] else stem
                     for f, stem in enumerate(self.stems[lang])]
            if len(set(forms)) != n_forms:
                raise AssertionError(f"surface forms of {lang} collide")  # guarded by `taken`
            self.surfaces[lang] = [forms[x.form] for x in self.lexemes]
            lookup: dict[str, tuple[int, ...]] = {}
            for x in self.lexemes:
                lookup[forms[x.form]] = lookup.get(forms[x.form], ()) + (x.id,)
            self._lookup[lang] = lookup

    def _english_stems(self, rng: random.Random, n_forms: int) -> list[str]:
        stems: list[Optional[str]] = list(self._english_function_stems)
        taken = {s for s in stems if s is not None}
        for form in range(n_forms):
            if stems[form] is None:
                stem = _make_word(rng, "en", rng.choice((2, 2, 3)))
                while stem in taken:
                    stem = _make_word(rng, "en", rng.choice((2, 2, 3)))
                taken.add(stem)
                stems[form] = stem
        return [s for s in stems if s is not None]

    def _choose_heldout_groups(self, rng: random.Random) -> None:
        """Hold out part of every synonym cluster (a group is one content lexeme), so every cluster
        and polarity keeps seen members in target training, and at least two of them (a synonym)."""
        heldout: set[int] = set()
        for members in self.clusters:
            groups = [self.lexemes[i].group for i in members]
            n_out = min(len(groups) - 2, round(self.config.target_train_heldout_fraction * len(groups)))
            heldout.update(rng.sample(groups, max(n_out, 0)))
        self.heldout_groups = frozenset(heldout)
        self.seen_groups = frozenset(range(self.n_groups)) - self.heldout_groups

    # -- queries -----------------------------------------------------------------------------------
    def surface(self, lexeme_id: int, language: str) -> str:
        return self.surfaces[language][lexeme_id]

    def lookup(self, word: str, language: str) -> tuple[int, ...]:
        """Lexeme ids written as ``word`` in ``language`` (two for a noun/verb homograph)."""
        return self._lookup[language].get(word, ())

    def shares_stem(self, lexeme_id: int, language: str) -> bool:
        return self.shared[language][self.lexemes[lexeme_id].form]

    def shared_fraction(self, language: str) -> float:
        """Fraction of written forms whose stem ``language`` shares with English."""
        flags = self.shared[language]
        return sum(flags) / len(flags)

    def __len__(self) -> int:
        return len(self.lexemes)


@functools.lru_cache(maxsize=16)
def lexicon(seed: int = 0, config: Optional[MicroBenchConfig] = None) -> Lexicon:
    """The latent lexicon shared by every task and language for this seed."""
    return Lexicon(seed, config or _DEFAULT_CONFIG)


# --------------------------------------------------------------------------------------------------
# Latent clauses and their sampler
# --------------------------------------------------------------------------------------------------


class NP(NamedTuple):  # NamedTuples: created by the hundred thousand, and cheap to copy/compare
    head: int
    det: Optional[int] = None
    num: Optional[int] = None
    adjs: tuple[int, ...] = ()


class Clause(NamedTuple):
    """SUBJ [AUX] [ADV] VERB OBJ [PP] [ADV] in English order; languages linearise it their way."""

    subj: NP
    verb: int
    obj: NP
    aux: Optional[int] = None
    adv: Optional[int] = None
    adv_pre: bool = False                 # pre-verbal adverb (inside the VP) in head-initial order
    pp: Optional[tuple[int, NP]] = None   # (adposition, noun phrase)


Path = tuple  # addresses a content word: ("verb",), ("adv",), (np_slot, "head"), (np_slot, "adj", i)


def _np_at(clause: Clause, slot: str) -> Optional[NP]:
    if slot == "pp":
        return clause.pp[1] if clause.pp else None
    return getattr(clause, slot)


def _with_np(clause: Clause, slot: str, np: NP) -> Clause:
    if slot == "pp":
        assert clause.pp is not None
        return clause._replace(pp=(clause.pp[0], np))
    return clause._replace(**{slot: np})


def _get(clause: Clause, path: Path) -> int:
    if path[0] in ("verb", "adv"):
        return getattr(clause, path[0])
    np = _np_at(clause, path[0])
    return np.head if path[1] == "head" else np.adjs[path[2]]


def _set(clause: Clause, path: Path, lexeme_id: int) -> Clause:
    if path[0] in ("verb", "adv"):
        return clause._replace(**{path[0]: lexeme_id})
    np = _np_at(clause, path[0])
    if path[1] == "head":
        return _with_np(clause, path[0], np._replace(head=lexeme_id))
    adjs = list(np.adjs)
    adjs[path[2]] = lexeme_id
    return _with_np(clause, path[0], np._replace(adjs=tuple(adjs)))


def _content_paths(clause: Clause, lex: Lexicon) -> list[Path]:
    paths: list[Path] = []
    for slot in ("subj", "obj", "pp"):
        np = _np_at(clause, slot)
        if np is None:
            continue
        if lex.lexemes[np.head].role == "content":
            paths.append((slot, "head"))
        paths.extend((slot, "adj", i) for i in range(len(np.adjs)))
    paths.append(("verb",))
    if clause.adv is not None:
        paths.append(("adv",))
    return paths


def _fields(clause: Clause, lex: Lexicon) -> list[int]:
    return [lex.lexemes[_get(clause, p)].field for p in _content_paths(clause, lex)]


def _fields_distinct(clause: Clause, lex: Lexicon) -> bool:
    fields = _fields(clause, lex)
    return len(fields) == len(set(fields))


def _np_length(np: NP) -> int:
    return 1 + (np.det is not None) + (np.num is not None) + len(np.adjs)


def clause_length(clause: Clause) -> int:
    """Number of tokens, final punctuation included (the same in every language)."""
    n = _np_length(clause.subj) + 1 + _np_length(clause.obj) + 1
    n += (clause.aux is not None) + (clause.adv is not None)
    if clause.pp is not None:
        n += 1 + _np_length(clause.pp[1])
    return n


# Modifier probabilities: every syntactic task and the tagging target use _FULL clauses.
_FULL = {"adj": 0.5, "aux": 0.25, "adv": 0.3, "pp": 0.35}
_LIGHT = {"adj": 0.3, "aux": 0.15, "adv": 0.2, "pp": 0.15}


class _Sampler:
    """Draws latent material from a lexicon, optionally restricted to a set of groups."""

    def __init__(self, lex: Lexicon, rng: random.Random, groups: Optional[frozenset[int]] = None):
        self.lex, self.rng, self.cfg = lex, rng, lex.config
        allowed = groups if groups is not None else frozenset(range(lex.n_groups))
        self.allowed = allowed
        self.content = {u: [i for i in lex.by_role[u] if lex.lexemes[i].group in allowed]
                        for u in CONTENT_UPOS}
        # Per cluster, its allowed members: synonyms and antonyms never leave the allowed lexicon.
        self.members = [tuple(i for i in ids if lex.lexemes[i].group in allowed)
                        for ids in lex.clusters]

    def function(self, role: str) -> int:
        return self.rng.choice(self.lex.by_role[role])

    def word(self, upos: str, used: set[int],
             accept: Optional[Callable[[Lexeme], bool]] = None) -> Optional[int]:
        """An allowed content word of class ``upos`` from a field not in ``used`` (None if none)."""
        lexemes, candidates = self.lex.lexemes, self.content[upos]
        for _ in range(20):  # rejection sampling: exclusions are few, so this nearly always hits
            x = lexemes[self.rng.choice(candidates)]
            if x.field not in used and (accept is None or accept(x)):
                return x.id
        pool = [i for i in candidates if lexemes[i].field not in used
                and (accept is None or accept(lexemes[i]))]
        return self.rng.choice(pool) if pool else None

    def _take(self, upos: str, used: set[int]) -> int:
        choice = self.word(upos, used)
        if choice is None:
            raise ValueError(f"lexicon too small: no free {upos} field left; enlarge the config")
        used.add(self.lex.lexemes[choice].field)
        return choice

    def noun_phrase(self, used: set[int], max_adjs: int = 2, proper_ok: bool = False,
                    pronoun_ok: bool = False, bare_ok: bool = False, adj_prob: float = 0.5) -> NP:
        r = self.rng.random()
        if pronoun_ok and r < 0.1:
            return NP(head=self.function("pron"))
        if proper_ok and r < 0.2:
            return NP(head=self.function("propn"))
        head = self._take("NOUN", used)
        # Mostly a determiner, sometimes a numeral; bare (determiner-less) NPs only where allowed,
        # so objects always open with a function word and clauses stay >= 5 tokens.
        r = self.rng.random()
        det = num = None
        if r < 0.75:
            det = self.function("det")
        elif r < 0.9 or not bare_ok:
            num = self.function("num")
        r = self.rng.random()  # 0, 1 or 2 adjectives (0.5, 0.35, 0.15 with the default adj_prob)
        n_adjs = 0 if r >= adj_prob else 2 if r < 0.3 * adj_prob else 1
        adjs = tuple(self._take("ADJ", used) for _ in range(min(n_adjs, max_adjs)))
        return NP(head=head, det=det, num=num, adjs=adjs)

    def prepositional(self, used: set[int], adj_prob: float = 0.5) -> tuple[int, NP]:
        return self.function("adp"), self.noun_phrase(used, max_adjs=1, proper_ok=True, bare_ok=True,
                                                      adj_prob=adj_prob)

    def clause(self, common_subject: bool = False, light: bool = False,
               biased: bool = False) -> Clause:
        """A random clause; ``common_subject`` rules out pronoun/name subjects (QA, choice);
        ``light`` makes modifiers rarer (the semantic tasks: shorter inputs, fewer words to relate)."""
        used: set[int] = set()
        p = _LIGHT if light else _FULL
        subj = self.noun_phrase(used, proper_ok=not common_subject, pronoun_ok=not common_subject,
                                bare_ok=True, adj_prob=p["adj"])
        if biased:  # mostly the unmarked pole (+1) of a domain-0 field: see PairExample
            bias = self.cfg.premise_bias
            pol = 1 if self.rng.random() < bias else -1
            dom = 0 if self.rng.random() < bias else 1
            verb = self.word("VERB", used, accept=lambda x: x.polarity == pol and x.domain == dom)
            used.add(self.lex.lexemes[verb].field)
        else:
            verb = self._take("VERB", used)
        obj = self.noun_phrase(used, adj_prob=p["adj"])  # always DET/NUM + noun: clauses >= 5 tokens
        aux = self.function("aux") if self.rng.random() < p["aux"] else None
        adv = self._take("ADV", used) if self.rng.random() < p["adv"] else None
        pp = self.prepositional(used, p["adj"]) if self.rng.random() < p["pp"] else None
        clause = Clause(subj=subj, verb=verb, obj=obj, aux=aux, adv=adv,
                        adv_pre=adv is not None and self.rng.random() < 0.5, pp=pp)
        return self._fit(clause)

    def _fit(self, clause: Clause) -> Clause:
        """Drop modifiers until the clause fits max_sentence_tokens."""
        while clause_length(clause) > self.cfg.max_sentence_tokens:
            drops = _droppable(clause)
            clause = _drop(clause, drops[-1])
        return clause

    def synonym(self, lexeme_id: int, prob: float = 1.0) -> int:
        """With probability ``prob``, another member of the lexeme's synonym cluster."""
        lexeme = self.lex.lexemes[lexeme_id]
        if lexeme.cluster < 0 or self.rng.random() >= prob:
            return lexeme_id
        return self.rng.choice([i for i in self.members[lexeme.cluster] if i != lexeme_id])

    def antonym(self, lexeme_id: int) -> int:
        return self.rng.choice(self.members[self.lex.lexemes[lexeme_id].antonym])

    def resynonym(self, clause: Clause, force_one: bool = False) -> Clause:
        """Swap content words for synonyms (meaning kept); ``force_one`` guarantees a change."""
        paths = _content_paths(clause, self.lex)
        out = clause
        for path in paths:
            out = _set(out, path, self.synonym(_get(out, path), self.cfg.synonym_swap_prob))
        if force_one and out == clause:
            path = self.rng.choice(paths)
            out = _set(out, path, self.synonym(_get(out, path)))
        return out


def _droppable(clause: Clause) -> list[Path]:
    """Modifiers whose removal keeps the clause grammatical and its core meaning entailed."""
    paths: list[Path] = []
    for slot in ("subj", "obj", "pp"):
        np = _np_at(clause, slot)
        if np is not None:
            paths.extend((slot, "adj", i) for i in range(len(np.adjs)))
    if clause.adv is not None:
        paths.append(("adv",))
    if clause.pp is not None:
        paths.append(("pp",))
    return paths


def _drop(clause: Clause, path: Path) -> Clause:
    if path == ("adv",):
        return clause._replace(adv=None, adv_pre=False)
    if path == ("pp",):
        return clause._replace(pp=None)
    np = _np_at(clause, path[0])
    adjs = np.adjs[:path[2]] + np.adjs[path[2] + 1:]
    return _with_np(clause, path[0], np._replace(adjs=adjs))


# --------------------------------------------------------------------------------------------------
# Linearisation: latent clause -> tokens with every tag, in one language
# --------------------------------------------------------------------------------------------------


class Tok(NamedTuple):
    lexeme: int   # -1 for punctuation
    text: str
    upos: str
    ptb: str
    chunk: str
    deprel: str
    slot: str     # constituent: subj, vp, obj, pp, adv, punct (answer spans are read from it)


def _punct(mark: str) -> Tok:
    return Tok(-1, mark, "PUNCT", ".", "O", "punct", "punct")


def _tok(lex: Lexicon, lang: str, lexeme_id: int, ptb: str, chunk: str, deprel: str, slot: str) -> Tok:
    return Tok(lexeme_id, lex.surfaces[lang][lexeme_id], lex.upos[lexeme_id], ptb, chunk, deprel, slot)


def _chunked(parts: list[tuple[int, str, str]], phrase: str, lex: Lexicon, lang: str,
             slot: str) -> list[Tok]:
    """Tokens of one chunk: B- on the first, I- on the rest (CoNLL-2000 BIO)."""
    surfaces, upos = lex.surfaces[lang], lex.upos
    begin, inside = "B-" + phrase, "I-" + phrase
    return [Tok(i, surfaces[i], upos[i], ptb, inside if k else begin, deprel, slot)
            for k, (i, ptb, deprel) in enumerate(parts)]


def _np_tokens(np: NP, role: str, slot: str, lex: Lexicon, lang: str) -> list[Tok]:
    head = lex.lexemes[np.head]
    if head.upos in ("PRON", "PROPN"):
        return _chunked([(np.head, "PRP" if head.upos == "PRON" else "NNP", role)], "NP", lex, lang,
                        slot)
    front = [(np.det, "DT", "det")] if np.det is not None else []
    front += [(np.num, "CD", "nummod")] if np.num is not None else []
    adjs = [(a, "JJ", "amod") for a in np.adjs]
    noun = [(np.head, "NNS" if np.num is not None else "NN", role)]
    body = noun + adjs if lex.head_final[lang] else adjs + noun
    return _chunked(front + body, "NP", lex, lang, slot)


def _pp_tokens(pp: tuple[int, NP], lex: Lexicon, lang: str) -> list[Tok]:
    adp = _tok(lex, lang, pp[0], "IN", "B-PP", "case", "pp")
    np = _np_tokens(pp[1], "obl", "pp", lex, lang)
    return np + [adp] if lex.head_final[lang] else [adp] + np


def _vp_tokens(clause: Clause, lex: Lexicon, lang: str) -> list[Tok]:
    head_final = lex.head_final[lang]
    aux = [(clause.aux, "MD", "aux")] if clause.aux is not None else []
    adv = ([(clause.adv, "RB", "advmod")]
           if clause.adv is not None and (clause.adv_pre or head_final) else [])
    verb = [(clause.verb, "VB" if aux else "VBD", "root")]
    parts = adv + verb + aux if head_final else aux + adv + verb
    return _chunked(parts, "VP", lex, lang, "vp")


def linearize(clause: Clause, lex: Lexicon, lang: str) -> list[Tok]:
    """Tokens of a declarative clause in ``lang``; every tag depends on class and constituent only."""
    subj = _np_tokens(clause.subj, "nsubj", "subj", lex, lang)
    obj = _np_tokens(clause.obj, "obj", "obj", lex, lang)
    pp = _pp_tokens(clause.pp, lex, lang) if clause.pp is not None else []
    vp = _vp_tokens(clause, lex, lang)
    if lex.head_final[lang]:
        return subj + pp + obj + vp + [_punct(".")]
    post = ([_tok(lex, lang, clause.adv, "RB", "B-ADVP", "advmod", "adv")]
            if clause.adv is not None and not clause.adv_pre else [])
    return subj + vp + obj + pp + post + [_punct(".")]


class Question(NamedTuple):
    kind: str                   # "what" (asks the object), "who" (subject), "where" (the PP)
    verb: int
    subj: Optional[NP] = None
    obj: Optional[NP] = None


ANSWER_SLOT = {"what": "obj", "who": "subj", "where": "pp"}


def _question_tokens(q: Question, lex: Lexicon, lang: str) -> list[Tok]:
    def word(role: str) -> Tok:
        return _tok(lex, lang, lex.by_role[role][0], "WP", "O", "root", "q")

    wh, did = word("wh_" + q.kind), word("aux_q")
    verb = _tok(lex, lang, q.verb, "VB", "B-VP", "root", "q")
    subj = _np_tokens(q.subj, "nsubj", "q", lex, lang) if q.subj else []
    obj = _np_tokens(q.obj, "obj", "q", lex, lang) if q.obj else []
    if lex.head_final[lang]:  # wh-in-situ, verb-final
        body = {"what": subj + [wh, verb, did], "who": [wh] + obj + [verb],
                "where": subj + [wh] + obj + [verb, did]}[q.kind]
    else:
        body = {"what": [wh, did] + subj + [verb], "who": [wh, verb] + obj,
                "where": [wh, did] + subj + [verb] + obj}[q.kind]
    return body + [_punct("?")]


def _text(toks: list[Tok]) -> str:
    return " ".join(t.text for t in toks)


def _ids(toks: list[Tok]) -> list[int]:
    return [t.lexeme for t in toks]


# --------------------------------------------------------------------------------------------------
# Latent examples per task family
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairExample:
    premise: Clause
    hypothesis: Clause
    label: int          # index into NLI_NAMES, or 0/1 for paraphrase
    edit: str           # the edit that decides the label


@dataclass(frozen=True)
class QAExample:
    clauses: tuple[Clause, ...]
    answer_clause: int
    question: Question


@dataclass(frozen=True)
class ChoiceExample:
    context: Clause
    mention: NP                    # ctx_b: the subject mentioned again through a synonym
    endings: tuple[Clause, ...]    # clauses whose subject is `mention`
    label: int
    kinds: tuple[str, ...]         # per ending: "match", "wrong_polarity", "wrong_object", "neither"


def _balanced_labels(rng: random.Random, n: int, n_labels: int) -> list[int]:
    labels = [i % n_labels for i in range(n)]
    rng.shuffle(labels)
    return labels


def _verb_edit(s: _Sampler, clause: Clause, premise: Clause, relation: str) -> Optional[Clause]:
    """The edit that decides a pair label, always made on the verb, relative to the premise's verb:
    a synonym (same cluster), its antonym (same field and domain, opposite polarity), or an
    unrelated verb (a field of the other domain, so neither synonym nor antonym)."""
    old = s.lex.lexemes[premise.verb]
    if relation == "synonym":
        new: Optional[int] = s.synonym(old.id)
    elif relation == "antonym":
        new = s.antonym(old.id)
    else:
        new = s.word("VERB", set(_fields(premise, s.lex)), accept=lambda x: x.domain != old.domain)
    return None if new is None else clause._replace(verb=new)


def _add_modifier(s: _Sampler, clause: Clause, premise_fields: set[int]) -> Optional[Clause]:
    """Add a new adjective or adverb: the premise says nothing about it, hence neutral."""
    if clause_length(clause) >= s.cfg.max_sentence_tokens:
        return None
    options = [slot for slot in ("subj", "obj", "pp") if _np_at(clause, slot) is not None
               and s.lex.lexemes[_np_at(clause, slot).head].role == "content"
               and len(_np_at(clause, slot).adjs) < 2]
    if clause.adv is None:
        options.append("adv")
    s.rng.shuffle(options)
    for slot in options:
        new = s.word("ADV" if slot == "adv" else "ADJ", premise_fields)
        if new is None:
            continue
        if slot == "adv":
            return clause._replace(adv=new, adv_pre=s.rng.random() < 0.5)
        np = _np_at(clause, slot)
        return _with_np(clause, slot, np._replace(adjs=np.adjs + (new,)))
    return None


def _nli_example(s: _Sampler, label: int) -> PairExample:
    wanted = NLI_NAMES[label]
    return _entailment_pair(s, [e for e, name in NLI_EDIT_LABEL.items() if name == wanted], label)


def _rte_example(s: _Sampler, label: int) -> PairExample:
    """Two-way entailment (RTE): the NLI edits, with neutral and contradiction merged."""
    wanted = NLI_NAMES[0]
    edits = [e for e, name in NLI_EDIT_LABEL.items() if (name == wanted) == (label == 0)]
    return _entailment_pair(s, edits, label)


def _entailment_pair(s: _Sampler, edits: list[str], label: int) -> PairExample:
    """A premise and a hypothesis made from it by one of ``edits`` (see NLI_EDIT_LABEL)."""
    for _ in range(200):
        premise = s.clause(light=True, biased=True)
        used = set(_fields(premise, s.lex))
        # Label-preserving noise: synonym swaps, and dropping a modifier (keeps E, N and C as they
        # are, and keeps hypothesis length from giving the label away).
        hyp = s.resynonym(premise)
        if s.rng.random() < 0.15 and _droppable(hyp):
            hyp = _drop(hyp, s.rng.choice(_droppable(hyp)))
        edit = s.rng.choices(edits, [s.cfg.add_edit_weight if e == "add" else 1.0 for e in edits])[0]
        if edit == "drop":
            new = _drop(hyp, s.rng.choice(_droppable(hyp))) if _droppable(hyp) else None
        elif edit == "add":
            new = _add_modifier(s, hyp, used)
        else:
            new = _verb_edit(s, hyp, premise, edit)
        if new is not None and new != premise:
            return PairExample(premise, new, label, edit)
    raise RuntimeError("could not build an entailment example; the lexicon is too small")


def _para_example(s: _Sampler, label: int) -> PairExample:
    for _ in range(200):
        first = s.clause(light=True, biased=True)
        edit = "synonym" if label == 1 else s.rng.choice(("antonym", "unrelated"))
        second = _verb_edit(s, s.resynonym(first), first, edit)
        if second is not None:
            return PairExample(first, second, label, edit)
    raise RuntimeError("could not build a paraphrase example; the lexicon is too small")


def _qa_key(clause: Clause, kind: str, lex: Lexicon) -> tuple[int, int]:
    """The clusters a question names: subject+verb (what/where) or verb+object (who)."""
    cluster = lambda i: lex.lexemes[i].cluster  # noqa: E731
    if kind == "who":
        return cluster(clause.verb), cluster(clause.obj.head)
    return cluster(clause.subj.head), cluster(clause.verb)


def _qa_distractor(s: _Sampler, target: Clause, kind: str, share: int) -> Optional[Clause]:
    """A clause sharing one of the two clusters the question names, never both."""
    key_paths = [("verb",), ("obj", "head")] if kind == "who" else [("subj", "head"), ("verb",)]
    shared, other = key_paths[share], key_paths[1 - share]
    clause = s.clause(common_subject=True, light=True)
    clause = _set(clause, shared, s.synonym(_get(target, shared), 0.5))
    if other == ("verb",) and s.rng.random() < 0.5:  # the hardest distractor: the antonym verb
        clause = _set(clause, other, s.antonym(target.verb))
    if not _fields_distinct(clause, s.lex):
        return None
    return clause


def _qa_example(s: _Sampler) -> QAExample:
    lex = s.lex
    kind = s.rng.choice(("what", "who", "where"))
    target = s.clause(common_subject=True, light=True)
    if kind == "where" and target.pp is None:
        used = set(_fields(target, lex))
        target = s._fit(target._replace(pp=s.prepositional(used)))
        if target.pp is None:  # _fit may drop it again; fall back to an object question
            kind = "what"
    key = _qa_key(target, kind, lex)
    clauses = [target]
    while len(clauses) < s.cfg.qa_context_clauses:
        share = len(clauses) - 1
        d = (_qa_distractor(s, target, kind, share) if share < 2
             else s.clause(common_subject=True, light=True))
        if d is not None and _qa_key(d, kind, lex) != key:
            clauses.append(d)
    order = list(range(len(clauses)))
    s.rng.shuffle(order)
    p = s.cfg.question_synonym_prob

    def mention(np: NP) -> NP:
        """The question names its clause through synonyms; adjectives are sometimes left out."""
        adjs = tuple(s.synonym(a, p) for a in np.adjs) if s.rng.random() < 0.5 else ()
        return np._replace(head=s.synonym(np.head, p), adjs=adjs)

    verb = s.synonym(target.verb, p)
    if kind == "who":
        question = Question(kind, verb, obj=mention(target.obj))
    elif kind == "what":
        question = Question(kind, verb, subj=mention(target.subj))
    else:
        question = Question(kind, verb, subj=mention(target.subj), obj=mention(target.obj))
    return QAExample(tuple(clauses[i] for i in order), order.index(0), question)


def _choice_example(s: _Sampler, label: int) -> ChoiceExample:
    lex = s.lex
    context = s.clause(common_subject=True, light=True, biased=True)
    used = set(_fields(context, lex))
    polarity = lex.lexemes[context.verb].polarity
    subj = context.subj
    mention = NP(head=s.synonym(subj.head), det=subj.det if subj.det is not None else s.function("det"))
    endings: dict[str, Clause] = {}
    for kind, same_object, same_polarity in (("match", True, True), ("wrong_polarity", True, False),
                                             ("wrong_object", False, True), ("neither", False, False)):
        want = polarity if same_polarity else -polarity
        verb = s.word("VERB", set(), accept=lambda x, want=want: x.polarity == want)
        head = s.synonym(context.obj.head) if same_object else s.word("NOUN", used)
        endings[kind] = Clause(subj=mention, verb=verb, obj=NP(head=head, det=s.function("det")))
    others = ["wrong_polarity", "wrong_object", "neither"]
    s.rng.shuffle(others)
    kinds = others[:label] + ["match"] + others[label:]
    return ChoiceExample(context, mention, tuple(endings[k] for k in kinds), label, tuple(kinds))


# --------------------------------------------------------------------------------------------------
# Task registry: splits, languages, generation
# --------------------------------------------------------------------------------------------------

_FAMILY = {"mb_chunk": "clause", "mb_deprel": "clause", "mb_xpos": "clause", "mb_depth": "clause",
           "mb_ccg": "clause", "mb_semtag": "clause",
           "mb_udpos": "clause", "mb_tatoeba": "clause", "mb_para": "para", "mb_entail": "rte",
           "mb_xnli": "nli", "mb_qa": "qa", "mb_xquad": "qa", "mb_choice": "choice"}


def languages(name: str) -> tuple[str, ...]:
    """Languages a task exists in."""
    _check_choice("task", name, TASK_NAMES)
    if name in INTERMEDIATE_TASKS:
        return ("en",)
    return NON_ENGLISH if name == "mb_tatoeba" else LANGUAGES


def splits(name: str, language: str) -> tuple[str, ...]:
    """Splits that exist for a task in a language."""
    _check_choice("task", name, TASK_NAMES)
    if name == "mb_tatoeba" and language == "en":
        raise ValueError("mb_tatoeba has no 'en' side: English is the target side of every pair; "
                         f"valid languages: {', '.join(NON_ENGLISH)}")
    _check_choice(f"language for {name}", language, languages(name))
    if name in INTERMEDIATE_TASKS:
        return ("train", "validation")
    if language == "en":
        return ("train", "validation", "test")
    return ("validation", "test")


def _size(name: str, split: str, cfg: MicroBenchConfig) -> int:
    if name == "mb_tatoeba":
        return cfg.tatoeba_size
    if name in INTERMEDIATE_TASKS:
        return cfg.intermediate_train_size if split == "train" else cfg.intermediate_validation_size
    if split != "train":
        return cfg.target_eval_size
    return cfg.nli_target_train_size if name == "mb_xnli" else cfg.target_train_size


@functools.lru_cache(maxsize=64)
@_gc_paused
def _latent_examples(name: str, split: str, seed: int, cfg: MicroBenchConfig) -> tuple:
    """Language-independent examples; the target eval sets are rendered from these in every language."""
    lex = lexicon(seed, cfg)
    rng = _rng("examples", seed, name, split)
    # The planted effect: target training sees only part of the lexicon.
    restricted = name in TARGET_TASKS and split == "train"
    s = _Sampler(lex, rng, lex.seen_groups if restricted else None)
    n = _size(name, split, cfg)
    family = _FAMILY[name]
    if family == "clause":
        return tuple(s.clause() for _ in range(n))
    if family == "qa":
        return tuple(_qa_example(s) for _ in range(n))
    n_labels = {"para": 2, "rte": 2, "nli": 3, "choice": 4}[family]
    make = {"para": _para_example, "rte": _rte_example, "nli": _nli_example,
            "choice": _choice_example}[family]
    return tuple(make(s, label) for label in _balanced_labels(rng, n, n_labels))


def _index_of(names: tuple[str, ...]) -> dict[str, int]:
    return {n: i for i, n in enumerate(names)}


_UPOS_ID, _PTB_ID, _CHUNK_ID, _DEPREL_ID, _DEPTH_ID, _CCG_ID, _SEM_ID = map(_index_of, (
    UPOS_NAMES, PTB_NAMES, CHUNK_NAMES, DEPREL_NAMES, DEPTH_NAMES, CCG_NAMES, SEM_NAMES))


def constituent_depth(tok: Tok) -> str:
    """The token's depth in the clause's constituency tree (DEPTH_NAMES); class and constituent decide it."""
    if tok.slot == "pp":
        depth = 3 if tok.deprel == "case" else 4
    else:
        depth = {"punct": 1, "subj": 2, "vp": 2, "obj": 3, "adv": 3}[tok.slot]
    # An adjective sits in an ADJP inside its noun phrase, a verb-group adverb in an ADVP inside the VP.
    if tok.upos == "ADJ" or (tok.upos == "ADV" and tok.slot == "vp"):
        depth += 1
    return f"D{depth}"


_CCG_OF_DEPREL = {"det": "NP/N", "nummod": "N/N", "amod": "N/N", "case": r"((S\NP)\(S\NP))/NP",
                  "aux": r"(S[dcl]\NP)/(S[b]\NP)", "punct": "."}


def ccg_category(tok: Tok, has_aux: bool) -> str:
    """The token's CCGbank category (CCG_NAMES), for English word order: class and constituent decide it."""
    if tok.deprel in _CCG_OF_DEPREL:
        return _CCG_OF_DEPREL[tok.deprel]
    if tok.deprel == "root":  # a transitive verb, bare after a modal
        return r"(S[b]\NP)/NP" if has_aux else r"(S[dcl]\NP)/NP"
    if tok.deprel == "advmod":  # before the verb it takes the VP as argument, after it it modifies it
        return r"(S\NP)/(S\NP)" if tok.slot == "vp" else r"(S\NP)\(S\NP)"
    return "NP" if tok.upos == "PRON" else "N"  # a noun phrase's head (a name is an N, as in CCGbank)


_SEM_OF_ROLE = {"det": "DEF", "num": "QUC", "adp": "REL", "pron": "PRO", "propn": "NAM", "aux": "MOD"}


def semantic_tag(tok: Tok, lex: Lexicon) -> str:
    """The token's semantic tag (SEM_NAMES): a content word's polarity and domain, never its class."""
    if tok.lexeme < 0:
        return "NIL"
    lexeme = lex.lexemes[tok.lexeme]
    if lexeme.role != "content":
        return _SEM_OF_ROLE[lexeme.role]
    return f"{'NEG' if lexeme.polarity < 0 else 'POS'}{lexeme.domain}"


def _render_qa(ex: QAExample, index: int, name: str, split: str, seed: int, lex: Lexicon,
               lang: str) -> tuple[dict, dict]:
    pieces, offset, start, answer = [], 0, -1, ""
    context_ids: list[int] = []
    for k, clause in enumerate(ex.clauses):
        toks = linearize(clause, lex, lang)
        if k == ex.answer_clause:  # character offset of the answer constituent in the context
            slot = ANSWER_SLOT[ex.question.kind]
            first = next(i for i, t in enumerate(toks) if t.slot == slot)
            span = [t for t in toks if t.slot == slot]
            start = offset + sum(len(t.text) + 1 for t in toks[:first])
            answer = _text(span)
        pieces.append(_text(toks))
        offset += len(pieces[-1]) + 1
        context_ids += _ids(toks)
    q_toks = _question_tokens(ex.question, lex, lang)
    target = ex.clauses[ex.answer_clause]
    row = {
        # Parallel ids across languages, as in XQuAD.
        "id": hashlib.sha256(f"{name}|{split}|{seed}|{index}".encode()).hexdigest()[:24],
        "title": lex.surface(target.subj.head, lang),
        "context": " ".join(pieces),
        "question": _text(q_toks),
        "answers": {"text": [answer], "answer_start": [start]},
    }
    meta = {"context_lexemes": context_ids, "question_lexemes": _ids(q_toks),
            "question_type": ex.question.kind, "answer_clause": ex.answer_clause}
    return row, meta


def _render_choice(ex: ChoiceExample, index: int, split: str, lex: Lexicon) -> tuple[dict, dict]:
    ctx_toks = linearize(ex.context, lex, "en")
    mention = _np_tokens(ex.mention, "nsubj", "subj", lex, "en")
    ending_toks = [[t for t in linearize(c, lex, "en") if t.slot != "subj"] for c in ex.endings]
    ctx_a, ctx_b = _text(ctx_toks), _text(mention)
    row = {"ind": index, "activity_label": lex.surface(ex.context.subj.head, "en").capitalize(),
           "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": f"{ctx_a} {ctx_b}",
           "endings": [_text(t) for t in ending_toks], "source_id": f"microbench~{split}~{index}",
           "split": "val" if split == "validation" else split, "split_type": "indomain",
           "label": str(ex.label)}
    meta = {"context_lexemes": _ids(ctx_toks), "mention_lexemes": _ids(mention),
            "ending_lexemes": [_ids(t) for t in ending_toks], "ending_kinds": list(ex.kinds)}
    return row, meta


def _render(name: str, ex: Any, index: int, split: str, seed: int, lex: Lexicon,
            lang: str) -> tuple[dict, dict]:
    """One hub-schema row plus its latent record (lexeme id behind every token)."""
    if _FAMILY[name] == "clause" and name != "mb_tatoeba":  # the tagging tasks, on one clause each
        toks = linearize(ex, lex, lang)
        row: dict[str, Any] = {"tokens": [t.text for t in toks]}
        if name == "mb_chunk":
            row = {"id": str(index), **row, "pos_tags": [_PTB_ID[t.ptb] for t in toks],
                   "chunk_tags": [_CHUNK_ID[t.chunk] for t in toks]}
        elif name == "mb_deprel":
            row = {"id": str(index), **row, "deprel_tags": [_DEPREL_ID[t.deprel] for t in toks]}
        elif name == "mb_xpos":
            row = {"id": str(index), **row, "xpos_tags": [_PTB_ID[t.ptb] for t in toks]}
        elif name == "mb_depth":
            row = {"id": str(index), **row, "depth_tags": [_DEPTH_ID[constituent_depth(t)] for t in toks]}
        elif name == "mb_ccg":
            row = {"id": str(index), **row,
                   "ccg_tags": [_CCG_ID[ccg_category(t, ex.aux is not None)] for t in toks]}
        elif name == "mb_semtag":
            row = {"id": str(index), **row, "sem_tags": [_SEM_ID[semantic_tag(t, lex)] for t in toks]}
        else:
            row["pos_tags"] = [_UPOS_ID[t.upos] for t in toks]
        return row, {"lexemes": _ids(toks)}
    if name == "mb_tatoeba":
        source, target = linearize(ex, lex, lang), linearize(ex, lex, "en")
        return ({"source_sentence": _text(source), "target_sentence": _text(target),
                 "source_lang": lang, "target_lang": "en"},
                {"source_lexemes": _ids(source), "target_lexemes": _ids(target)})
    if name in ("mb_xnli", "mb_para", "mb_entail"):
        first, second = linearize(ex.premise, lex, lang), linearize(ex.hypothesis, lex, lang)
        meta = {"premise_lexemes": _ids(first), "hypothesis_lexemes": _ids(second), "edit": ex.edit}
        if name == "mb_xnli":
            return {"premise": _text(first), "hypothesis": _text(second), "label": ex.label}, meta
        if name == "mb_entail":
            return ({"sentence1": _text(first), "sentence2": _text(second), "label": ex.label,
                     "idx": index}, meta)
        return ({"id": index + 1, "sentence1": _text(first), "sentence2": _text(second),
                 "label": ex.label}, meta)
    if name in ("mb_qa", "mb_xquad"):
        return _render_qa(ex, index, name, split, seed, lex, lang)
    return _render_choice(ex, index, split, lex)


def _check_request(name: str, language: str, split: str) -> None:
    _check_choice("split for " + name + "/" + str(language), split, splits(name, language))


@functools.lru_cache(maxsize=128)
@_gc_paused
def _rendered(name: str, language: str, split: str, seed: int,
              cfg: MicroBenchConfig) -> tuple[tuple[dict, dict], ...]:
    lex = lexicon(seed, cfg)
    examples = _latent_examples(name, split, seed, cfg)
    return tuple(_render(name, ex, i, split, seed, lex, language) for i, ex in enumerate(examples))


def load(name: str, language: str, split: str, seed: int = 0,
         config: Optional[MicroBenchConfig] = None) -> datasets.Dataset:
    """One split of one task in one language, as a Dataset with the hub's columns and features."""
    _check_request(name, language, split)
    rows = [row for row, _ in _rendered(name, language, split, seed, config or _DEFAULT_CONFIG)]
    features = FEATURES[name]
    columns = {col: [row[col] for row in rows] for col in features}
    # Rows already hold encoded values (class ids), so build the Arrow table directly: going
    # through Dataset.from_dict would re-encode every label one by one.
    table = InMemoryTable.from_pydict(columns, schema=features.arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))


def latent(name: str, language: str, split: str, seed: int = 0,
           config: Optional[MicroBenchConfig] = None) -> list[dict]:
    """Per example of ``load(...)``: the lexeme id behind every token (-1 for punctuation) of each
    text column, plus task facts (the NLI/paraphrase edit, the QA question type, ending kinds)."""
    _check_request(name, language, split)
    metas = [meta for _, meta in _rendered(name, language, split, seed, config or _DEFAULT_CONFIG)]
    return copy.deepcopy(metas)  # callers must not be able to edit the cache


@_gc_paused
def corpus(seed: int = 0, config: Optional[MicroBenchConfig] = None) -> list[str]:
    """Raw sentences (and some questions) in every language, for training a tokenizer."""
    cfg = config or _DEFAULT_CONFIG
    lex = lexicon(seed, cfg)
    out: list[str] = []
    for lang in LANGUAGES:
        s = _Sampler(lex, _rng("corpus", seed, lang))
        for k in range(cfg.corpus_sentences_per_language):
            if k % 5 == 4:  # questions carry the wh-words and "did"
                ex = _qa_example(s)
                out.append(_text(_question_tokens(ex.question, lex, lang)))
            else:
                out.append(_text(linearize(s.clause(), lex, lang)))
    return out


def clear_cache() -> None:
    """Forget every generated structure (the tests use it to check determinism from scratch)."""
    for cached in (lexicon, _latent_examples, _rendered):
        cached.cache_clear()
