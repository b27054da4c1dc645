"""The output contract (v1): column names and types, metadata, fingerprint, matrices.

One output row per input row, in input order, keyed by ``essay_id``, with an ``error`` column
that is null when the row succeeded. Feature names are the research team's existing names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = "1"
META_PREFIX = "hemma_features."

EMBEDDINGS = "embeddings"
TIER1 = "tier1"
TIER2 = "tier2"
TIER3 = "tier3"
FEATURE_GROUPS: tuple[str, ...] = (EMBEDDINGS, TIER1, TIER2, TIER3)

TIER1_FEATURES: tuple[str, ...] = (
    "grammar_errors_per_100_words",
    "spelling_errors_per_100_words",
    "punctuation_errors_per_100_words",
    "flesch_kincaid",
    "smog",
    "coleman_liau",
    "ari",
    "avg_sentence_length",
    "ttr",
    "word_count",
    "avg_word_length",
)
TIER2_FEATURES: tuple[str, ...] = (
    "parse_tree_depth",
    "clause_count",
    "passive_ratio",
    "dep_distance",
    "connective_diversity",
    "sent_similarity_variance",
    "prompt_similarity",
    "intro_prompt_sim",
    "min_para_relevance",
)
TIER3_FEATURES: tuple[str, ...] = (
    "paragraph_count",
    "has_intro",
    "has_conclusion",
    "lexical_overlap",
    "pronoun_noun_ratio",
)
#: The 25 handcrafted features in contract order (tier 1, tier 2, tier 3).
HANDCRAFTED_FEATURES: tuple[str, ...] = TIER1_FEATURES + TIER2_FEATURES + TIER3_FEATURES
TIER_FEATURES: dict[str, tuple[str, ...]] = {
    TIER1: TIER1_FEATURES,
    TIER2: TIER2_FEATURES,
    TIER3: TIER3_FEATURES,
}

#: Raw LanguageTool match counts, emitted beside the tier 1 rates.
ERROR_COUNT_COLUMNS: tuple[str, ...] = ("grammar_errors", "spelling_errors", "punctuation_errors")
LANGUAGETOOL_COLUMNS: tuple[str, ...] = TIER1_FEATURES[:3] + ERROR_COUNT_COLUMNS
PROMPT_FEATURES: tuple[str, ...] = ("prompt_similarity", "intro_prompt_sim", "min_para_relevance")
SIMILARITY_FEATURES: tuple[str, ...] = ("sent_similarity_variance", *PROMPT_FEATURES)

_INT_COLUMNS = {"word_count", "clause_count", "paragraph_count", *ERROR_COUNT_COLUMNS}
_BOOL_COLUMNS = {"has_intro", "has_conclusion"}

#: Documented decisions about values, stored in every output's metadata.
VALUE_NOTES: dict[str, str] = {
    "division_by_zero": "a ratio or mean over nothing is 0, as the team's earlier features were",
    "smog": (
        "McLaughlin's formula 1.0430*sqrt(polysyllables*30/sentences)+3.1291 for any number "
        "of sentences (TextDescriptives returns NaN below 30 sentences; we never emit NaN)"
    ),
    "syllables": (
        "CMU Pronouncing Dictionary, pyphen hyphenation points + 1 for words it lacks "
        "(TextDescriptives uses pyphen alone, which undercounts)"
    ),
    "words": "tokens that are neither whitespace nor punctuation",
    "sentences": "spaCy sentences holding at least one word",
    "prompt_features": "null when the row has no prompt",
    "languagetool": "null when LanguageTool was unavailable and on_unavailable=skip",
}


def normalize_features(features: Iterable[str] | str | None) -> tuple[str, ...]:
    """Validate a feature-group selection; ``None`` means all groups, in canonical order."""
    if features is None:
        return FEATURE_GROUPS
    if isinstance(features, str):
        features = [part.strip() for part in features.split(",") if part.strip()]
    chosen = set()
    for name in features:
        key = name.strip().lower()
        if key in ("embedding", EMBEDDINGS):
            key = EMBEDDINGS
        if key == "all":
            return FEATURE_GROUPS
        if key not in FEATURE_GROUPS:
            raise ValueError(f"unknown feature group {name!r}; choose from {list(FEATURE_GROUPS)}")
        chosen.add(key)
    if not chosen:
        raise ValueError(f"no feature group selected; choose from {list(FEATURE_GROUPS)}")
    return tuple(group for group in FEATURE_GROUPS if group in chosen)


def feature_type(name: str) -> pa.DataType:
    """Arrow type of one handcrafted feature or raw count column."""
    if name in _INT_COLUMNS:
        return pa.int32()
    if name in _BOOL_COLUMNS:
        return pa.bool_()
    return pa.float64()


def selected_feature_names(features: Iterable[str]) -> tuple[str, ...]:
    """Handcrafted feature names present for a selection, in contract order."""
    groups = set(features)
    return tuple(n for tier, names in TIER_FEATURES.items() if tier in groups for n in names)


def feature_columns(features: Iterable[str] | str | None) -> tuple[str, ...]:
    """The computed columns of a result for a selection: all but ``essay_id`` and ``error``."""
    groups = normalize_features(features)
    columns = ["embedding"] if EMBEDDINGS in groups else []
    columns += selected_feature_names(groups)
    if TIER1 in groups:
        columns += ERROR_COUNT_COLUMNS
    return tuple(columns)


def output_schema(
    features: Iterable[str] | None = None,
    embedding_dim: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    id_type: pa.DataType | None = None,
) -> pa.Schema:
    """The Arrow schema of a result table for a feature selection.

    ``essay_id`` keeps the type it had in the input (``id_type``, default string).
    """
    groups = normalize_features(features)
    fields = [pa.field("essay_id", id_type or pa.string())]
    if EMBEDDINGS in groups:
        if not embedding_dim:
            raise ValueError("embedding_dim is needed when embeddings are selected")
        fields.append(pa.field("embedding", pa.list_(pa.float32(), embedding_dim)))
    fields += [pa.field(n, feature_type(n)) for n in selected_feature_names(groups)]
    if TIER1 in groups:
        fields += [pa.field(n, feature_type(n)) for n in ERROR_COUNT_COLUMNS]
    fields.append(pa.field("error", pa.string()))
    return pa.schema(fields, metadata=encode_metadata(metadata or {}))


def encode_metadata(values: Mapping[str, Any]) -> dict[bytes, bytes]:
    """Arrow metadata under our prefix; every value is stored as JSON."""
    return {f"{META_PREFIX}{key}".encode(): json.dumps(v).encode() for key, v in values.items()}


def read_metadata(table_or_schema: pa.Table | pa.Schema) -> dict[str, Any]:
    """Decode our metadata from a result table or schema."""
    schema = table_or_schema.schema if isinstance(table_or_schema, pa.Table) else table_or_schema
    out: dict[str, Any] = {}
    for raw_key, raw_value in (schema.metadata or {}).items():
        key = raw_key.decode()
        if not key.startswith(META_PREFIX):
            continue
        out[key[len(META_PREFIX) :]] = json.loads(raw_value.decode())
    return out


def fingerprint(
    value_config: Mapping[str, Any],
    features: Iterable[str],
    versions: Mapping[str, str | None],
) -> str:
    """A short hash of everything that can change feature values.

    ``value_config`` is :meth:`Config.value_affecting`; ``versions`` holds library and model
    versions (``transformers``, ``spacy``, the spaCy model's version, a model revision …).
    Throughput settings are deliberately not part of it.
    """
    payload = {
        "schema_version": SCHEMA_VERSION,
        "config": value_config,
        "features": sorted(normalize_features(list(features))),
        "versions": dict(sorted(versions.items())),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def to_matrices(
    table: pa.Table,
    *,
    missing: float = 0.0,
    drop_errors: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The two matrices the research code consumes: ``embeddings`` [N, D] and
    ``handcrafted`` [N, 25], both float32, rows in table order, features in contract order.

    Nulls (a failed row, a row without a prompt, LanguageTool skipped) become ``missing``
    (0.0 by default, the team's convention; pass ``float('nan')`` to keep them visible).
    ``drop_errors=True`` leaves out rows whose ``error`` is set.
    """
    absent = [n for n in ("embedding", *HANDCRAFTED_FEATURES) if n not in table.column_names]
    if absent:
        raise ValueError(
            f"table lacks {absent}: extract with all feature groups to build both matrices"
        )
    if drop_errors:
        table = table.filter(table["error"].is_null())
    n_rows = table.num_rows
    emb_type = table.schema.field("embedding").type
    dim = emb_type.list_size if pa.types.is_fixed_size_list(emb_type) else None
    embedding_rows = table["embedding"].to_pylist()
    if dim is None:
        dim = next((len(v) for v in embedding_rows if v is not None), 0)
    embeddings = np.full((n_rows, dim), missing, dtype=np.float32)
    for i, vector in enumerate(embedding_rows):
        if vector is not None:
            embeddings[i] = vector
    handcrafted = np.empty((n_rows, len(HANDCRAFTED_FEATURES)), dtype=np.float32)
    for j, name in enumerate(HANDCRAFTED_FEATURES):
        column = table[name].cast(pa.float64()).fill_null(missing)
        handcrafted[:, j] = column.to_numpy(zero_copy_only=False)
    return embeddings, handcrafted
