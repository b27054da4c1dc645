"""Helpers for the Ray tests: example data, a Ray head in its own process, comparisons."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "essays.jsonl"


def example_rows(copies: int = 1) -> list[dict]:
    """The example essays (written for this project), ``copies`` times with fresh ids."""
    rows = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    return [{**row, "essay_id": f"{row['essay_id']}-{k}"} for k in range(copies) for row in rows]


def assert_same_results(
    got: pa.Table, expected: pa.Table, atol: float = 1e-5, float_atol: float = 0.0
) -> None:
    """Features equal (float features within ``float_atol``, exactly by default),
    embeddings within ``atol``, same rows in the same order.

    Rows computed in different batches (a cached run computes only some) differ in the
    last bits of their embeddings and so of the embedding-derived features.
    """
    assert got.column_names == expected.column_names
    assert got["essay_id"].to_pylist() == expected["essay_id"].to_pylist()
    plain = [c for c in got.column_names if c != "embedding"]
    if float_atol:
        floats = [c for c in plain if pa.types.is_floating(got.schema.field(c).type)]
        for name in floats:
            np.testing.assert_allclose(
                got[name].to_numpy(zero_copy_only=False).astype(float),
                expected[name].to_numpy(zero_copy_only=False).astype(float),
                atol=float_atol,
                rtol=0,
                err_msg=name,
            )
        plain = [c for c in plain if c not in floats]
    assert got.select(plain).equals(expected.select(plain))
    if "embedding" in got.column_names:
        a = np.array(
            [v if v is not None else [] for v in got["embedding"].to_pylist()], dtype=object
        )
        b = np.array(
            [v if v is not None else [] for v in expected["embedding"].to_pylist()], dtype=object
        )
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(
                np.asarray(x, float), np.asarray(y, float), atol=atol, rtol=0
            )


def base_env() -> dict[str, str]:
    """This process's environment without Ray or config settings, for heads and CLIs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HEMMA_FEATURES__"))}
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_cli(args, env: dict[str, str], timeout: float = 420) -> subprocess.CompletedProcess:
    """``hemma-features ARGS`` in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "hemma_features.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RayHead:
    """``ray start --head --block`` in its own process group, stopped with it."""

    def __init__(self, env: dict[str, str], num_cpus: int = 2) -> None:
        self.port = free_port()
        # Ephemeral ports (32768+) lie outside Ray's default worker range 10002-19999.
        self.client_port = free_port()
        self.env = env
        ray_bin = Path(sys.executable).with_name("ray")
        self.process = subprocess.Popen(
            [
                str(ray_bin),
                "start",
                "--head",
                "--block",
                f"--port={self.port}",
                f"--ray-client-server-port={self.client_port}",
                f"--num-cpus={num_cpus}",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_ready()

    @property
    def address(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    def _wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.client_port), 1):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the Ray head did not open its client port in time")

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
