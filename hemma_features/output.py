"""Turn processed batches into the contract table: columns, types, order and metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from hemma_features.config import Config
from hemma_features.environment import environment_versions
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
    environment: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """The schema metadata every result carries.

    The fingerprint covers ``environment`` (:func:`~hemma_features.environment.
    environment_versions` of the machine that computed; read here when not given), so it
    is known before any model loads and is the cache's folder name; ``versions`` adds what
    the stages reported once loaded.
    """
    groups = normalize_features(list(features))
    if environment is None:
        environment = environment_versions(config, groups)
    return {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": result_fingerprint(config, groups, environment),
        "features": list(groups),
        "feature_names": list(selected_feature_names(groups)),
        "embedding_model": config.embedding.model,
        "embedding_pooling": config.embedding.pooling,
        "embedding_dim": embedding_dim,
        "spacy_model": config.spacy.model,
        "versions": {**environment, **versions},
        "value_notes": VALUE_NOTES,
        "skipped": dict(skipped or {}),
    }


def result_fingerprint(
    config: Config, features: Iterable[str], environment: Mapping[str, str | None]
) -> str:
    return fingerprint(config.value_affecting(), normalize_features(list(features)), environment)


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
