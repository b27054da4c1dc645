"""The in-process runner: the same stage objects chained without Ray.

For debugging, notebooks without a cluster and tests. Values are exactly those of the Ray
pipeline, which runs these very classes as actors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from hemma_features.blocks import ramped_blocks
from hemma_features.config import Config, load_config
from hemma_features.inputs import prepare_input
from hemma_features.output import finalize, run_metadata
from hemma_features.schema import normalize_features
from hemma_features.stages import EmbeddingStage, LanguageToolStage, Stage, stages_for

log = logging.getLogger(__name__)


class LocalExtractor:
    """Loads the needed stages once; :meth:`extract` can then be called many times."""

    def __init__(
        self,
        config: Config | str | None = None,
        features: Iterable[str] | str | None = None,
    ) -> None:
        self.config = load_config(config)
        self.features = normalize_features(features)
        self.stages: list[Stage] = [
            cls(self.config, self.features) for cls in stages_for(self.features)
        ]

    @property
    def embedding_dim(self) -> int | None:
        return next((s.dim for s in self.stages if isinstance(s, EmbeddingStage)), None)

    def versions(self) -> dict[str, str | None]:
        merged: dict[str, str | None] = {}
        for stage in self.stages:
            merged.update(stage.versions())
        merged.pop("languagetool_server", None)  # where it ran, not what it computes
        return merged

    def skipped(self) -> dict[str, str]:
        return {
            s.name: s.unavailable_reason
            for s in self.stages
            if isinstance(s, LanguageToolStage) and s.unavailable_reason
        }

    def run_batches(self, canonical: pa.Table) -> pa.Table:
        """Push the canonical table through every stage, block by block, cut as on Ray."""
        done = []
        for block in ramped_blocks(canonical, self.config.pipeline.block_rows):
            for stage in self.stages:
                block = stage(block)
            done.append(block)
        return pa.concat_tables(done, promote_options="default")

    def extract(
        self,
        data: Any,
        *,
        text_column: str = "text",
        prompt_column: str | None = "prompt",
        id_column: str = "essay_id",
        prompt: str | None = None,
    ) -> pa.Table:
        """Features for ``data`` (see :func:`hemma_features.extract_local`)."""
        canonical = prepare_input(
            data,
            text_column=text_column,
            prompt_column=prompt_column,
            id_column=id_column,
            prompt=prompt,
            max_text_chars=self.config.pipeline.max_text_chars,
        )
        processed = self.run_batches(canonical)
        metadata = run_metadata(
            self.config, self.features, self.versions(), self.embedding_dim, self.skipped()
        )
        return finalize(processed, self.features, self.embedding_dim, metadata)

    def close(self) -> None:
        for stage in self.stages:
            stage.close()

    def __enter__(self) -> LocalExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def extract_local(
    data: Any,
    config: Config | str | None = None,
    *,
    features: Iterable[str] | str | None = None,
    text_column: str = "text",
    prompt_column: str | None = "prompt",
    id_column: str = "essay_id",
    prompt: str | None = None,
) -> pa.Table:
    """Compute features in this process, without Ray, and return the contract table.

    ``data``: a ``pyarrow.Table``, a pandas DataFrame, a list of dicts, or a path to a
    .parquet/.csv/.tsv/.jsonl file. ``config``: a :class:`Config`, a YAML path or a bundled
    name (default ``local``). ``features``: any of ``embeddings``, ``tier1``, ``tier2``,
    ``tier3`` (default all); stages that are not needed are not loaded.
    Every input row comes back once, in order, with ``error`` set if it failed.
    """
    with LocalExtractor(config, features) as extractor:
        return extractor.extract(
            data,
            text_column=text_column,
            prompt_column=prompt_column,
            id_column=id_column,
            prompt=prompt,
        )
