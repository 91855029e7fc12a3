"""Registry entries of the embedded micro-benchmark (offline default). One entry per task; see
`xgrid.data.microbench` for how the data are generated and which effect is planted."""

from xgrid.data.sources import EmbeddedSource
from xgrid.tasks.spec import TaskSpec

MB_LANGUAGES = ("en", "xa", "xb", "xc")

ENTRIES: tuple[TaskSpec, ...] = (
    # Intermediate tasks: English only.
    TaskSpec("mb_chunk", "tagging", "syntactic", ("en",), EmbeddedSource("mb_chunk"), "f1",
             "micro-benchmark chunking (CoNLL-2000 schema)", options={"tags": "chunk_tags"}),
    TaskSpec("mb_deprel", "tagging", "syntactic", ("en",), EmbeddedSource("mb_deprel"), "f1",
             "micro-benchmark dependency-relation tagging (UD deprel)", options={"tags": "deprel_tags"}),
    TaskSpec("mb_xpos", "tagging", "syntactic", ("en",), EmbeddedSource("mb_xpos"), "f1",
             "micro-benchmark PTB part-of-speech tagging (UD en_ewt xpos)", options={"tags": "xpos_tags"}),
    TaskSpec("mb_depth", "tagging", "syntactic", ("en",), EmbeddedSource("mb_depth"), "f1",
             "micro-benchmark constituency-depth tagging (bracket depth of each token)",
             options={"tags": "depth_tags"}),
    # CCG supertagging and semantic tagging report token accuracy, as CCGbank and the Parallel Meaning Bank do.
    TaskSpec("mb_ccg", "tagging", "syntactic", ("en",), EmbeddedSource("mb_ccg"), "accuracy",
             "micro-benchmark CCG supertagging (CCGbank lexical categories)", options={"tags": "ccg_tags"}),
    TaskSpec("mb_para", "classification", "semantic", ("en",), EmbeddedSource("mb_para"), "accuracy",
             "micro-benchmark paraphrase identification (PAWS schema)",
             options={"text_a": "sentence1", "text_b": "sentence2"}, chance=50.0),
    TaskSpec("mb_qa", "span_qa", "semantic", ("en",), EmbeddedSource("mb_qa"), "f1",
             "micro-benchmark extractive QA (SQuAD schema)"),
    TaskSpec("mb_choice", "multiple_choice", "semantic", ("en",), EmbeddedSource("mb_choice"), "accuracy",
             "micro-benchmark sentence completion (HellaSwag schema)",
             options={"context": ["ctx"], "choices": "endings"}, chance=25.0),
    TaskSpec("mb_entail", "classification", "semantic", ("en",), EmbeddedSource("mb_entail"), "accuracy",
             "micro-benchmark two-way entailment (GLUE RTE schema)",
             options={"text_a": "sentence1", "text_b": "sentence2"}, chance=50.0),
    TaskSpec("mb_semtag", "tagging", "semantic", ("en",), EmbeddedSource("mb_semtag"), "accuracy",
             "micro-benchmark semantic tagging (Parallel Meaning Bank sem-tags: polarity and domain)",
             options={"tags": "sem_tags"}),
    # Targets: English training data, every language evaluated.
    TaskSpec("mb_xnli", "classification", "semantic", MB_LANGUAGES, EmbeddedSource("mb_xnli"), "accuracy",
             "micro-benchmark NLI (XNLI schema)", group="classification", chance=100 / 3),
    TaskSpec("mb_udpos", "tagging", "syntactic", MB_LANGUAGES, EmbeddedSource("mb_udpos"), "f1",
             "micro-benchmark POS tagging (XTREME udpos schema)", group="tagging"),
    TaskSpec("mb_xquad", "span_qa", "semantic", MB_LANGUAGES, EmbeddedSource("mb_xquad"), "em_f1",
             "micro-benchmark extractive QA (XQuAD schema); score (EM + F1) / 2 as XTREME-R", group="qa"),
    TaskSpec("mb_tatoeba", "retrieval", "other", MB_LANGUAGES[1:], EmbeddedSource("mb_tatoeba"), "accuracy",
             "micro-benchmark parallel sentence retrieval (Tatoeba schema)", group="retrieval",
             xtreme_r_fine_tune="mb_qa"),
)
