"""What a task *is*: one declarative entry of the registry.

A TaskSpec says which format featurizes, heads, decodes and scores it, which kind of intermediate task it is,
which languages it covers and where its data comes from. Nothing here trains or loads: the registry stays data.
Whether a task is trained at all is its format's to say (`TaskRegistry.trains`): a spec names its format and
does not import the formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

from xgrid.data.sources import DataSource

Kind = Literal["syntactic", "semantic", "ner", "other"]
# XTREME-R's four groups; intermediates carry None.
TargetGroup = Literal["classification", "tagging", "qa", "retrieval"]
KINDS: tuple[str, ...] = ("syntactic", "semantic", "ner", "other")


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class TaskSpec:
    name: str
    format: str  # key into xgrid.formats.FORMATS
    kind: Kind
    languages: tuple[str, ...]  # every language the task can be evaluated on; English first
    source: DataSource
    metric: str  # primary metric key, e.g. "accuracy", "f1", "map@20"
    description: str = ""
    group: TargetGroup | None = None  # set for targets: the XTREME-R group it is averaged in
    # Format options: column names, label names, QA version ... Each format documents what it reads.
    options: Mapping[str, Any] = field(default_factory=dict)
    # Targets whose English training data is another task's (XNLI trains on MNLI): that task's name.
    train_task: str | None = None
    # The English corpora the task's data contains (its lineage), by a corpus name shared across entries:
    # SQuAD v2.0 contains SQuAD v1.1 train, so an intermediate task whose corpora meet a target's (its own and its
    # training task's) is that target's own English data, not transfer. Empty: the task's own name.
    english_data: tuple[str, ...] = ()
    # XTREME-R's protocol for a retrieval target: the task the cell's encoder is fine-tuned on before it is scored
    # (Tatoeba: SQuAD v1.1). None: XTREME-R scores it straight from the encoder, as XTREME does.
    xtreme_r_fine_tune: str | None = None
    # The primary metric's score (0-100) of a predictor that learned nothing: 100 / labels for balanced
    # classification and multiple choice, 0 for tagging F1, QA and retrieval. `xgrid compare` flags a cell at or
    # below it (a collapsed model reads as an effect otherwise).
    chance: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _frozen(self.options))
        if not self.languages:
            raise ValueError(f"task {self.name!r}: languages must not be empty")
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def corpora(self) -> tuple[str, ...]:
        """The English corpora in the task's data: `english_data`, or the task's own name."""
        return self.english_data or (self.name,)

    @property
    def is_target(self) -> bool:
        return self.group is not None

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def variant(self, language: str) -> str:
        """Language variants fan out as `<task>.<lang>` (lm-eval style): `xnli.de`."""
        return f"{self.name}.{language}"
