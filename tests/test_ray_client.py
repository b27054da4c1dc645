"""The Ray Client path for real: a head started as its own process with token auth, and
drivers in other processes connecting through ray://."""

import json
import secrets
import sys

import pyarrow.parquet as pq
import pytest
import yaml

import hemma_features as hf
from hemma_features.session import ConnectError, check_versions
from tests.conftest import MINILM, make_config
from tests.ray_helpers import EXAMPLES, RayHead, assert_same_results, base_env, run_cli

pytestmark = pytest.mark.ray

# Fail fast instead of Ray Client's default ~30 s of retries on a refused handshake.
FAST_FAIL = {
    "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1",
    "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "2",
}


@pytest.fixture(scope="module")
def token():
    return secrets.token_hex(16)


@pytest.fixture(scope="module")
def head(token):
    head = RayHead({**base_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    yield head
    head.stop()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, fake_languagetool):
    config = make_config(
        pipeline={"block_rows": 6},
        embedding={"model": MINILM, "pooling": "mean", "device": "cpu", "batch_size": 6},
        languagetool={"url": fake_languagetool.url, "on_unavailable": "error"},
    )
    path = tmp_path_factory.mktemp("cfg") / "test.yaml"
    path.write_text(yaml.safe_dump(config.model_dump()))
    return path


def test_cli_through_ray_client_equals_embedded_run(head, token, config_file, tmp_path):
    out, metrics = tmp_path / "client.parquet", tmp_path / "metrics.json"
    env = {**base_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    done = run_cli(
        [
            "extract",
            EXAMPLES,
            "-o",
            out,
            "--address",
            head.address,
            "--config",
            config_file,
            "--metrics",
            metrics,
            "--no-progress",
        ],
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 12 rows" in done.stdout
    got = pq.read_table(out)
    expected = hf.extract_local(EXAMPLES, hf.load_config(config_file, environ={}))
    assert_same_results(got, expected)
    assert hf.read_metadata(got)["fingerprint"] == hf.read_metadata(expected)["fingerprint"]
    recorded = json.loads(metrics.read_text())
    assert recorded["benchmarks"][0]["n_essays"] == 12
    assert recorded["address"] == head.address


@pytest.mark.parametrize("case", ["wrong", "missing"])
def test_bad_token_names_token_auth(head, config_file, tmp_path, case):
    env = {**base_env(), **FAST_FAIL, "HOME": str(tmp_path)}  # no ~/.ray/auth_token either
    if case == "wrong":
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-the-token")
    done = run_cli(
        [
            "extract",
            EXAMPLES,
            "-o",
            tmp_path / "x.parquet",
            "--address",
            head.address,
            "--config",
            config_file,
            "--no-progress",
        ],
        env,
        timeout=120,
    )
    assert done.returncode == 3
    assert "token authentication (RAY_AUTH_MODE=token)" in done.stderr
    assert "RAY_AUTH_TOKEN" in done.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_nothing_listening_says_so(tmp_path, config_file):
    from tests.ray_helpers import free_port

    env = {**base_env(), **FAST_FAIL}
    address = f"ray://127.0.0.1:{free_port()}"
    done = run_cli(
        [
            "extract",
            EXAMPLES,
            "-o",
            tmp_path / "x.parquet",
            "--address",
            address,
            "--config",
            config_file,
            "--no-progress",
        ],
        env,
        timeout=120,
    )
    assert done.returncode == 3
    assert f"nothing answers at {address}" in done.stderr


def test_version_mismatch_is_reported_plainly():
    import ray

    with pytest.raises(ConnectError, match=r"same Ray version.*Ray 2\.0\.0 on the cluster"):
        check_versions({"ray_version": "2.0.0", "python_version": sys.version})
    with pytest.raises(ConnectError, match=r"Python 3\.9 on the cluster"):
        check_versions({"ray_version": ray.__version__, "python_version": "3.9.18"})
    check_versions({"ray_version": ray.__version__, "python_version": sys.version.split()[0]})


SERVER_SIDE_FAILURES = [
    "Initialization failure from server:\nStarting Ray client server failed.",
    "Initialization failure from server:\nTraceback (most recent call last):\n"
    "psutil.ZombieProcess: PID still exists but it's a zombie (pid=17900)",
]


@pytest.mark.parametrize("text", SERVER_SIDE_FAILURES)
def test_server_side_session_failure_is_not_blamed_on_the_token(text):
    from hemma_features.session import explain_connect_failure

    message = explain_connect_failure("ray://127.0.0.1:10001", RuntimeError(text), port_open=True)
    assert "could not start a session" in message and "token" not in message


@pytest.mark.parametrize("text", SERVER_SIDE_FAILURES)
def test_server_side_session_failure_is_retried(monkeypatch, text):
    import ray

    from hemma_features import session as session_module

    calls = []

    def flaky_init(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise ConnectionAbortedError(text)
        return "context"

    monkeypatch.setattr(ray, "init", flaky_init)
    monkeypatch.setattr(session_module.time, "sleep", lambda s: None)
    session = object.__new__(session_module.Session)
    session.address = "ray://127.0.0.1:10001"
    session.config = make_config()
    assert session._init_remote() == "context"
    assert len(calls) == 2


def test_prepare_training_through_ray_client(head, token, config_file, tmp_path):
    from hemma_features.training_data import prepare_training_data_local

    env = {**base_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    args = ["--tokenizer", MINILM, "--max-length", "40", "--overlap", "10"]
    done = run_cli(
        [
            "prepare-training",
            EXAMPLES,
            "-o",
            tmp_path / "g3",
            "--address",
            head.address,
            "--config",
            config_file,
            "--no-progress",
            *args,
        ],
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chunks of 12 essays" in done.stdout
    here = prepare_training_data_local(
        EXAMPLES,
        output_dir=tmp_path / "here",
        tokenizer=MINILM,
        max_length=40,
        overlap=10,
        config=hf.load_config(config_file, environ={}),
    )
    got = pq.read_table(tmp_path / "g3" / "train" / "part-00000.parquet")
    assert got.equals(pq.read_table(here.files[0]))
    coverage = json.loads((tmp_path / "g3" / "coverage.json").read_text())
    assert coverage["counts"] == here.coverage["counts"]
