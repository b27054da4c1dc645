"""Detached runs: started by a client that may then go away, fetched later by any client.

A detached run's coordinator is a named, detached actor on the head node that writes every
finished batch into the run's folder (:mod:`hemma_features.pipeline.rundir`). Clients talk
to the folder through small Ray tasks pinned to the head node, so a run whose coordinator
is gone (finished, killed, cluster restarted) can still be listed, fetched and resumed.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from hemma_features.config import Config
from hemma_features.output import finalize, run_metadata
from hemma_features.pipeline import rundir
from hemma_features.pipeline.runner import ROW_INDEX, merge_stage_info

if TYPE_CHECKING:
    from hemma_features.session import Session

log = logging.getLogger(__name__)

RUN_ACTOR_PREFIX = "hemma_features-run-"
# How long ``cancel`` waits for a coordinator to stop by itself before killing it.
_CANCEL_WAIT_S = 15.0


# -- tasks that run on the head node, next to the run folders --------------------------------


def _read_run(config: dict[str, Any], run_id: str, seen: list[str]) -> dict[str, Any]:
    run = rundir.RunDir.under(rundir.runs_root(Config.model_validate(config)), run_id)
    if not run.exists():
        return {"missing": True}
    info = run.read_info()  # before the parts: a part written after this is read next time
    names, table = run.read_parts(skip=seen)
    return {"info": info, "names": names, "table": table}


def _read_info(config: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    run = rundir.RunDir.under(rundir.runs_root(Config.model_validate(config)), run_id)
    return run.read_info() if run.exists() else None


def _list_runs(config: dict[str, Any]) -> list[dict[str, Any]]:
    cfg = Config.model_validate(config)
    root = rundir.runs_root(cfg)
    removed = rundir.cleanup_runs(root, cfg.runs.retention_days)
    if removed:
        log.info(
            "removed %d finished runs older than %s days", len(removed), cfg.runs.retention_days
        )
    return rundir.list_runs(root)


def _mark_run(config: dict[str, Any], run_id: str, changes: dict[str, Any]) -> None:
    run = rundir.RunDir.under(rundir.runs_root(Config.model_validate(config)), run_id)
    if run.exists():
        run.update_info(**changes)


def on_head(fn):
    """``fn`` as a Ray task that runs on the head node and reserves no CPU."""
    import ray

    from hemma_features.session import HEAD_NODE_RESOURCE

    return ray.remote(num_cpus=0, resources={HEAD_NODE_RESOURCE: 0.001}, max_retries=2)(fn)


# -- the client side ---------------------------------------------------------------------------


def coordinator_of(session: Session, run_id: str):
    """The live coordinator of ``run_id``, or ``None``."""
    import ray

    try:
        actor = ray.get_actor(RUN_ACTOR_PREFIX + run_id, namespace=session.config.cluster.namespace)
        ray.get(actor.ping.remote(), timeout=30)
        return actor
    except (ValueError, ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return None


def submit(session: Session, canonical: pa.Table, features: tuple[str, ...], cache: str) -> str:
    """Start a detached run over ``canonical``; returns its run id at once."""
    session.ensure_connected()
    run_id = rundir.new_run_id()
    indexed = canonical.append_column(ROW_INDEX, pa.array(range(canonical.num_rows), pa.int64()))
    _start(session, run_id, indexed, session.config, features, cache, resume=False)
    log.info("submitted run %s (%d rows)", run_id, canonical.num_rows)
    return run_id


def _start(
    session: Session,
    run_id: str,
    table: pa.Table | None,
    config: Config,
    features: tuple[str, ...],
    cache: str,
    *,
    resume: bool,
) -> dict[str, Any]:
    import ray

    from hemma_features.session import coordinator_actor

    coordinator = coordinator_actor(config, RUN_ACTOR_PREFIX + run_id, detached=True)
    options = {
        "cache": cache,
        "run_id": run_id,
        "resume": resume,
        "info": {
            "config": config.model_dump(),
            "features": list(features),
            "cache_mode": cache,
            "address": session.address,
            "n_rows": None if table is None else table.num_rows,
        },
    }
    return ray.get(
        coordinator.start.remote(
            None if table is None else ray.put(table),
            config.model_dump(),
            list(features),
            None,
            options,
        )
    )


def list_runs(session: Session) -> list[dict[str, Any]]:
    """Every run on the cluster, newest first, with ``alive`` (its coordinator is up) and
    ``state`` ``interrupted`` for a running run whose coordinator is gone."""
    import ray

    session.ensure_connected()
    runs = ray.get(on_head(_list_runs).remote(session.config.model_dump()))
    alive = {
        name.removeprefix(RUN_ACTOR_PREFIX)
        for name in _named_actors(session)
        if name.startswith(RUN_ACTOR_PREFIX)
    }
    for run in runs:
        run["alive"] = run["run_id"] in alive
        if run.get("state") == rundir.RUNNING and not run["alive"]:
            run["state"] = "interrupted"
    return runs


def _named_actors(session: Session) -> list[str]:
    import ray

    found = ray.util.list_named_actors(all_namespaces=True)
    namespace = session.config.cluster.namespace
    return [a["name"] for a in found if a.get("namespace") == namespace]


def fetch(session: Session, run_id: str, *, progress: bool = True) -> pa.Table:
    """The results of ``run_id``, waiting for the rest while the run is going."""
    import ray
    from tqdm.auto import tqdm

    from hemma_features.session import RunError, _reassemble

    session.ensure_connected()
    reader = on_head(_read_run)
    config = session.config.model_dump()
    seen: list[str] = []
    parts: list[pa.Table] = []
    bar = tqdm(unit="essay", desc=f"run {run_id}", disable=not progress)
    try:
        while True:
            answer = ray.get(reader.remote(config, run_id, seen))
            if answer.get("missing"):
                raise _no_such_run(run_id)
            info = answer["info"]
            bar.total = info.get("n_rows")
            seen += answer["names"]
            if answer["table"] is not None:
                parts.append(answer["table"])
                bar.update(answer["table"].num_rows)
            state = info["state"]
            if state == rundir.DONE and answer["table"] is None:
                break
            if state in (rundir.FAILED, rundir.CANCELLED):
                raise RunError(f"run {run_id} {state}: {info.get('error') or ''}".strip())
            if state == rundir.RUNNING and answer["table"] is None:
                # run.json is read again: the coordinator may have just finished.
                if (
                    coordinator_of(session, run_id) is None
                    and run_info(session, run_id)["state"] == rundir.RUNNING
                ):
                    raise RunError(
                        f"run {run_id} was interrupted ({info.get('rows_done', 0)} of "
                        f"{info.get('n_rows')} rows done); continue it with "
                        f"`hemma-features extract --resume {run_id} -o OUT.parquet`"
                    )
                time.sleep(1.0)
    finally:
        bar.close()
    return _finalize_run(info, _reassemble(parts, info["n_rows"]))


def run_info(session: Session, run_id: str) -> dict[str, Any]:
    """``run.json`` of ``run_id`` (read on the head node, parts untouched)."""
    import ray

    info = ray.get(on_head(_read_info).remote(session.config.model_dump(), run_id))
    if info is None:
        raise _no_such_run(run_id)
    return info


def _no_such_run(run_id: str) -> Exception:
    from hemma_features.session import RunError

    return RunError(f"no run {run_id!r} on the cluster (see `hemma-features runs`)")


def _finalize_run(info: dict[str, Any], processed: pa.Table) -> pa.Table:
    config = Config.model_validate(info["config"])
    features = tuple(info["features"])
    versions, dim, skipped = merge_stage_info(
        info.get("stage_info", {}), info.get("earlier_info", [])
    )
    metadata = run_metadata(config, features, versions, dim, skipped, info.get("environment"))
    metadata["run_id"] = info.get("run_id")
    return finalize(processed, features, dim, metadata)


def cancel(session: Session, run_id: str) -> str:
    """Stop ``run_id``; returns the state it ended in."""
    import ray

    session.ensure_connected()
    config = session.config.model_dump()
    coordinator = coordinator_of(session, run_id)
    if coordinator is not None:
        ray.get(coordinator.cancel.remote())
        deadline = time.monotonic() + _CANCEL_WAIT_S
        while time.monotonic() < deadline and coordinator_of(session, run_id) is not None:
            time.sleep(0.5)
        if coordinator_of(session, run_id) is not None:
            ray.kill(coordinator, no_restart=True)
    state = run_info(session, run_id)["state"]
    if state == rundir.RUNNING:
        ray.get(
            on_head(_mark_run).remote(
                config, run_id, {"state": rundir.CANCELLED, "error": "cancelled"}
            )
        )
        return rundir.CANCELLED
    return state


def resume(session: Session, run_id: str, cache: str = "on") -> dict[str, Any]:
    """Continue an interrupted run: only rows without a result are computed. Returns the
    coordinator's start report (``to_compute`` rows)."""

    from hemma_features.session import RunError

    session.ensure_connected()
    info = run_info(session, run_id)
    if coordinator_of(session, run_id) is not None:
        raise RunError(f"run {run_id} is still running; fetch it instead")
    if info["state"] == rundir.DONE:
        return {"n_rows": info["n_rows"], "to_compute": 0}
    config = Config.model_validate(info["config"])
    return _start(session, run_id, None, config, tuple(info["features"]), cache, resume=True)
