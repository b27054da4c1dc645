"""``hemma-features doctor`` and ``cluster status``: is everything in place for a run?

The cluster-side checks run as Ray tasks on the cluster, so they see what the stage actors
will see: the worker's Python, its torch and GPU, its spaCy model, its model cache, its
LanguageTool, its disk.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hemma_features.config import Config, load_config
from hemma_features.schema import FEATURE_GROUPS

_MIN_FREE_DISK_GB = 2.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'CHECK':<{width}}  STATUS  DETAIL"]
    for check in checks:
        status = "ok" if check.ok else ("FAIL" if check.required else "warn")
        lines.append(f"{check.name:<{width}}  {status:<6}  {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"{'':<{width}}  {'':<6}  fix: {check.fix}")
    return "\n".join(lines)


def run_checks(address: str | None, config: Config | str | None) -> list[Check]:
    """Every check, in order; cluster checks are reported failed when there is no cluster."""
    from hemma_features.session import ConnectError, Session, _ray_version

    cfg = load_config(config)
    address = address or cfg.cluster.address
    checks = [
        Check(
            "client",
            True,
            f"Python {platform.python_version()}, Ray {_ray_version()}, "
            f"RAY_AUTH_MODE={os.environ.get('RAY_AUTH_MODE', 'unset')}",
        )
    ]
    if address.startswith("ray://"):
        parsed = urlparse(address)
        reachable = _port_open(parsed.hostname or "127.0.0.1", parsed.port or 10001)
        checks.append(
            Check(
                "address reachable",
                reachable,
                f"{address} {'answers' if reachable else 'does not answer'}",
                "start the cluster (cluster/deploy.sh on Hemma) and open the tunnel "
                "(cluster/tunnel.sh)",
            )
        )
    try:
        session = Session(address, cfg)
    except ConnectError as exc:
        checks.append(Check("connect", False, str(exc).splitlines()[0][:300], _connect_fix(exc)))
        return [*checks, Check("cluster checks", False, "not run: no connection", "see above")]
    with session:
        checks.append(Check("connect", True, f"connected to {address}"))
        checks += cluster_checks(session)
    return checks


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), 3):
            return True
    except OSError:
        return False


def _connect_fix(exc: BaseException) -> str:
    text = str(exc)
    if "token" in text:
        return (
            "export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (the head's token; on Hemma the "
            "file docker/secrets/ray_auth_token)"
        )
    if "same Ray version" in text:
        return "install the cluster's Ray and Python versions here (pip install -e '.[client]')"
    return "check the address; run cluster/health.sh on the cluster"


def cluster_checks(session) -> list[Check]:
    import ray

    from hemma_features.detached import on_head

    cfg = session.config
    probe = ray.get(on_head(probe_cluster).remote(cfg.model_dump()))
    resources = ray.cluster_resources()
    needs_gpu = cfg.embedding.gpus_per_actor > 0 or cfg.embedding.device in ("cuda", "rocm")
    checks = [
        Check(
            "cluster versions",
            probe["ray_version"] == ray.__version__
            and probe["python"].rsplit(".", 1)[0] == platform.python_version().rsplit(".", 1)[0],
            f"cluster Python {probe['python']}, Ray {probe['ray_version']}",
            "the client and the cluster need the same Ray and Python minor version",
        ),
        Check(
            "token auth",
            bool(probe["token_auth"]),
            "on" if probe["token_auth"] else "off: anyone who reaches the port runs code",
            "set RAY_AUTH_MODE=token on the head (docker/docker-compose.hemma.yml does)",
            required=session.address.startswith("ray://"),
        ),
        _resources_check(cfg, resources),
        _gpu_check(session, resources, needs_gpu),
        Check(
            "spaCy model",
            probe["spacy"]["ok"],
            probe["spacy"]["detail"],
            f"install {cfg.spacy.model} in the worker image (python -m spacy download …)",
        ),
        Check(
            "embedding model",
            probe["embedding"]["ok"],
            probe["embedding"]["detail"],
            "pre-fetch it into the Hugging Face cache volume (huggingface-cli download …) or "
            "fix embedding.model",
        ),
        Check(
            "LanguageTool",
            probe["languagetool"]["ok"],
            probe["languagetool"]["detail"],
            "start the server or fix languagetool.url; the image has LanguageTool built in",
            required=cfg.languagetool.on_unavailable == "error",
        ),
    ]
    for label, disk in probe["disk"].items():
        checks.append(
            Check(
                f"free disk ({label})",
                disk["free_gb"] >= _MIN_FREE_DISK_GB,
                f"{disk['free_gb']:.1f} GB free at {disk['path']}",
                f"free space or point {label} elsewhere (config)",
            )
        )
    return checks


def _resources_check(cfg: Config, resources: dict[str, float]) -> Check:
    from hemma_features.stages import stages_for

    cpus = sum(
        s.resources(cfg).actors * s.resources(cfg).num_cpus for s in stages_for(FEATURE_GROUPS)
    )
    gpus = cfg.embedding.actors * cfg.embedding.gpus_per_actor
    have_cpu, have_gpu = resources.get("CPU", 0), resources.get("GPU", 0)
    return Check(
        "cluster resources",
        have_cpu >= cpus and have_gpu >= gpus,
        f"{have_cpu:g} CPUs, {have_gpu:g} GPUs, {resources.get('memory', 0) / 1e9:.1f} GB "
        f"memory; the config's actor pools need {cpus:g} CPUs, {gpus:g} GPUs",
        "lower the actor counts / cpus_per_actor in the config, or give the cluster more",
    )


def _gpu_check(session, resources: dict[str, float], needed: bool) -> Check:
    import ray

    if not resources.get("GPU"):
        return Check(
            "GPU in a worker",
            False,
            "the cluster has no GPU resource",
            "on Hemma: pass /dev/kfd and /dev/dri to the container and start Ray with "
            "--num-gpus=1 (RAY_NUM_GPUS)",
            required=needed,
        )
    gpu = ray.get(ray.remote(num_gpus=1, num_cpus=0)(probe_gpu).remote())
    return Check(
        "GPU in a worker",
        gpu["available"],
        gpu["detail"],
        "use the ROCm torch of the base image (torch.version.hip set); check the video/render "
        "groups and HIP_VISIBLE_DEVICES",
        required=needed,
    )


def probe_gpu() -> dict[str, Any]:
    try:
        import torch
    except ImportError as exc:
        return {"available": False, "detail": f"torch not importable: {exc}"}
    available = torch.cuda.is_available()
    hip = getattr(torch.version, "hip", None)
    name = torch.cuda.get_device_name(0) if available else "none visible"
    return {
        "available": available,
        "detail": f"torch {torch.__version__}, hip {hip}, cuda {torch.version.cuda}, "
        f"device: {name}",
    }


def probe_cluster(config: dict[str, Any]) -> dict[str, Any]:
    """What a worker on the head node sees (a Ray task)."""
    import ray

    from hemma_features.cache import default_cache_dir
    from hemma_features.pipeline.rundir import runs_root

    cfg = Config.model_validate(config)
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        token_auth = is_token_auth_enabled()
    except Exception:
        token_auth = os.environ.get("RAY_AUTH_MODE") == "token"
    disk = {}
    for label, path in (
        ("runs.dir", runs_root(cfg)),
        ("cache.cluster_dir", Path(cfg.cache.cluster_dir or default_cache_dir()).expanduser()),
    ):
        existing = path
        while not existing.exists():
            existing = existing.parent
        disk[label] = {"path": str(path), "free_gb": shutil.disk_usage(existing).free / 1e9}
    return {
        "ray_version": ray.__version__,
        "python": platform.python_version(),
        "token_auth": token_auth,
        "spacy": _probe_spacy(cfg),
        "embedding": _probe_embedding(cfg),
        "languagetool": _probe_languagetool(cfg),
        "disk": disk,
    }


def _probe_spacy(cfg: Config) -> dict[str, Any]:
    try:
        import spacy

        nlp = spacy.load(cfg.spacy.model)
        return {"ok": True, "detail": f"{cfg.spacy.model} {nlp.meta.get('version')} loads"}
    except Exception as exc:
        return {"ok": False, "detail": f"{cfg.spacy.model}: {type(exc).__name__}: {exc}"[:300]}


def _probe_embedding(cfg: Config) -> dict[str, Any]:
    from hemma_features.stages.embedding_stage import resolve_model_ref

    model = cfg.embedding.model
    try:
        from transformers import AutoConfig

        path = resolve_model_ref(model)
        try:
            AutoConfig.from_pretrained(path, revision=cfg.embedding.revision, local_files_only=True)
            where = "local folder" if Path(path).is_dir() else "in the Hugging Face cache"
            return {"ok": True, "detail": f"{model}: {where}"}
        except OSError:
            AutoConfig.from_pretrained(path, revision=cfg.embedding.revision)
            return {"ok": True, "detail": f"{model}: not cached, downloads at the first run"}
    except Exception as exc:
        return {"ok": False, "detail": f"{model}: {type(exc).__name__}: {exc}"[:300]}


def _probe_languagetool(cfg: Config) -> dict[str, Any]:
    from hemma_features.environment import languagetool_identity

    lt = cfg.languagetool
    if lt.url:
        import requests

        try:
            response = requests.get(f"{lt.url.rstrip('/')}/v2/languages", timeout=10)
            response.raise_for_status()
            return {"ok": True, "detail": f"{lt.url} answers ({len(response.json())} languages)"}
        except Exception as exc:
            return {"ok": False, "detail": f"{lt.url}: {type(exc).__name__}: {exc}"[:300]}
    identity = languagetool_identity(cfg)
    ok = not identity.startswith("absent")
    suffix = "" if ok else f"; on_unavailable={lt.on_unavailable}"
    return {"ok": ok, "detail": f"local server: {identity}{suffix}"}


def cluster_status(session) -> dict[str, Any]:
    """Resources, and each run in progress with its stage actors."""
    import ray

    from hemma_features.detached import RUN_ACTOR_PREFIX, _named_actors

    session.ensure_connected()
    runs = []
    for name in _named_actors(session):
        if not name.startswith(RUN_ACTOR_PREFIX):
            continue
        try:
            actor = ray.get_actor(name, namespace=session.config.cluster.namespace)
            progress = ray.get(actor.progress.remote(), timeout=30)
        except Exception:
            continue
        runs.append({"run_id": name.removeprefix(RUN_ACTOR_PREFIX), **progress})
    return {
        "address": session.address,
        "ray_version": ray.__version__,
        "python": sys.version.split()[0],
        "resources": dict(ray.cluster_resources()),
        "available": dict(ray.available_resources()),
        "runs": runs,
    }
