"""G3 training data: chunk windows, reconstruction, datasets loading, coverage figures."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hemma_features.chunking import chunk_spans
from hemma_features.inputs import InputError
from hemma_features.stages.tokenize_stage import load_tokenizer, special_token_template
from hemma_features.training_data import prepare_training_data_local
from tests.conftest import MINILM, make_config
from tests.ray_helpers import example_rows


@pytest.mark.parametrize(
    ("n", "window", "overlap", "expected"),
    [
        (0, 6, 2, []),
        (3, 6, 2, [(0, 3)]),
        (6, 6, 2, [(0, 6)]),
        (7, 6, 2, [(0, 6), (4, 7)]),
        (10, 6, 2, [(0, 6), (4, 10)]),
        (11, 6, 2, [(0, 6), (4, 10), (8, 11)]),
        (9, 4, 0, [(0, 4), (4, 8), (8, 9)]),
    ],
)
def test_chunk_spans(n, window, overlap, expected):
    assert chunk_spans(n, window, overlap) == expected


def test_chunk_spans_reject_bad_overlap():
    with pytest.raises(ValueError, match="overlap must be in"):
        chunk_spans(10, 4, 4)


def reassemble(chunks, prefix, suffix, overlap):
    """Rebuild the content token sequence; check every overlap on the way."""
    tokens = []
    for k, chunk in enumerate(chunks):
        assert chunk[: len(prefix)] == prefix and chunk[len(chunk) - len(suffix) :] == suffix
        content = chunk[len(prefix) : len(chunk) - len(suffix)]
        if k:
            assert content[:overlap] == tokens[-overlap:] if overlap else True
            content = content[overlap:]
        tokens.extend(content)
    return tokens


@pytest.fixture(params=["tiny_deberta", "minilm"])
def tokenizer_ref(request):
    return (
        str(request.getfixturevalue("tiny_deberta")) if request.param == "tiny_deberta" else MINILM
    )


def test_chunks_reassemble_to_direct_tokenization(tokenizer_ref, tmp_path):
    rows = example_rows(1)
    max_length, overlap = 48, 12
    result = prepare_training_data_local(
        rows,
        output_dir=tmp_path / "out",
        tokenizer=tokenizer_ref,
        max_length=max_length,
        overlap=overlap,
        config=make_config(),
    )
    tokenizer = load_tokenizer(tokenizer_ref)
    prefix, suffix = special_token_template(tokenizer)
    table = pq.read_table(result.files[0])
    assert table.schema.field("input_ids").type == pa.list_(pa.int32())
    assert table.schema.field("attention_mask").type == pa.list_(pa.int8())
    by_essay = {}
    for row in table.to_pylist():
        assert len(row["input_ids"]) <= max_length
        assert row["attention_mask"] == [1] * len(row["input_ids"])
        by_essay.setdefault(row["essay_id"], []).append(row)
    assert list(by_essay) == [r["essay_id"] for r in rows]  # every essay, in order
    multi = 0
    for essay in rows:
        chunks = by_essay[essay["essay_id"]]
        assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
        assert {c["n_chunks"] for c in chunks} == {len(chunks)}
        direct = tokenizer(essay["text"], add_special_tokens=False)["input_ids"]
        rebuilt = reassemble([c["input_ids"] for c in chunks], prefix, suffix, overlap)
        assert rebuilt == direct  # nothing lost, last chunk ends at the last token
        multi += len(chunks) > 1
    assert multi >= 3  # the test exercises real overlaps


def test_datasets_loads_splits_and_labels(tmp_path):
    import datasets

    rows = [
        {**row, "score": i % 4, "fold": "train" if i % 3 else "test"}
        for i, row in enumerate(example_rows(1))
    ]
    out = tmp_path / "g3"
    result = prepare_training_data_local(
        rows,
        output_dir=out,
        tokenizer=MINILM,
        max_length=32,
        overlap=8,
        label_columns=["score"],
        split_column="fold",
        config=make_config(),
    )
    assert sorted(p.parent.name for p in result.files) == ["test", "train"]
    loaded = datasets.load_dataset("parquet", data_dir=str(out))
    assert set(loaded) == {"train", "test"}
    scores = {r["essay_id"]: r["score"] for r in rows}
    for split in ("train", "test"):
        for row in loaded[split]:
            assert row["score"] == scores[row["essay_id"]]
    assert sum(len(loaded[s]) for s in loaded) == result.coverage["counts"]["chunks"]
    assert result.coverage["chunks_per_split"] == {
        "test": len(loaded["test"]),
        "train": len(loaded["train"]),
    }


def test_coverage_against_hand_computed_values(tmp_path):
    """ "the" is one WordPiece token; max_length 8 with [CLS]/[SEP] leaves 6, stride 4."""
    rows = [
        {"essay_id": "a", "text": " ".join(["the"] * 10)},  # (0,6),(4,10): 2 chunks, 4 lost
        {"essay_id": "b", "text": "the the the"},  # 1 chunk, 0 lost
        {"essay_id": "c", "text": " ".join(["the"] * 6)},  # fits exactly: 1 chunk
        {"essay_id": "d", "text": "   "},  # whitespace-only: no chunks
        {"essay_id": "e", "text": " ".join(["the"] * 7)},  # (0,6),(4,7): 2 chunks, 1 lost
    ]
    result = prepare_training_data_local(
        rows,
        output_dir=tmp_path / "cov",
        tokenizer=MINILM,
        max_length=8,
        overlap=2,
        config=make_config(),
    )
    cov = json.loads((tmp_path / "cov" / "coverage.json").read_text())
    assert cov == result.coverage
    assert cov["counts"] == {
        "essays": 5,
        "essays_with_chunks": 4,
        "essays_without_chunks": 1,
        "chunks": 6,
        "tokens": 26,
    }
    assert cov["percent_longer_than_max_length"] == 50.0  # a and e of 4
    assert cov["mean_tokens_lost_by_truncation"] == (4 + 0 + 0 + 1) / 4
    assert cov["chunks_per_essay"] == {"mean": 1.5, "p95": float(np.percentile([2, 1, 1, 2], 95))}
    assert cov["no_chunks"] == [{"essay_id": "d", "reason": "text is whitespace-only"}]
    assert (cov["max_length"], cov["overlap"], cov["special_tokens_per_chunk"]) == (8, 2, 2)
    assert cov["tokenizer"] == MINILM and cov["transformers_version"]


def test_with_features_join_and_missing_ids(tmp_path):
    rows = example_rows(1)[:4]
    features = pa.table(
        {
            "essay_id": [r["essay_id"] for r in rows],
            "word_count": pa.array([10, 20, 30, 40], pa.int32()),
            "error": pa.array([None] * 4, pa.string()),
        }
    )
    path = tmp_path / "features.parquet"
    pq.write_table(features, path)
    result = prepare_training_data_local(
        rows,
        output_dir=tmp_path / "j",
        tokenizer=MINILM,
        max_length=64,
        overlap=8,
        with_features=path,
        config=make_config(),
    )
    table = pq.read_table(result.files[0])
    expected = dict(zip(features["essay_id"].to_pylist(), [10, 20, 30, 40], strict=True))
    assert all(r["word_count"] == expected[r["essay_id"]] for r in table.to_pylist())
    assert "features_error" in table.column_names
    pq.write_table(features.slice(0, 3), path)
    with pytest.raises(InputError, match=r"1 input id\(s\) without features \['ex-004-0'\]"):
        prepare_training_data_local(
            rows,
            output_dir=tmp_path / "k",
            tokenizer=MINILM,
            with_features=path,
            config=make_config(),
        )


def test_bad_input_is_clear(tmp_path):
    with pytest.raises(InputError, match="'score' not found"):
        prepare_training_data_local(
            example_rows(1),
            output_dir=tmp_path / "x",
            tokenizer=MINILM,
            label_columns=["score"],
            config=make_config(),
        )
    with pytest.raises(ValueError, match="cannot load tokenizer"):
        prepare_training_data_local(
            example_rows(1),
            output_dir=tmp_path / "y",
            tokenizer=str(tmp_path / "nowhere"),
            config=make_config(),
        )
    (tmp_path / "z" / "train").mkdir(parents=True)
    pq.write_table(pa.table({"a": [1]}), tmp_path / "z" / "train" / "old.parquet")
    with pytest.raises(InputError, match="already holds Parquet files"):
        prepare_training_data_local(
            example_rows(1), output_dir=tmp_path / "z", tokenizer=MINILM, config=make_config()
        )
