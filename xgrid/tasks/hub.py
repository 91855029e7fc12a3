"""Registry entries of the real tasks: the XTREME / XTREME-R targets and the English intermediate tasks.

Each entry names its hub dataset (or local corpus), the config per language, how split roles map to hub splits,
the columns its format reads, its metric, its XTREME-R group, an approximate English training size
(`train_size`, from the dataset cards) and approximate examples per language of each evaluation split (`eval_size`:
a number, or `{dev, test}`; a mean over languages where they differ, PAN-X's largest); `xgrid.planning.cost` uses
both, and nothing else does. Language lists are XTREME-R's (PAWS-X and BUCC,
dropped by XTREME-R, keep XTREME's). Choices that are not obvious from the data:

* XNLI reads `facebook/xnli` (one config per language; premise, hypothesis and a ClassLabel in MNLI's order:
  entailment, neutral, contradiction) rather than `google/xtreme` `XNLI` (all languages in one config with string
  `gold_label`s): no per-language filtering and no string-to-label table, and the head trained on MNLI
  (`train_task="mnli"`) reads XNLI's labels without translation. Its machine-translated train split is never read.
* XCOPA trains on English COPA (`train_task="copa"`, 400 examples; COPA's dev set is XCOPA's English dev).
  XTREME-R first trains on SIQA and then on COPA: that SIQA step is an intermediate task, so the grid expresses
  it as the `siqa` intermediate (the cell siqa -> xcopa is XTREME-R's recipe; the `none` cell trains on COPA
  only), rather than hiding a second training phase inside the target.
* ANLI+ of X-STILTs (ANLI + MNLI + SNLI) is the multi-task group `{name: anli_plus, tasks: [anli, mnli, snli]}`
  in a search space: the three are trained together with examples-proportional mixing.
* Datasets with no split for a role map another: XQuAD has only a test set (`validation` on the hub); its English
  dev is SQuAD v1.1's dev (the training task's, jiant's default; XQuAD-en's paragraphs come from it). TyDiQA holds
  out every 10th English training example as English dev (see `TydiqaSource`). CoNLL-2000 has no dev: its test
  set selects the intermediate checkpoint. XTREME-R languages missing from `google/xtreme` come from a second hub
  dataset in the same schema: UD-POS lt/pl/ro/uk/wo from `universal_dependencies` (UD 2.7, parquet branch),
  Tatoeba az/lt/pl/ro/te/uk from `mteb/tatoeba-bitext-mining` (LASER's Tatoeba v1, the same 1000 pairs),
  XQuAD ro from `google/xquad`.
* UD English dependency relations keep the universal relation (`nmod:poss` -> `nmod`), as a closed label set.
"""

from __future__ import annotations

from xgrid.data.hub import (DEPREL_LABELS, DropLabel, HubSource, RenameColumns, StripDeprelSubtypes, TydiqaSource,
                            UdToXtremePos)
from xgrid.data.local_corpora import BuccSource, CcgbankSource, MewsliXSource
from xgrid.tasks.spec import TaskSpec

EN = ("en",)
TRAIN_DEV = {"train": "train", "dev": "validation"}
EVAL_ONLY = {"dev": "validation", "test": "test"}

# --- language lists (XTREME-R; google-research/xtreme scripts) ---------------------------------------------------
XNLI_LANGS = ("en", "ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
PAWSX_LANGS = ("en", "de", "es", "fr", "ja", "ko", "zh")
UDPOS_NAMES = {
    "en": "English", "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu", "vi": "Vietnamese",
    "yo": "Yoruba", "zh": "Chinese",
}
# XTREME-R's UD 2.7 additions, absent from google/xtreme (UD 2.5): every treebank of the language, as XTREME.
UDPOS_EXTRA_TREEBANKS = {"lt": "lt_alksnis+lt_hse", "pl": "pl_lfg+pl_pdb+pl_pud", "ro": "ro_nonstandard+ro_rrt+ro_simonero",
                         "uk": "uk_iu", "wo": "wo_wtf"}
UDPOS_LANGS = ("en", *sorted(set(UDPOS_NAMES) - {"en"} | set(UDPOS_EXTRA_TREEBANKS)))
PANX_LANGS = ("en", "ar", "he", "vi", "id", "jv", "ms", "tl", "eu", "ml", "ta", "te", "af", "nl", "de", "el", "bn",
              "hi", "mr", "ur", "fa", "fr", "it", "pt", "es", "bg", "ru", "ja", "ka", "ko", "th", "sw", "yo", "my",
              "zh", "kk", "tr", "et", "fi", "hu", "qu", "pl", "uk", "az", "lt", "pa", "gu", "ro")
XQUAD_LANGS = ("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro")
MLQA_LANGS = ("en", "es", "de", "ar", "hi", "vi", "zh")
TYDIQA_NAMES = {"en": "english", "ar": "arabic", "bn": "bengali", "fi": "finnish", "id": "indonesian", "ko": "korean",
                "ru": "russian", "sw": "swahili", "te": "telugu"}
BUCC_LANGS = ("de", "fr", "ru", "zh")
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa", "et": "est",
    "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind",
    "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
    "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "th": "tha", "tl": "tgl",
    "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
}
# Not in google/xtreme (XTREME-R's additions, and Telugu, which its loader lacks).
TATOEBA_EXTRA_CODES = {"az": "aze", "lt": "lit", "pl": "pol", "ro": "ron", "te": "tel", "uk": "ukr"}
TATOEBA_LANGS = tuple(sorted(TATOEBA_CODES | TATOEBA_EXTRA_CODES))  # source languages; the target is English
XCOPA_LANGS = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
LAREQA_LANGS = ("en", "ar", "de", "el", "es", "hi", "ru", "th", "tr", "vi", "zh")
MEWSLIX_LANGS = ("en", "ar", "de", "es", "fa", "ja", "pl", "ro", "ta", "tr", "uk")

# --- sources shared by several entries ---------------------------------------------------------------------------
MNLI = HubSource("nyu-mll/glue", "mnli", splits={"train": "train", "dev": "validation_matched"})
SQUAD = HubSource("rajpurkar/squad", splits=TRAIN_DEV)
PAWS = HubSource("google-research-datasets/paws", "labeled_final")
COPA = HubSource("aps/super_glue", "copa", splits=TRAIN_DEV)
UD_PARQUET = dict(revision="refs/convert/parquet", data_files="{config}/{split}/*.parquet")
UDPOS_EXTRA = HubSource("universal-dependencies/universal_dependencies", "{code}", codes=UDPOS_EXTRA_TREEBANKS,
                        splits=EVAL_ONLY, transform=UdToXtremePos(), **UD_PARQUET)
UDPOS = HubSource("google/xtreme", "udpos.{code}", codes=UDPOS_NAMES, languages_for={"train": EN},
                  overrides={(lang, role): UDPOS_EXTRA for lang in UDPOS_EXTRA_TREEBANKS for role in ("dev", "test")})
WIKIANN = HubSource("unimelb-nlp/wikiann", "{code}", languages_for={"train": EN})
TATOEBA_EXTRA = HubSource("mteb/tatoeba-bitext-mining", "{code}-eng", codes=TATOEBA_EXTRA_CODES, splits={"test": "test"},
                          transform=RenameColumns((("sentence1", "source_sentence"), ("sentence2", "target_sentence"))))

CLS_PAIR = {"text_a": "premise", "text_b": "hypothesis"}
PAWS_COLUMNS = {"text_a": "sentence1", "text_b": "sentence2"}
COPA_COLUMNS = {"context": ["premise"], "question": "question", "choices": ["choice1", "choice2"]}

INTERMEDIATES: tuple[TaskSpec, ...] = (
    # --- semantic ---
    TaskSpec("mnli", "classification", "semantic", EN, MNLI, "accuracy", "MultiNLI (GLUE): entailment",
             english_data=("multinli",), options={**CLS_PAIR, "train_size": 392_702, "eval_size": 9_815}, chance=100 / 3),
    TaskSpec("anli", "classification", "semantic", EN,
             HubSource("facebook/anli", splits={"train": ("train_r1", "train_r2", "train_r3"),
                                                "dev": ("dev_r1", "dev_r2", "dev_r3")}),
             "accuracy", "Adversarial NLI, rounds 1-3 concatenated (ANLI+ = group with mnli and snli)",
             options={**CLS_PAIR, "train_size": 162_865, "eval_size": 3_200}, chance=100 / 3),
    TaskSpec("snli", "classification", "semantic", EN,
             HubSource("stanfordnlp/snli", splits=TRAIN_DEV, row_filter=DropLabel("label", -1)),
             "accuracy", "Stanford NLI; pairs without a gold label (-1) dropped",
             english_data=("snli",), options={**CLS_PAIR, "train_size": 549_367, "eval_size": 9_842}, chance=100 / 3),
    TaskSpec("qqp", "classification", "semantic", EN, HubSource("nyu-mll/glue", "qqp", splits=TRAIN_DEV), "accuracy",
             "Quora Question Pairs (GLUE): paraphrase",
             options={"text_a": "question1", "text_b": "question2", "train_size": 363_846, "eval_size": 40_430}, chance=50.0),
    TaskSpec("paws", "classification", "semantic", EN, PAWS, "accuracy",
             "PAWS (Wiki, labeled_final): adversarial paraphrase; PAWS-X's English training data",
             english_data=("paws_wiki",), options={**PAWS_COLUMNS, "train_size": 49_401, "eval_size": 8_000}, chance=50.0),
    TaskSpec("squad", "span_qa", "semantic", EN, SQUAD, "f1", "SQuAD v1.1 extractive QA",
             english_data=("squad_v1.1",), options={"train_size": 87_599, "eval_size": 10_570}),
    TaskSpec("squad_v2", "span_qa", "semantic", EN, HubSource("rajpurkar/squad_v2", splits=TRAIN_DEV), "f1",
             "SQuAD v2.0: extractive QA with unanswerable questions (its train set is SQuAD v1.1 train plus "
             "unanswerable questions)", english_data=("squad_v1.1", "squad_v2.0_unanswerable"), options={"version_2": True, "train_size": 130_319, "eval_size": 11_873}),
    TaskSpec("hellaswag", "multiple_choice", "semantic", EN, HubSource("Rowan/hellaswag", splits=TRAIN_DEV), "accuracy",
             "HellaSwag: commonsense sentence completion (4 endings)",
             options={"context": ["ctx"], "choices": "endings", "train_size": 39_905, "eval_size": 10_042}, chance=25.0),
    TaskSpec("commonsenseqa", "multiple_choice", "semantic", EN, HubSource("tau/commonsense_qa", splits=TRAIN_DEV),
             "accuracy", "CommonsenseQA: 5-way multiple-choice questions",
             options={"context": ["question"], "choices": "choices.text", "label": "answerKey",
                      "labels": ["A", "B", "C", "D", "E"], "train_size": 9_741, "eval_size": 1_221}, chance=20.0),
    TaskSpec("cosmosqa", "multiple_choice", "semantic", EN, HubSource("allenai/cosmos_qa", splits=TRAIN_DEV),
             "accuracy", "Cosmos QA: reading comprehension with commonsense (4 answers)",
             options={"context": ["context"], "question": "question",
                      "choices": ["answer0", "answer1", "answer2", "answer3"], "train_size": 25_262, "eval_size": 2_985}, chance=25.0),
    TaskSpec("siqa", "multiple_choice", "semantic", EN, HubSource("allenai/social_i_qa", splits=TRAIN_DEV), "accuracy",
             "Social IQa: social commonsense (3 answers; labels 1-3); XTREME-R's first step before COPA for XCOPA",
             options={"context": ["context"], "question": "question", "choices": ["answerA", "answerB", "answerC"],
                      "label_offset": 1, "train_size": 33_410, "eval_size": 1_954}, chance=100 / 3),
    TaskSpec("copa", "multiple_choice", "semantic", EN, COPA, "accuracy",
             "COPA (SuperGLUE): causal commonsense, 2 choices; XCOPA's English training data",
             english_data=("copa",), options={**COPA_COLUMNS, "train_size": 400, "eval_size": 100}, chance=50.0),
    # --- syntactic ---
    TaskSpec("udpos_en", "tagging", "syntactic", EN, HubSource("google/xtreme", "udpos.English"), "f1",
             "UD English POS tagging (XTREME's udpos.English); UD-POS's own English training data",
             english_data=("ud_english_pos",), options={"tags": "pos_tags", "train_size": 21_253, "eval_size": 2_000}),
    TaskSpec("ud_deprel", "tagging", "syntactic", EN,
             HubSource("universal-dependencies/universal_dependencies", "en_ewt", transform=StripDeprelSubtypes(),
                       **UD_PARQUET),
             "accuracy", "UD English-EWT dependency relation of each word to its head (universal relations)",
             options={"tags": "deprel", "labels": list(DEPREL_LABELS), "train_size": 12_543, "eval_size": 2_001}),
    TaskSpec("chunk", "tagging", "syntactic", EN,
             HubSource("eriktks/conll2000", splits={"train": "train", "dev": "test"}), "f1",
             "CoNLL-2000 chunking (no dev split: the test set selects the checkpoint)",
             options={"tags": "chunk_tags", "train_size": 8_937, "eval_size": 2_012}),
    TaskSpec("ccg", "tagging", "syntactic", EN, CcgbankSource(), "accuracy",
             "CCG supertagging from a local CCGbank (LDC-licensed): set local_paths.ccg",
             options={"tags": "supertags", "min_tag_count": 10, "train_size": 39_604, "eval_size": 1_913}),
    # --- named entities: its own kind ---
    TaskSpec("panx_en", "tagging", "ner", EN, HubSource("unimelb-nlp/wikiann", "en"), "f1",
             "WikiANN / PAN-X English NER; PAN-X's own English training data",
             english_data=("wikiann_en",), options={"tags": "ner_tags", "train_size": 20_000, "eval_size": 10_000}),
)

TARGETS: tuple[TaskSpec, ...] = (
    # --- classification ---
    TaskSpec("xnli", "classification", "semantic", XNLI_LANGS, HubSource("facebook/xnli", "{code}", splits=EVAL_ONLY),
             "accuracy", "XNLI (facebook/xnli); trains on MNLI", group="classification", train_task="mnli",
             options={**CLS_PAIR, "train_size": 392_702, "eval_size": {"dev": 2_490, "test": 5_010}}, chance=100 / 3),
    TaskSpec("pawsx", "classification", "semantic", PAWSX_LANGS,
             HubSource("google-research-datasets/paws-x", "{code}", languages_for={"train": EN}), "accuracy",
             "PAWS-X; English training data only (the other languages' train splits are machine-translated)",
             group="classification", english_data=("paws_wiki",), options={**PAWS_COLUMNS, "train_size": 49_401, "eval_size": 2_000}, chance=50.0),
    TaskSpec("xcopa", "multiple_choice", "semantic", ("en", *XCOPA_LANGS),
             HubSource("cambridgeltl/xcopa", "{code}", splits=EVAL_ONLY, languages_for={"test": XCOPA_LANGS},
                       overrides={("en", "dev"): COPA}),
             "accuracy", "XCOPA; trains on English COPA (English: COPA dev only); XTREME-R's SIQA-first recipe is "
             "the siqa intermediate", group="classification", train_task="copa",
             options={**COPA_COLUMNS, "train_size": 400, "eval_size": {"dev": 100, "test": 500}}, chance=50.0),
    # --- tagging ---
    TaskSpec("udpos", "tagging", "syntactic", UDPOS_LANGS, UDPOS, "f1", "UD-POS (XTREME udpos; UD 2.7 for lt/pl/ro/uk/wo)",
             group="tagging", english_data=("ud_english_pos",), options={"tags": "pos_tags", "train_size": 21_253, "eval_size": {"dev": 1_000, "test": 1_500}}),
    TaskSpec("panx", "tagging", "ner", PANX_LANGS, WIKIANN, "f1", "WikiANN / PAN-X NER (unimelb-nlp/wikiann)",
             group="tagging", english_data=("wikiann_en",), options={"tags": "ner_tags", "train_size": 20_000, "eval_size": 10_000}),
    # --- QA ---
    TaskSpec("xquad", "span_qa", "semantic", XQUAD_LANGS,
             HubSource("google/xtreme", "XQuAD.{code}", splits={"test": "validation"},
                       overrides={("en", "dev"): SQUAD,
                                  ("ro", "test"): HubSource("google/xquad", "xquad.ro", splits={"test": "validation"})}),
             "em_f1", "XQuAD (test only; English dev = SQuAD v1.1 dev); trains on SQuAD v1.1", group="qa",
             train_task="squad", options={"train_size": 87_599, "eval_size": 1_190}),
    TaskSpec("mlqa", "span_qa", "semantic", MLQA_LANGS,
             HubSource("google/xtreme", "MLQA.{code}.{code}", splits=EVAL_ONLY), "em_f1",
             "MLQA, context and question in the same language; MLQA's answer normalisation; trains on SQuAD v1.1",
             group="qa", train_task="squad",
             options={"metric_variant": "mlqa", "train_size": 87_599, "eval_size": {"dev": 600, "test": 5_000}}),
    TaskSpec("tydiqa", "span_qa", "semantic", tuple(TYDIQA_NAMES),
             TydiqaSource("google/xtreme", "tydiqa", names=TYDIQA_NAMES), "em_f1",
             "TyDiQA-GoldP; English training examples only (ids english-...), dev sets as test", group="qa",
             options={"train_size": 3_326, "eval_size": 560}),
    # --- retrieval: scored from the encoder, no target training ---
    TaskSpec("bucc2018", "bitext_mining", "other", BUCC_LANGS,
             BuccSource(HubSource("google/xtreme", "bucc18.{code}", splits=EVAL_ONLY)), "f1",
             "BUCC 2018 bitext mining: ratio margin, threshold tuned on the sample (dev) split", group="retrieval",
             options={"source_id": "source_lang", "target_id": "target_lang", "neighbours": 4, "train_size": 0, "eval_size": {"dev": 1_000, "test": 10_000}}),
    TaskSpec("tatoeba", "retrieval", "other", TATOEBA_LANGS,
             HubSource("google/xtreme", "tatoeba.{code}", codes=TATOEBA_CODES, splits={"test": "validation"},
                       overrides={(lang, "test"): TATOEBA_EXTRA for lang in TATOEBA_EXTRA_CODES}),
             "accuracy", "Tatoeba: xx -> English nearest neighbour, accuracy@1 (XTREME-R: from a SQuAD-tuned encoder)",
             group="retrieval", xtreme_r_fine_tune="squad",
             options={"train_size": 0, "eval_size": 1_000}),
    TaskSpec("lareqa", "answer_retrieval", "other", LAREQA_LANGS,
             HubSource("google-research-datasets/xquad_r", "{code}", splits={"test": "validation"}), "map@20",
             "LAReQA (XQuAD-R): answer-sentence retrieval from the 11-language pool, mAP@20", group="retrieval",
             english_data=("squad_v1.1",), xtreme_r_fine_tune="squad", options={"k": 20, "train_size": 0, "eval_size": 1_190}),
    TaskSpec("mewsli_x", "entity_retrieval", "other", MEWSLIX_LANGS, MewsliXSource(), "map@20",
             "Mewsli-X entity retrieval, mAP@20 (local files only: set local_paths.mewsli_x)", group="retrieval",
             options={"k": 20, "train_size": 0, "eval_size": 3_000}),
)

ENTRIES: tuple[TaskSpec, ...] = INTERMEDIATES + TARGETS
