"""Task formats by name. A TaskSpec's `format` is a key of FORMATS; a new format is one entry here."""

from xgrid.formats.base import Format
from xgrid.formats.classification import Classification
from xgrid.formats.multiple_choice import MultipleChoice
from xgrid.formats.retrieval import ParallelSentenceRetrieval, RetrievalSettings
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


__all__ = ["FORMATS", "Format", "RetrievalSettings", "get_format"]
