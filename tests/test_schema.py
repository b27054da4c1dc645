import numpy as np
import pyarrow as pa
import pytest

from hemma_features import schema


def test_contract_names_and_order():
    assert len(schema.HANDCRAFTED_FEATURES) == 25
    assert schema.HANDCRAFTED_FEATURES[:3] == (
        "grammar_errors_per_100_words",
        "spelling_errors_per_100_words",
        "punctuation_errors_per_100_words",
    )
    assert schema.HANDCRAFTED_FEATURES[-1] == "pronoun_noun_ratio"
    assert len(set(schema.HANDCRAFTED_FEATURES)) == 25


def test_normalize_features():
    assert schema.normalize_features(None) == schema.FEATURE_GROUPS
    assert schema.normalize_features("tier3, embedding") == ("embeddings", "tier3")
    with pytest.raises(ValueError, match="unknown feature group 'tier9'"):
        schema.normalize_features(["tier9"])


def test_output_schema_and_metadata_round_trip():
    s = schema.output_schema(["embeddings", "tier1"], 8, {"fingerprint": "abc", "n": [1, 2]})
    assert s.field("embedding").type == pa.list_(pa.float32(), 8)
    assert s.names[-4:] == ["grammar_errors", "spelling_errors", "punctuation_errors", "error"]
    assert "parse_tree_depth" not in s.names
    assert schema.read_metadata(s) == {"fingerprint": "abc", "n": [1, 2]}


def test_fingerprint_changes_with_values_not_order():
    base = {"embedding": {"model": "m", "pooling": "cls"}}
    a = schema.fingerprint(base, ["tier1", "tier2"], {"spacy": "3.8"})
    assert a == schema.fingerprint(base, ["tier2", "tier1"], {"spacy": "3.8"})
    assert a != schema.fingerprint(
        {"embedding": {"model": "m", "pooling": "mean"}}, ["tier1", "tier2"], {"spacy": "3.8"}
    )
    assert a != schema.fingerprint(base, ["tier1", "tier2"], {"spacy": "3.9"})
    assert a != schema.fingerprint(base, ["tier1"], {"spacy": "3.8"})


def test_to_matrices_fills_missing_and_drops_errors():
    n = len(schema.HANDCRAFTED_FEATURES)
    columns = {
        "essay_id": [1, 2],
        "embedding": pa.array([[1.0, 2.0], None], pa.list_(pa.float32(), 2)),
    }
    for j, name in enumerate(schema.HANDCRAFTED_FEATURES):
        columns[name] = pa.array([float(j), None], pa.float64())
    columns["error"] = [None, "text is empty"]
    table = pa.table(columns)
    emb, hand = schema.to_matrices(table)
    assert emb.tolist() == [[1.0, 2.0], [0.0, 0.0]]
    assert hand[0].tolist() == [float(j) for j in range(n)] and not hand[1].any()
    _, hand_nan = schema.to_matrices(table, missing=np.nan)
    assert np.isnan(hand_nan[1]).all()
    emb_ok, hand_ok = schema.to_matrices(table, drop_errors=True)
    assert emb_ok.shape == (1, 2) and hand_ok.shape == (1, n)
