"""The in-process runner end to end, and bad input: nothing lost, order kept."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hemma_features as hf
from hemma_features.schema import HANDCRAFTED_FEATURES, read_metadata

PROMPT = "Write a letter to your local newspaper about the effects computers have on people."
GOOD = (
    "Dear editor, computers help people learn and stay in touch with family. However, "
    "too much screen time keeps children from exercise.\n\nIn conclusion, use them wisely."
)


@pytest.fixture(scope="module")
def extractor(minilm_config):
    with hf.LocalExtractor(minilm_config) as extractor:
        yield extractor


def test_contract_table(extractor):
    rows = [{"essay_id": i, "text": GOOD, "prompt": PROMPT} for i in (10, 3, 7)]
    table = extractor.extract(rows)
    assert table.column_names[:2] == ["essay_id", "embedding"]
    assert table["essay_id"].to_pylist() == [10, 3, 7]
    assert table.schema.field("essay_id").type == pa.int64()
    assert table["error"].null_count == 3
    for name in HANDCRAFTED_FEATURES:
        assert table[name].null_count == 0, name
    meta = read_metadata(table)
    assert meta["schema_version"] == "1"
    assert meta["features"] == ["embeddings", "tier1", "tier2", "tier3"]
    assert meta["feature_names"] == list(HANDCRAFTED_FEATURES)
    assert meta["embedding_dim"] == 384 and len(meta["fingerprint"]) == 16
    assert meta["skipped"] == {}
    embeddings, handcrafted = hf.to_matrices(table)
    assert embeddings.shape == (3, 384) and handcrafted.shape == (3, 25)
    assert embeddings.dtype == handcrafted.dtype == np.float32
    # identical texts, identical features
    np.testing.assert_array_equal(handcrafted[0], handcrafted[1])


def test_bad_rows_come_back_in_place(extractor):
    data = [
        {"essay_id": "ok1", "text": GOOD, "prompt": PROMPT},
        {"essay_id": "empty", "text": "", "prompt": PROMPT},
        {"essay_id": "blank", "text": "  \n\t ", "prompt": PROMPT},
        {"essay_id": "huge", "text": "word " * 40_000, "prompt": PROMPT},  # 200,000 chars
        {"essay_id": "number", "text": 12345, "prompt": PROMPT},
        {"essay_id": "none", "text": None, "prompt": PROMPT},
        {"essay_id": "noprompt", "text": GOOD},
        {"essay_id": "ok2", "text": GOOD, "prompt": PROMPT},
    ]
    table = extractor.extract(data)
    rows = table.to_pylist()
    assert [r["essay_id"] for r in rows] == [d["essay_id"] for d in data]
    errors = {r["essay_id"]: r["error"] for r in rows}
    assert errors["ok1"] is None and errors["ok2"] is None
    assert errors["empty"] == "text is empty"
    assert errors["blank"] == "text is whitespace-only"
    assert errors["huge"] == (
        "text has 200,000 characters, more than pipeline.max_text_chars=100,000"
    )
    assert errors["number"] == "text is int, expected a string"
    assert errors["none"] == "text is missing (null)"
    # a missing prompt is not an error: prompt features are null, the rest is computed
    no_prompt = rows[6]
    assert errors["noprompt"] is None
    assert no_prompt["prompt_similarity"] is None and no_prompt["intro_prompt_sim"] is None
    assert no_prompt["word_count"] == rows[0]["word_count"]
    assert no_prompt["embedding"] == rows[0]["embedding"]
    for failed in ("empty", "blank", "huge", "number", "none"):
        row = next(r for r in rows if r["essay_id"] == failed)
        assert row["embedding"] is None and row["word_count"] is None


def test_long_text_under_a_raised_limit_is_processed(minilm_config):
    config = minilm_config.model_copy(deep=True)
    config.pipeline.max_text_chars = 250_000
    long_text = "Computers are useful for school work. " * 5_300  # ~201,000 characters
    table = hf.extract_local(
        [{"essay_id": 1, "text": long_text}], config, features=["tier2", "tier3"]
    )
    row = table.to_pylist()[0]
    assert row["error"] is None
    assert row["paragraph_count"] == 1 and row["clause_count"] == 0
    assert row["lexical_overlap"] == pytest.approx(1.0)  # every sentence is the same


def test_feature_selection_runs_only_needed_stages(minilm_config):
    extractor = hf.LocalExtractor(minilm_config, features="tier3")
    assert [s.name for s in extractor.stages] == ["spacy"]
    table = extractor.extract([{"essay_id": "a", "text": GOOD}])
    assert table.column_names == ["essay_id", *hf.TIER3_FEATURES, "error"]
    with pytest.raises(ValueError, match="lacks"):
        hf.to_matrices(table)
    emb_only = hf.LocalExtractor(minilm_config, features=["embeddings"])
    assert [s.name for s in emb_only.stages] == ["embedding"]


def test_inputs_of_every_kind_give_the_same_table(extractor, tmp_path):
    records = [
        {"essay_id": "a", "essay": GOOD, "topic": PROMPT},
        {"essay_id": "b", "essay": GOOD.upper(), "topic": PROMPT},
    ]
    frame = pd.DataFrame(records)
    paths = {
        "parquet": tmp_path / "in.parquet",
        "csv": tmp_path / "in.csv",
        "tsv": tmp_path / "in.tsv",
        "jsonl": tmp_path / "in.jsonl",
    }
    pq.write_table(pa.Table.from_pylist(records), paths["parquet"])
    frame.to_csv(paths["csv"], index=False)
    # TSV as ASAP writes it: no quoting, tabs between fields
    paths["tsv"].write_text(
        "essay_id\tessay\ttopic\n"
        + "".join(
            f"{r['essay_id']}\t{r['essay'].replace(chr(10), ' ')}\t{r['topic']}\n" for r in records
        )
    )
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in records))
    kwargs = {"text_column": "essay", "prompt_column": "topic"}
    reference = extractor.extract(records, **kwargs)
    for data in (
        frame,
        pa.Table.from_pylist(records),
        paths["parquet"],
        paths["csv"],
        paths["jsonl"],
    ):
        table = extractor.extract(data, **kwargs)
        assert table.drop_columns(["embedding"]).equals(reference.drop_columns(["embedding"])), data
    tsv = extractor.extract(paths["tsv"], **kwargs)
    assert tsv["essay_id"].to_pylist() == ["a", "b"] and tsv["error"].null_count == 2


def test_one_prompt_for_all_rows(extractor):
    table = extractor.extract(
        [{"essay_id": 1, "text": GOOD, "prompt": "ignored"}, {"essay_id": 2, "text": GOOD}],
        prompt=PROMPT,
    )
    sims = table["prompt_similarity"].to_pylist()
    assert sims[0] == sims[1] and sims[0] is not None


def test_languagetool_columns_come_from_the_server(extractor):
    table = extractor.extract([{"essay_id": 1, "text": "I recieve teh letter , thanks."}])
    row = table.to_pylist()[0]
    assert row["spelling_errors"] == 2 and row["punctuation_errors"] == 1
    assert row["spelling_errors_per_100_words"] == pytest.approx(200 / row["word_count"])
