"""The Hemma deployment files: compose policy (loopback ports, token auth), the image
recipe, and the shell scripts (shellcheck, behaviour that can run here).

CI installs shellcheck and docker-compose (v1, validates without an engine) and sets
HEMMA_FEATURES_REQUIRE_TOOLS=1, so there these checks fail rather than skip.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "docker-compose.hemma.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
SCRIPTS = [*sorted((ROOT / "cluster").glob("*.sh")), ROOT / "docker" / "entrypoint.sh"]
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("HEMMA_FEATURES_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{name} is required here (apt-get install {name})")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


def compose_policy_problems(compose: dict) -> list[str]:
    """What in a compose file breaks Hemma's rules: ports published beyond loopback, token
    auth off, no profile, no restart policy or healthcheck, a token written inline."""
    problems = []
    for name, service in compose.get("services", {}).items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:
                parts = str(port).rsplit(":", 2)
                host_ip = parts[0].strip("[]") if len(parts) == 3 else None
            if host_ip not in LOOPBACK:
                problems.append(f"{name}: port {port!r} is not bound to loopback")
        env = service.get("environment", {})
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        if env.get("RAY_AUTH_MODE") != "token":
            problems.append(f"{name}: RAY_AUTH_MODE is not 'token'")
        if "RAY_AUTH_TOKEN" in env:
            problems.append(f"{name}: the token is written into the compose file")
        if not env.get("RAY_AUTH_TOKEN_PATH"):
            problems.append(f"{name}: no RAY_AUTH_TOKEN_PATH")
        for key in ("profiles", "restart", "healthcheck"):
            if not service.get(key):
                problems.append(f"{name}: no {key}")
    return problems


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_follows_the_policy(compose):
    assert compose_policy_problems(compose) == []
    head = compose["services"]["ray-head"]
    assert {"/dev/kfd", "/dev/dri"} <= set(head["devices"])
    assert "video" in head["group_add"] and head["shm_size"]
    assert {"10001", "8265"} <= {str(p).split(":")[1] for p in head["ports"]}
    assert head["profiles"] == ["hemma-features"]
    assert {v.split(":")[1] for v in head["volumes"]} == {"/data/hf-cache", "/data/hemma"}


@pytest.mark.parametrize(
    "mutation, problem",
    [
        (lambda s: s["ports"].append("10001:10001"), "not bound to loopback"),
        (lambda s: s["ports"].__setitem__(0, "0.0.0.0:10001:10001"), "not bound to loopback"),
        (
            lambda s: s["ports"].append({"target": 8265, "published": 8265}),
            "not bound to loopback",
        ),
        (lambda s: s["environment"].__setitem__("RAY_AUTH_MODE", "disabled"), "not 'token'"),
        (lambda s: s["environment"].__setitem__("RAY_AUTH_TOKEN", "abc"), "written into"),
        (lambda s: s.pop("profiles"), "no profiles"),
    ],
)
def test_the_policy_check_catches_violations(compose, mutation, problem):
    broken = copy.deepcopy(compose)
    mutation(broken["services"]["ray-head"])
    assert any(problem in p for p in compose_policy_problems(broken))


def test_docker_compose_validates_the_file():
    tool = _tool("docker-compose")
    done = subprocess.run(
        [tool, "-f", str(COMPOSE), "--profile", "hemma-features", "config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert compose_policy_problems(resolved) == []


def test_image_recipe_keeps_the_rocm_torch():
    text = DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=rocm/pytorch:rocm7.2_ubuntu24.04_py3.12_pytorch_release_2.9.1" in text
    assert "FROM ${BASE_IMAGE}" in text
    assert "torch.version.hip" in text and "-c /tmp/keep-torch.txt" in text
    assert "grep -iE '^nvidia-'" in text
    assert "openjdk-17-jre-headless" in text and "language_tool_python" in text
    assert "spacy download" in text and "HF_HOME=/data/hf-cache" in text
    assert "\nUSER ${APP_USER}" in text and "ENTRYPOINT" in text
    for line in text.splitlines():
        assert not line.strip().startswith("RUN pip install torch"), line
        assert "|| true" not in line or "useradd" in line, f"a RUN step hides failures: {line}"


def test_worker_requirements_leave_torch_and_cuda_out():
    sys.path.insert(0, str(ROOT / "docker"))
    try:
        from worker_requirements import worker_requirements
    finally:
        sys.path.pop(0)
    requirements = worker_requirements((ROOT / "pyproject.toml").read_text())
    names = [r.split("[")[0].split("=")[0].split(">")[0].split("<")[0] for r in requirements]
    assert "transformers" in names and "spacy" in names and "pydantic" in names
    assert not [n for n in names if n.startswith(("torch", "nvidia-", "triton"))]
    sample = '[project]\ndependencies = []\n[project.optional-dependencies]\nworker = ["torch>=2", "nvidia-cublas-cu12", "triton", "pytorch-triton-rocm", "spacy"]\n'
    assert worker_requirements(sample) == ["spacy"]


def test_shell_scripts_pass_shellcheck():
    tool = _tool("shellcheck")
    done = subprocess.run([tool, *map(str, SCRIPTS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout


def test_entrypoint_refuses_to_start_without_token_auth(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    entrypoint = str(ROOT / "docker" / "entrypoint.sh")
    done = subprocess.run(["bash", entrypoint], env=env, capture_output=True, text=True)
    assert done.returncode == 64 and "RAY_AUTH_MODE must be 'token'" in done.stderr
    env["RAY_AUTH_MODE"] = "token"
    done = subprocess.run(["bash", entrypoint], env=env, capture_output=True, text=True)
    assert done.returncode == 64 and "RAY_AUTH_TOKEN_PATH" in done.stderr


def test_tunnel_refuses_a_taken_local_port():
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", 8265))
        except OSError:
            pytest.skip("port 8265 is in use on this machine")
        sock.listen()
        done = subprocess.run(
            ["bash", str(ROOT / "cluster" / "tunnel.sh"), "no-such-host.invalid"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "local port 8265 is already in use" in done.stderr
