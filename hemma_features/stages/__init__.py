"""Ray-Data-ready stages: callable classes mapping a ``pyarrow.Table`` batch to a table.

:data:`STAGE_ORDER` is the order they run in: spaCy first (LanguageTool reads its word
counts, the embedding stage its sentences and paragraphs), then LanguageTool, then
embeddings.
"""

from collections.abc import Iterable

from hemma_features.stages.base import Stage, StageResources, add_columns
from hemma_features.stages.embedding_stage import EmbeddingStage, TextEncoder
from hemma_features.stages.languagetool_stage import (
    LanguageToolStage,
    LanguageToolUnavailable,
)
from hemma_features.stages.spacy_stage import TEXT_LIST_COLUMNS, SpacyStage

STAGE_ORDER: tuple[type[Stage], ...] = (SpacyStage, LanguageToolStage, EmbeddingStage)


def stages_for(features: Iterable[str]) -> list[type[Stage]]:
    """The stage classes a feature selection needs, in run order."""
    chosen = list(features)
    return [stage for stage in STAGE_ORDER if stage.needed_for(chosen)]


__all__ = [
    "STAGE_ORDER",
    "TEXT_LIST_COLUMNS",
    "EmbeddingStage",
    "LanguageToolStage",
    "LanguageToolUnavailable",
    "SpacyStage",
    "Stage",
    "StageResources",
    "TextEncoder",
    "add_columns",
    "stages_for",
]
