"""Task formats by name. A TaskSpec's `format` is a key of FORMATS; a new format is one entry here."""

from xgrid.formats.base import Format
from xgrid.formats.classification import Classification
from xgrid.formats.multiple_choice import MultipleChoice
from xgrid.formats.retrieval import BitextMining, ParallelSentenceRetrieval, RankingRetrieval, RetrievalSettings
from xgrid.formats.span_qa import SpanQA
from xgrid.formats.tagging import Tagging

FORMATS: dict[str, object] = {
    fmt.name: fmt
    for fmt in (Classification(), Tagging(), MultipleChoice(), SpanQA(), ParallelSentenceRetrieval())
}


def get_format(name: str):
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; known: {sorted(FORMATS)}") from None


# BUCC (BitextMining) and LAReQA / Mewsli-X (RankingRetrieval) are modes of the "retrieval" format, chosen by the
# task option `mode`. "Scored, not trained" is each format's `trains` attribute (TaskSpec.trains asks it).
__all__ = ["BitextMining", "FORMATS", "Format", "ParallelSentenceRetrieval", "RankingRetrieval", "RetrievalSettings",
           "get_format"]
