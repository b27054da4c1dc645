"""SpacyStage with the real en_core_web_sm 3.8.0 (the PyPI re-upload)."""

import pyarrow as pa
import pytest

from hemma_features.schema import TIER1, TIER2, TIER3
from hemma_features.stages import SpacyStage
from hemma_features.stages.spacy_stage import SPACY_TIER1, SPACY_TIER2
from tests.conftest import make_config

ESSAY = (
    "Computers help students learn. However, they also distract us.\n\n"
    "In conclusion, families should set limits."
)


def batch(texts, errors=None):
    n = len(texts)
    return pa.table(
        {
            "essay_id": pa.array(range(n), pa.int64()),
            "text": pa.array(texts, pa.string()),
            "prompt": pa.nulls(n, pa.string()),
            "error": pa.array(errors or [None] * n, pa.string()),
        }
    )


@pytest.fixture(scope="module")
def stage():
    return SpacyStage(make_config(), features=[TIER1, TIER2, TIER3])


def test_unused_components_are_disabled(stage):
    assert "ner" not in stage.nlp.pipe_names
    assert "lemmatizer" not in stage.nlp.pipe_names
    assert {"tagger", "parser", "attribute_ruler"} <= set(stage.nlp.pipe_names)


def test_emits_features_and_texts_only(stage):
    out = stage(batch([ESSAY]))
    row = out.to_pylist()[0]
    # 15 words ("Computers help students learn" ...), 3 sentences, 2 paragraphs
    assert row["word_count"] == 15
    assert row["avg_sentence_length"] == pytest.approx(5.0)
    assert row["paragraph_count"] == 2
    assert row["has_conclusion"] is True
    assert row["has_intro"] is False
    assert row["connective_diversity"] == 1.0  # "however" once
    assert row["sentences"] == [
        "Computers help students learn.",
        "However, they also distract us.",
        "In conclusion, families should set limits.",
    ]
    assert row["paragraphs"] == [
        "Computers help students learn. However, they also distract us.",
        "In conclusion, families should set limits.",
    ]
    for name in (*SPACY_TIER1, *SPACY_TIER2):
        assert isinstance(row[name], (int, float)), name
    # nothing spaCy-typed leaves the stage: every column is a plain Arrow type
    for field in out.schema:
        assert not pa.types.is_binary(field.type) and "extension" not in str(field.type)


def test_real_parse_sees_clauses_and_passives(stage):
    text = "The letter was written by my sister because she wanted to help."
    row = stage(batch([text])).to_pylist()[0]
    # written <- was (auxpass); wanted (advcl), help (xcomp)
    assert row["passive_ratio"] > 0
    assert row["clause_count"] >= 2
    assert row["parse_tree_depth"] >= 2


def test_rows_with_errors_pass_through_untouched(stage):
    out = stage(batch([ESSAY, None, ESSAY], errors=[None, "text is empty", None]))
    rows = out.to_pylist()
    assert [r["error"] for r in rows] == [None, "text is empty", None]
    assert rows[1]["word_count"] is None and rows[1]["sentences"] is None
    assert rows[0]["word_count"] == rows[2]["word_count"] == 15


def test_feature_selection_limits_columns():
    only_tier3 = SpacyStage(make_config(), features=[TIER3])
    out = only_tier3(batch([ESSAY]))
    assert "paragraph_count" in out.column_names
    assert "word_count" not in out.column_names and "sentences" not in out.column_names


def test_one_failing_row_does_not_sink_the_batch(stage, monkeypatch):
    original = stage.features_for

    def explode_on_distract(doc):
        if "distract" in doc.text:
            raise RuntimeError("boom")
        return original(doc)

    monkeypatch.setattr(stage, "features_for", explode_on_distract)
    rows = stage(batch(["A calm sentence here.", ESSAY, "Another calm one."])).to_pylist()
    assert rows[0]["error"] is None and rows[2]["error"] is None
    assert "essay_id=1" in rows[1]["error"] and "RuntimeError: boom" in rows[1]["error"]


def test_resources_come_from_config():
    resources = SpacyStage.resources(make_config(spacy={"actors": 3, "batch_size": 16}))
    assert (resources.actors, resources.num_cpus, resources.num_gpus) == (3, 1.0, 0.0)
