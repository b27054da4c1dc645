"""Turn processed batches into the contract table: columns, types, order and metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from hemma_features.config import Config
from hemma_features.schema import (
    SCHEMA_VERSION,
    VALUE_NOTES,
    fingerprint,
    normalize_features,
    output_schema,
    selected_feature_names,
)


def run_metadata(
    config: Config,
    features: Iterable[str],
    versions: Mapping[str, str | None],
    embedding_dim: int | None,
    skipped: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The schema metadata every result carries."""
    groups = normalize_features(list(features))
    return {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": fingerprint(config.value_affecting(), groups, versions),
        "features": list(groups),
        "feature_names": list(selected_feature_names(groups)),
        "embedding_model": config.embedding.model,
        "embedding_pooling": config.embedding.pooling,
        "embedding_dim": embedding_dim,
        "spacy_model": config.spacy.model,
        "versions": dict(versions),
        "value_notes": VALUE_NOTES,
        "skipped": dict(skipped or {}),
    }


def finalize(
    processed: pa.Table,
    features: Iterable[str],
    embedding_dim: int | None,
    metadata: Mapping[str, Any],
) -> pa.Table:
    """Select and cast the contract columns of ``processed`` (rows already in input order).

    A column no stage produced (e.g. LanguageTool skipped) comes back all null.
    """
    schema = output_schema(
        features, embedding_dim, metadata, id_type=processed.schema.field("essay_id").type
    )
    arrays = []
    for field in schema:
        if field.name in processed.column_names:
            arrays.append(processed[field.name].cast(field.type))
        else:
            arrays.append(pa.nulls(processed.num_rows, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
