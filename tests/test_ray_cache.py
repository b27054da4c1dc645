"""The result cache on a real embedded Ray: repeated, overlapping, changed, corrupted and
concurrent runs. Rows through the stages are counted from the stage actors' own output."""

from __future__ import annotations

import shutil
import threading

import pytest

import hemma_features as hf
from hemma_features.cache import ResultStore
from hemma_features.session import Session
from tests.conftest import MINILM, make_config
from tests.ray_helpers import assert_same_results, example_rows

pytestmark = pytest.mark.ray


def _config(tmp, fake_languagetool, **embedding):
    return make_config(
        cluster={"num_cpus": 2},
        pipeline={"block_rows": 6},
        embedding={"model": MINILM, "pooling": "mean", "device": "cpu", **embedding},
        languagetool={"url": fake_languagetool.url, "on_unavailable": "error"},
        cache={"enabled": True, "dir": str(tmp / "laptop"), "cluster_dir": str(tmp / "cluster")},
    )


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def config(dirs, fake_languagetool):
    return _config(dirs, fake_languagetool)


@pytest.fixture(scope="module")
def session(config):
    with hf.connect("local", config) as session:
        yield session


@pytest.fixture(scope="module")
def rows():
    return example_rows(1)


@pytest.fixture(scope="module")
def first(session, rows):
    table = session.extract(rows, progress=False)
    return table, session.last_metrics


def _stage_rows(metrics) -> dict[str, int]:
    return {name: s["rows"] for name, s in metrics["stages"].items()}


def _new_texts(rows, tag):
    return [
        {**r, "essay_id": f"{r['essay_id']}-{tag}", "text": r["text"] + f" Also {tag}."}
        for r in rows
    ]


def test_first_run_computes_every_row_and_fills_both_caches(first, rows, dirs):
    _, metrics = first
    cache = metrics["cache"]
    assert cache["cluster_contacted"]
    assert cache["this_machine"]["misses"] == len(rows)
    assert cache["cluster"]["misses"] == len(rows)
    assert _stage_rows(metrics) == {"spacy": 12, "languagetool": 12, "embedding": 12}
    assert cache["cluster"]["rows_written"] == 12 and cache["cluster"]["bytes_written"] > 0
    assert cache["this_machine"]["bytes_written"] > 0
    assert list((dirs / "laptop").glob("*/part-*.parquet"))


def test_second_run_is_identical_and_needs_no_cluster(first, rows, config, monkeypatch):
    table, _ = first
    offline = hf.connect("local", config, lazy=True)

    def no_cluster(self):
        raise AssertionError("the cluster was contacted")

    monkeypatch.setattr(Session, "ensure_connected", no_cluster)
    again = offline.extract(rows, progress=False)
    assert_same_results(again, table, atol=0.0)
    assert hf.read_metadata(again) == hf.read_metadata(table)
    cache = offline.last_metrics["cache"]
    assert not cache["cluster_contacted"]
    assert cache["this_machine"]["hits"] == len(rows)
    assert offline.last_metrics["stages"] == {}


def test_overlapping_input_computes_only_the_new_half(session, first, rows):
    table, _ = first
    mixed = rows[:6] + _new_texts(rows[6:], "overlap")
    got = session.extract(mixed, progress=False)
    metrics = session.last_metrics
    assert metrics["cache"]["this_machine"]["hits"] == 6
    assert metrics["cache"]["cluster"]["misses"] == 6
    assert _stage_rows(metrics) == {"spacy": 6, "languagetool": 6, "embedding": 6}
    assert_same_results(got.slice(0, 6), table.slice(0, 6), atol=0.0)
    assert got["essay_id"].to_pylist() == [r["essay_id"] for r in mixed]


def test_value_settings_miss_throughput_settings_hit(session, first, rows, dirs, fake_languagetool):
    faster = _config(dirs, fake_languagetool, actors=2, batch_size=3, max_tokens_per_batch=999)
    faster.pipeline.block_rows = 4
    faster.spacy.batch_size = 5
    faster.languagetool.requests_per_actor = 2
    hit = hf.connect("local", faster, lazy=True)
    hit.extract(rows, progress=False)
    assert not hit.last_metrics["cache"]["cluster_contacted"]

    cls_pooling = _config(dirs, fake_languagetool, pooling="cls")
    miss = Session("local", cls_pooling)  # reuses the module's Ray connection
    changed = miss.extract(rows, progress=False, features=["embeddings"])
    assert miss.last_metrics["cache"]["cluster"]["misses"] == len(rows)
    assert _stage_rows(miss.last_metrics) == {"embedding": 12}
    assert changed["embedding"].to_pylist() != first[0]["embedding"].to_pylist()


def test_cluster_cache_answers_what_this_machine_lost(session, first, rows, dirs):
    shutil.rmtree(dirs / "laptop")
    got = session.extract(rows, progress=False)
    metrics = session.last_metrics
    assert metrics["cache"]["this_machine"]["hits"] == 0
    assert metrics["cache"]["cluster"]["hits"] == len(rows)
    assert _stage_rows(metrics) == {}
    assert_same_results(got, first[0], atol=0.0)
    assert hf.read_metadata(got) == hf.read_metadata(first[0])


def test_refresh_recomputes_and_no_cache_leaves_it_alone(session, first, rows, dirs):
    session.extract(rows, progress=False, cache="refresh")
    metrics = session.last_metrics
    assert _stage_rows(metrics)["spacy"] == len(rows)
    assert metrics["cache"]["cluster"]["rows_written"] == len(rows)
    before = sorted(p.name for p in (dirs / "cluster").rglob("part-*.parquet"))
    session.extract(rows, progress=False, cache=False)
    assert session.last_metrics["cache"]["mode"] == "off"
    assert _stage_rows(session.last_metrics)["spacy"] == len(rows)
    assert sorted(p.name for p in (dirs / "cluster").rglob("part-*.parquet")) == before


def test_corrupted_cache_parts_are_reported_and_recomputed(session, first, rows, dirs):
    shutil.rmtree(dirs / "laptop", ignore_errors=True)
    fingerprint = hf.read_metadata(first[0])["fingerprint"]
    parts = list((dirs / "cluster" / fingerprint).glob("part-*.parquet"))
    assert parts
    for part in parts:
        part.write_bytes(part.read_bytes()[:-200])  # a truncated write
    got = session.extract(rows, progress=False)
    metrics = session.last_metrics
    cluster = metrics["cache"]["cluster"]
    assert cluster["corrupt_parts"] and cluster["hits"] == 0
    assert _stage_rows(metrics)["embedding"] == len(rows)
    assert_same_results(got, first[0], atol=1e-5, float_atol=1e-5)  # other batches
    assert not any(p.exists() for p in parts)


def test_concurrent_runs_over_overlapping_inputs(session, config, rows, dirs):
    a_rows = _new_texts(rows, "conc") + rows[:4]
    b_rows = _new_texts(rows[4:], "conc") + _new_texts(rows[:4], "b-only")
    results: dict[str, object] = {}

    def corrupt_parts():
        roots = (dirs / "laptop", dirs / "cluster")
        return sum(s["corrupt_parts"] for root in roots for s in ResultStore(root).stats())

    corrupt_before = corrupt_parts()

    def run(name, data):
        results[name] = Session("local", config).extract(data, progress=False)

    threads = [threading.Thread(target=run, args=(n, d)) for n, d in (("a", a_rows), ("b", b_rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert set(results) == {"a", "b"}, "a concurrent run failed"
    with hf.LocalExtractor(config) as local:
        references = {"a": local.extract(a_rows), "b": local.extract(b_rows)}
    for name in ("a", "b"):
        assert_same_results(results[name], references[name], atol=1e-5, float_atol=1e-5)
    assert corrupt_parts() == corrupt_before
    later = Session("local", config)
    for name, data in (("a", a_rows), ("b", b_rows)):
        again = later.extract(data, progress=False)
        assert not later.last_metrics["cache"]["cluster_contacted"]
        # Both runs computed the shared rows; the cache keeps either copy.
        assert_same_results(again, results[name], atol=1e-5, float_atol=1e-5)
