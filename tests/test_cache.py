"""The result cache's store, keys and fingerprints, without Ray."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pyarrow as pa
import pytest

from hemma_features.cache import KEY, CacheWriter, ResultStore, row_keys
from hemma_features.client_cache import cache_mode
from hemma_features.environment import environment_versions
from hemma_features.output import result_fingerprint
from tests.conftest import MINILM, make_config

FP = "0123456789abcdef"


def _rows(keys: list[str], dim: int = 16, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    vectors = [rng.random(dim, dtype=np.float32).tolist() for _ in keys]
    return pa.table(
        {
            KEY: pa.array(keys, pa.string()),
            "embedding": pa.array(vectors, pa.list_(pa.float32(), dim)),
            "word_count": pa.array([len(k) for k in keys], pa.int32()),
        }
    )


def test_keys_depend_on_text_prompt_and_fingerprint_only():
    base = row_keys(["An essay."], ["A prompt"], FP)[0]
    assert base == row_keys(["An essay."], ["A prompt"], FP)[0]
    assert base != row_keys(["An essay!"], ["A prompt"], FP)[0]
    assert base != row_keys(["An essay."], ["Another prompt"], FP)[0]
    assert base != row_keys(["An essay."], ["A prompt"], "fedcba9876543210")[0]
    # No prompt and an empty prompt are different inputs (prompt similarity is null vs 0).
    assert row_keys(["x"], [None], FP) != row_keys(["x"], [""], FP)
    # The separator cannot be forged by moving text between fields.
    assert row_keys(["a\x00b"], ["c"], FP) != row_keys(["a"], ["b\x00c"], FP)


def test_fingerprint_follows_values_not_throughput():
    config = make_config(embedding={"model": MINILM, "pooling": "mean"})
    groups = ("embeddings", "tier1", "tier2", "tier3")

    def fp(cfg, features=groups):
        return result_fingerprint(cfg, features, environment_versions(cfg, features))

    base = fp(config)
    faster = config.model_copy(deep=True)
    faster.embedding.actors = 4
    faster.embedding.batch_size = 7
    faster.spacy.actors = 3
    faster.pipeline.block_rows = 5
    faster.languagetool.requests_per_actor = 9
    assert fp(faster) == base
    for section, key, value in [
        ("embedding", "pooling", "cls"),
        ("embedding", "model", "sentence-transformers/all-MiniLM-L6-v2"),
        ("embedding", "max_length", 128),
        ("spacy", "model", "en_core_web_md"),
        ("languagetool", "url", "http://127.0.0.1:8081"),
    ]:
        changed = config.model_copy(deep=True)
        setattr(getattr(changed, section), key, value)
        assert fp(changed) != base, (section, key)
    assert fp(config, ("tier3",)) != base


def test_lookup_returns_what_was_added(tmp_path):
    store = ResultStore(tmp_path)
    rows = _rows(["a", "b", "c"])
    written = store.add(FP, rows, {"embedding_dim": 16, "features": ["embeddings"]})
    assert written > 0
    found = store.lookup(FP, ["c", "x", "a", "a"])
    assert found.counts.hits == 3 and found.counts.misses == 1
    got = {r[KEY]: r for r in found.table.to_pylist()}
    expected = {r[KEY]: r for r in rows.to_pylist()}
    assert got == {"a": expected["a"], "c": expected["c"]}
    assert found.metadata["embedding_dim"] == 16
    assert store.lookup("ffffffffffffffff", ["a"]).table is None


def _flip_middle_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_part_is_reported_set_aside_and_missed(tmp_path, damage):
    store = ResultStore(tmp_path)
    store.add(FP, _rows(["a", "b"], dim=256), {})
    (part,) = store.parts(FP)
    if damage == "truncate":
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    else:
        _flip_middle_byte(part)
    found = store.lookup(FP, ["a", "b"])
    assert found.table is None and found.counts.misses == 2
    assert found.counts.corrupt_parts == [str(part)]
    assert not part.exists() and part.with_suffix(".corrupt").exists()
    # Recomputed rows go into a new part; the damaged one is never read again.
    store.add(FP, _rows(["a", "b"], dim=256, seed=1), {})
    again = store.lookup(FP, ["a", "b"])
    assert again.counts.hits == 2 and not again.counts.corrupt_parts
    assert store.stats()[0]["corrupt_parts"] == 1
    assert store.prune()["parts"] == 0  # prune without arguments removes only junk
    assert not part.with_suffix(".corrupt").exists() and len(store.parts(FP)) == 1


def _writer_process(root: str, worker: int, rounds: int) -> None:
    store = ResultStore(root)
    for r in range(rounds):
        keys = [f"k{(worker * 7 + r * 3 + i) % 40}" for i in range(10)]
        # Every writer writes the same values for a key: the vector is a function of it.
        table = pa.table(
            {
                KEY: keys,
                "embedding": pa.array(
                    [[float(int(k[1:]))] * 64 for k in keys], pa.list_(pa.float32(), 64)
                ),
            }
        )
        store.add(FP, table, {"worker": worker})


def test_concurrent_writers_and_readers_never_see_a_torn_row(tmp_path):
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_writer_process, args=(str(tmp_path), w, 15)) for w in range(4)
    ]
    for process in writers:
        process.start()
    store = ResultStore(tmp_path)
    lookups = 0
    while any(p.is_alive() for p in writers) or lookups < 3:
        found = store.lookup(FP, [f"k{i}" for i in range(40)])
        assert not found.counts.corrupt_parts
        if found.table is not None:
            for key, vector in zip(
                found.table[KEY].to_pylist(), found.table["embedding"].to_pylist(), strict=True
            ):
                assert vector == [float(int(key[1:]))] * 64
        lookups += 1
        time.sleep(0.01)
    for process in writers:
        process.join(timeout=60)
        assert process.exitcode == 0
    final = store.lookup(FP, [f"k{i}" for i in range(40)])
    assert final.counts.hits == 40
    assert len(store.parts(FP)) == 60
    assert not list(tmp_path.glob(f"{FP}/.tmp-*"))


def test_writer_flushes_by_rows_and_at_the_end(tmp_path):
    store = ResultStore(tmp_path)
    writer = CacheWriter(store, FP, lambda: {"n": 1}, flush_rows=4, flush_s=3600)
    writer.add(_rows(["a", "b", "c"]))
    assert store.parts(FP) == []
    writer.add(_rows(["d", "e"]))
    assert len(store.parts(FP)) == 1
    writer.add(_rows(["f"]))
    writer.flush()
    assert len(store.parts(FP)) == 2 and writer.counts.rows_written == 6


def test_prune_by_age_and_fingerprint(tmp_path):
    store = ResultStore(tmp_path)
    other = "fedcba9876543210"
    store.add(FP, _rows(["a"]), {})
    store.add(other, _rows(["b"]), {})
    (old,) = store.parts(FP)
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))
    store.add(FP, _rows(["c"]), {})
    assert store.prune(older_than_days=5)["parts"] == 1
    assert {s["fingerprint"]: s["rows"] for s in store.stats()} == {FP: 1, other: 1}
    assert store.prune(fingerprint=other)["parts"] == 1
    assert [s["fingerprint"] for s in store.stats()] == [FP]
    with pytest.raises(ValueError, match="not a fingerprint"):
        store.prune(fingerprint="../etc")


def test_cache_mode_values():
    assert [cache_mode(v) for v in (True, False, "refresh")] == ["on", "off", "refresh"]
    with pytest.raises(ValueError, match="True, False or 'refresh'"):
        cache_mode("sometimes")
