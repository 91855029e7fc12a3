"""Task formats by name. A TaskSpec's `format` is a key of FORMATS; a new format is one entry here.

Whether a task is trained or scored from the encoder as it is follows from its format's class: a TrainedFormat
is fine-tuned on, a ScoredFormat (the retrieval protocols) is not (`Format.trains`).
"""

from xgrid.formats.base import Format, FormatTask, ScoredFormat, TrainedFormat
from xgrid.formats.classification import Classification
from xgrid.formats.multiple_choice import MultipleChoice
from xgrid.formats.retrieval import (AnswerRetrieval, BitextMining, EntityRetrieval, ParallelSentenceRetrieval,
                                     RankingRetrieval, RetrievalSettings)
from xgrid.formats.span_qa import SpanQA
from xgrid.formats.tagging import Tagging

FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (Classification(), Tagging(), MultipleChoice(), SpanQA(),
                ParallelSentenceRetrieval(), BitextMining(), AnswerRetrieval(), EntityRetrieval())
}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; known: {sorted(FORMATS)}") from None


__all__ = ["AnswerRetrieval", "BitextMining", "EntityRetrieval", "FORMATS", "Format", "FormatTask",
           "ParallelSentenceRetrieval", "RankingRetrieval", "RetrievalSettings", "ScoredFormat", "TrainedFormat",
           "get_format"]
