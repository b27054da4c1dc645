"""EmbeddingStage: a tiny random DeBERTa-v2 for the code path, MiniLM for semantics."""

import numpy as np
import pyarrow as pa
import pytest

from hemma_features.schema import EMBEDDINGS, TIER2
from hemma_features.stages import EmbeddingStage, TextEncoder
from hemma_features.stages.embedding_stage import length_batches, resolve_model_ref
from tests.conftest import MINILM, make_config

SHORT = "Computers help."
MEDIUM = "Computers help students learn about faraway places and distant people every day."
LONG = " ".join(["However, many teenagers spend too much time online instead of outside."] * 20)


def encoder_for(model, **overrides) -> TextEncoder:
    settings = {"model": str(model), "device": "cpu", "dtype": "float32", **overrides}
    return TextEncoder(make_config(embedding=settings).embedding)


@pytest.fixture(scope="module")
def tiny_cls(tiny_deberta):
    return encoder_for(tiny_deberta, pooling="cls", max_length=256)


@pytest.fixture(scope="module")
def tiny_mean(tiny_deberta):
    return encoder_for(tiny_deberta, pooling="mean", max_length=256)


def test_shape_dtype_and_determinism(tiny_cls):
    first = tiny_cls.encode([SHORT, MEDIUM, LONG])
    again = tiny_cls.encode([SHORT, MEDIUM, LONG])
    assert first.shape == (3, 32) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[0], first[1])


@pytest.mark.parametrize("pooling", ["tiny_cls", "tiny_mean"])
def test_batch_invariance(pooling, request):
    """A text's vector must not depend on its neighbours' lengths (masks, padding, sorting)."""
    encoder = request.getfixturevalue(pooling)
    alone = encoder.encode([MEDIUM])[0]
    with_long = encoder.encode([LONG, MEDIUM, SHORT, LONG + " Extra words here."])[1]
    with_short = encoder.encode([SHORT, SHORT + " x", MEDIUM])[2]
    np.testing.assert_allclose(with_long, alone, atol=1e-5, rtol=0)
    np.testing.assert_allclose(with_short, alone, atol=1e-5, rtol=0)


def test_small_token_budget_gives_same_vectors(tiny_deberta, tiny_cls):
    budgeted = encoder_for(tiny_deberta, pooling="cls", max_length=256, max_tokens_per_batch=64)
    texts = [LONG, SHORT, MEDIUM, SHORT]
    np.testing.assert_allclose(budgeted.encode(texts), tiny_cls.encode(texts), atol=1e-5, rtol=0)


def test_length_batches_respect_limits_and_cover_all():
    lengths = [5, 100, 7, 50, 6, 300]
    batches = length_batches(lengths, max_items=3, max_tokens=120)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert batches[0] == [5]  # 300 tokens: over budget, alone
    for batch in batches:
        assert len(batch) <= 3
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or longest * len(batch) <= 120
    # sorted by length: each batch holds neighbours in length order
    assert batches == [[5], [1], [3, 2], [4, 0]]


def test_package_model_reference():
    path = resolve_model_ref(MINILM)
    assert path.endswith("model")
    assert resolve_model_ref("microsoft/deberta-v3-base") == "microsoft/deberta-v3-base"
    with pytest.raises(ValueError, match="not installed"):
        resolve_model_ref("package:no_such_pkg_xyz/model")


def stage_batch(rows):
    return pa.table(
        {
            "essay_id": pa.array([r["id"] for r in rows], pa.string()),
            "text": pa.array([r["text"] for r in rows], pa.string()),
            "prompt": pa.array([r.get("prompt") for r in rows], pa.string()),
            "error": pa.array([r.get("error") for r in rows], pa.string()),
            "sentences": pa.array([r.get("sentences") for r in rows], pa.list_(pa.string())),
            "paragraphs": pa.array([r.get("paragraphs") for r in rows], pa.list_(pa.string())),
        }
    )


def test_stage_on_tiny_deberta(tiny_deberta):
    config = make_config(embedding={"model": str(tiny_deberta), "pooling": "cls", "device": "cpu"})
    stage = EmbeddingStage(config, features=[EMBEDDINGS, TIER2])
    paragraphs = ["Computers help students learn.", "However, they distract us."]
    out = stage(
        stage_batch(
            [
                {
                    "id": "a",
                    "text": "\n\n".join(paragraphs),
                    "prompt": "Do computers help?",
                    "sentences": paragraphs,
                    "paragraphs": paragraphs,
                },
                {"id": "b", "text": None, "error": "text is empty"},
                {"id": "c", "text": SHORT, "sentences": [SHORT], "paragraphs": [SHORT]},
            ]
        )
    )
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    rows = out.to_pylist()
    assert len(rows[0]["embedding"]) == 32
    assert rows[1]["embedding"] is None and rows[1]["error"] == "text is empty"
    assert rows[0]["prompt_similarity"] is not None and -1 <= rows[0]["prompt_similarity"] <= 1
    assert rows[0]["sent_similarity_variance"] == 0.0  # two sentences: one pair, no variance
    assert rows[2]["prompt_similarity"] is None  # no prompt
    alone = stage.encoder.encode(["\n\n".join(paragraphs)])[0]
    np.testing.assert_allclose(rows[0]["embedding"], alone, atol=1e-5, rtol=0)


def test_each_distinct_prompt_is_encoded_once(tiny_deberta, monkeypatch):
    config = make_config(embedding={"model": str(tiny_deberta), "device": "cpu"})
    stage = EmbeddingStage(config, features=[TIER2])
    seen = []
    original = stage.encoder.encode
    monkeypatch.setattr(
        stage.encoder, "encode", lambda texts: seen.append(list(texts)) or original(texts)
    )
    rows = [
        {
            "id": str(i),
            "text": MEDIUM,
            "prompt": "Prompt A" if i % 2 else "Prompt B",
            "sentences": [MEDIUM],
            "paragraphs": [MEDIUM],
        }
        for i in range(6)
    ]
    stage(stage_batch(rows))
    stage(stage_batch(rows))
    prompt_calls = [texts for texts in seen if "Prompt A" in texts or "Prompt B" in texts]
    assert prompt_calls == [["Prompt B", "Prompt A"]]  # once, then from the actor's cache


@pytest.fixture(scope="module")
def minilm_stage():
    config = make_config(embedding={"model": MINILM, "pooling": "mean", "device": "cpu"})
    return EmbeddingStage(config, features=[EMBEDDINGS, TIER2])


def test_minilm_on_topic_essay_scores_higher(minilm_stage):
    prompt = "Write a letter to the newspaper about the effects computers have on people."
    on_topic = (
        "Computers have changed how people live. Students use computers to research and to "
        "talk with friends, but spending hours online can hurt their health."
    )
    off_topic = (
        "Last summer we went camping by the lake. My father caught three fish and we cooked "
        "them over the fire while the sun went down."
    )
    rows = [
        {"id": i, "text": t, "prompt": prompt, "sentences": [t], "paragraphs": [t]}
        for i, t in (("on", on_topic), ("off", off_topic))
    ]
    out = minilm_stage(stage_batch(rows)).to_pylist()
    assert minilm_stage.dim == 384
    assert out[0]["prompt_similarity"] > out[1]["prompt_similarity"] + 0.2
    assert out[0]["min_para_relevance"] > out[1]["min_para_relevance"]
