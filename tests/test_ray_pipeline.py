"""The pipeline on a real embedded local Ray: equality with in-process, metrics, faults."""

import os
import signal
import threading
import time

import pytest

import hemma_features as hf
from hemma_features.session import RunError
from tests.conftest import MINILM, make_config
from tests.ray_helpers import assert_same_results, example_rows

pytestmark = pytest.mark.ray

PROMPT = "Write a letter to your local newspaper about the effects computers have on people."


@pytest.fixture(scope="module")
def ray_config(fake_languagetool):
    return make_config(
        cluster={"num_cpus": 2},
        pipeline={"block_rows": 6},
        spacy={"batch_size": 6},
        embedding={
            "model": MINILM,
            "pooling": "mean",
            "device": "cpu",
            "batch_size": 6,
        },
        languagetool={
            "url": fake_languagetool.url,
            "on_unavailable": "error",
            "backoff_s": 0.01,
        },
    )


@pytest.fixture(scope="module")
def session(ray_config):
    with hf.connect("local", ray_config) as session:
        yield session


@pytest.fixture(scope="module")
def mixed_rows():
    rows = example_rows(2)
    rows[3] = {**rows[3], "text": ""}
    rows[7] = {**rows[7], "text": "   "}
    rows[10] = {**rows[10], "text": 42}
    rows[15] = {**rows[15], "prompt": None}
    return rows


@pytest.fixture(scope="module")
def reference(ray_config, mixed_rows):
    return hf.extract_local(mixed_rows, ray_config)


def test_local_ray_equals_in_process(session, mixed_rows, reference):
    table = session.extract(mixed_rows, progress=False)
    assert table.num_rows == len(mixed_rows)
    assert_same_results(table, reference)
    assert table["error"].to_pylist()[3] == "text is empty"
    assert hf.read_metadata(table) == hf.read_metadata(reference)  # same fingerprint, versions


def test_metrics_shape(session, mixed_rows):
    session.extract(mixed_rows, progress=False)
    metrics = session.last_metrics
    bench = metrics["benchmarks"][0]
    assert bench["name"] == "extract" and bench["n_essays"] == len(mixed_rows)
    assert bench["essays_per_second"] == pytest.approx(
        bench["n_essays"] / bench["elapsed_s"], rel=0.01
    )
    assert set(metrics["stages"]) == {"spacy", "languagetool", "embedding"}
    for stage in metrics["stages"].values():
        assert stage["actors"] == 1 and stage["batches"] >= 4 and stage["busy_s"] > 0
        assert set(stage["latency_s"]) == {"mean", "p95", "p99"}
    assert metrics["config"]["embedding"]["pooling"] == "mean"
    assert len(metrics["fingerprint"]) == 16


def test_unneeded_stages_do_not_run(session):
    table = session.extract(example_rows(1), features=["tier3"], progress=False)
    assert set(session.last_metrics["stages"]) == {"spacy"}
    assert table.column_names == ["essay_id", *hf.TIER3_FEATURES, "error"]


def test_one_prompt_and_dataframe_input(session, reference):
    import pandas as pd

    frame = pd.DataFrame(example_rows(1))
    table = session.extract(frame, prompt=PROMPT, features=["tier2"], progress=False)
    sims = table["prompt_similarity"].to_pylist()
    assert all(s is not None for s in sims) and len(set(sims)) > 1


def test_input_errors_before_any_work(session):
    with pytest.raises(hf.InputError, match="duplicate essay_id"):
        session.extract([{"essay_id": 1, "text": "a"}, {"essay_id": 1, "text": "b"}])
    assert session.last_metrics is not None  # left from an earlier run, not replaced


def _coordinator():
    import ray

    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["name"].startswith("hemma_features-run-"):
            return ray.get_actor(entry["name"], namespace=entry["namespace"])
    return None


@pytest.mark.parametrize("victim", ["embedding", "spacy"])
def test_killed_stage_actor_mid_run_loses_nothing(session, ray_config, victim):
    rows = example_rows(4)  # 48 essays in batches of 6
    expected = hf.extract_local(rows, ray_config)
    result: dict = {}

    def run():
        try:
            result["table"] = session.extract(rows, progress=False)
        except Exception as exc:  # surfaced by the assertion below
            result["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    killed = None
    deadline = time.time() + 240
    import ray

    while worker.is_alive() and time.time() < deadline and killed is None:
        coordinator = _coordinator()
        if coordinator is None:
            time.sleep(0.2)
            continue
        try:
            progress = ray.get(coordinator.progress.remote())
            pids = ray.get(coordinator.stage_pids.remote()).get(victim, [])
        except ray.exceptions.RayActorError:
            break
        started = progress["rows_done"] > 0 if victim == "embedding" else True
        if pids and started and progress["rows_done"] < progress["n_rows"]:
            time.sleep(0.3)  # let the next batch get under way
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.1)
    worker.join(timeout=300)
    assert killed is not None, "the run ended before the actor could be killed"
    assert "error" not in result, result.get("error")
    table = result["table"]
    assert table.num_rows == len(rows)
    assert_same_results(table, expected)
    # the crashed actor was replaced: a second actor reported itself
    assert len(session.last_metrics["stages"][victim]) > 0


def test_run_error_is_reported(fake_languagetool):
    """A stage that cannot start fails the run with the stage's own message."""
    bad = make_config(cluster={"num_cpus": 2}, spacy={"model": "no_such_spacy_model"})
    with hf.connect("local", bad) as session, pytest.raises(RunError, match="no_such_spacy_model"):
        session.extract(
            [{"essay_id": 1, "text": "Hello there."}], features=["tier3"], progress=False
        )


def test_training_data_on_local_ray_equals_in_process(session, ray_config, tmp_path):
    from hemma_features.training_data import prepare_training_data_local

    rows = [{**r, "score": i % 3} for i, r in enumerate(example_rows(2))]
    kwargs = {"tokenizer": MINILM, "max_length": 40, "overlap": 10, "label_columns": ["score"]}
    on_ray = session.prepare_training_data(
        rows, output_dir=tmp_path / "ray", progress=False, **kwargs
    )
    here = prepare_training_data_local(
        rows, output_dir=tmp_path / "here", config=ray_config, **kwargs
    )
    import pyarrow.parquet as pq

    assert pq.read_table(on_ray.files[0]).equals(pq.read_table(here.files[0]))
    assert on_ray.coverage == {**here.coverage, "data_files": on_ray.coverage["data_files"]}
    metrics = session.last_metrics
    assert metrics["benchmarks"][0]["name"] == "prepare_training_data"
    assert (
        metrics["tokens"] == here.coverage["counts"]["tokens"] and metrics["tokens_per_second"] > 0
    )
