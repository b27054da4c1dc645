"""Operations subcommands: detached runs (runs, fetch, cancel), the cache, the cluster."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hemma_features.cli_common import add_cluster_options, write_result


def add_ops_commands(sub) -> None:
    runs = sub.add_parser("runs", help="list the cluster's detached runs with their progress")
    add_cluster_options(runs)
    runs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    runs.set_defaults(handler=_runs)

    fetch = sub.add_parser(
        "fetch",
        help="get a detached run's results, waiting for the rest if it is still going",
    )
    fetch.add_argument("run_id", help="the id `extract --detach` printed")
    fetch.add_argument("-o", "--output", type=Path, required=True, help="output .parquet file")
    add_cluster_options(fetch)
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    fetch.set_defaults(handler=_fetch)

    cancel = sub.add_parser("cancel", help="stop a detached run")
    cancel.add_argument("run_id")
    add_cluster_options(cancel)
    cancel.set_defaults(handler=_cancel)

    cache = sub.add_parser(
        "cache",
        help="show or prune the result cache",
        description="The result cache on this machine (and, with --address, the cluster's).",
    )
    cache.add_argument("action", choices=("stats", "prune"))
    cache.add_argument(
        "--older-than", type=float, default=None, metavar="DAYS", help="prune: parts older than"
    )
    cache.add_argument(
        "--fingerprint", default=None, help="prune: only (or all of) this fingerprint's parts"
    )
    cache.add_argument(
        "--config", default=None, help="YAML config path or bundled name; default: local"
    )
    cache.add_argument(
        "--address",
        default=None,
        help="also the cluster's cache, on the cluster at this address (default: this "
        "machine's only)",
    )
    cache.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cache.set_defaults(handler=_cache)

    cluster = sub.add_parser("cluster", help="the cluster's resources, stage actors and runs")
    cluster.add_argument("action", choices=("status",))
    add_cluster_options(cluster)
    cluster.add_argument("--json", action="store_true", help="print JSON instead of text")
    cluster.set_defaults(handler=_cluster_status)

    doctor = sub.add_parser(
        "doctor",
        help="check that this machine and the cluster can run extractions",
        description="One table of checks, each failure with a fix. Exit 1 if a required "
        "check fails.",
    )
    add_cluster_options(doctor)
    doctor.set_defaults(handler=_doctor)


def _session(args: argparse.Namespace):
    from hemma_features.session import connect

    return connect(args.address, args.config)


def _age(seconds_since_epoch: float | None) -> str:
    if not seconds_since_epoch:
        return "-"
    minutes = (time.time() - seconds_since_epoch) / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _runs(args: argparse.Namespace) -> int:
    with _session(args) as session:
        runs = session.runs()
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    if not runs:
        print("no runs on the cluster")
        return 0
    print(f"{'RUN ID':<24} {'STATE':<12} {'ROWS':>13}  {'STARTED':>9}  ERROR")
    for run in runs:
        rows = f"{run.get('rows_done') or 0}/{run.get('n_rows') or '?'}"
        error = (run.get("error") or "").splitlines()[0][:60] if run.get("error") else ""
        print(
            f"{run['run_id']:<24} {run['state']:<12} {rows:>13}  "
            f"{_age(run.get('created')):>9}  {error}"
        )
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from hemma_features.inputs import InputError

    if args.output.suffix.lower() != ".parquet":
        raise InputError(f"output must be a .parquet file, got {args.output}")
    with _session(args) as session:
        table = session.fetch(args.run_id, progress=not args.no_progress)
    write_result(table, args.output, None, None)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _session(args) as session:
        state = session.cancel(args.run_id)
    print(f"run {args.run_id}: {state}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from hemma_features.cache import ResultStore, default_cache_dir
    from hemma_features.config import load_config

    config = load_config(args.config)
    store = ResultStore(config.cache.dir or default_cache_dir())
    report = {"this_machine": _store_action(store, args.action, args.older_than, args.fingerprint)}
    if args.address:
        import ray

        from hemma_features.detached import on_head
        from hemma_features.session import connect

        with connect(args.address, config) as session:
            report["cluster"] = ray.get(
                on_head(_cluster_cache_action).remote(
                    session.config.model_dump(), args.action, args.older_than, args.fingerprint
                )
            )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    for where, result in report.items():
        label = "this machine" if where == "this_machine" else "cluster"
        print(f"{label}: {result['root']}")
        if args.action == "prune":
            removed = result["removed"]
            print(f"  removed {removed['parts']} parts, {removed['bytes'] / 1e6:.1f} MB")
            continue
        if not result["fingerprints"]:
            print("  empty")
        for fp in result["fingerprints"]:
            print(
                f"  {fp['fingerprint']}  {fp['rows']:>8} rows  {fp['parts']:>4} parts  "
                f"{fp['bytes'] / 1e6:8.1f} MB  newest {_age(fp['newest']):>9}  "
                f"{','.join(fp['features'])}"
                + (f"  {fp['corrupt_parts']} corrupt" if fp["corrupt_parts"] else "")
            )
    return 0


def _store_action(store, action: str, older_than: float | None, fingerprint: str | None) -> dict:
    if action == "prune":
        return {"root": str(store.root), "removed": store.prune(older_than, fingerprint)}
    return {"root": str(store.root), "fingerprints": store.stats()}


def _cluster_cache_action(
    config: dict, action: str, older_than: float | None, fingerprint: str | None
) -> dict:
    from hemma_features.cache import ResultStore, default_cache_dir
    from hemma_features.config import Config

    cfg = Config.model_validate(config)
    return _store_action(
        ResultStore(cfg.cache.cluster_dir or default_cache_dir()), action, older_than, fingerprint
    )


def _cluster_status(args: argparse.Namespace) -> int:
    from hemma_features.doctor import cluster_status

    with _session(args) as session:
        status = cluster_status(session)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    total, free = status["resources"], status["available"]
    print(f"cluster at {status['address']} (Ray {status['ray_version']})")
    for key in ("CPU", "GPU", "memory", "object_store_memory"):
        if key in total:
            scale = 1e9 if "memory" in key else 1
            unit = " GB" if "memory" in key else ""
            print(
                f"  {key:<20} {free.get(key, 0) / scale:8.1f} free of "
                f"{total[key] / scale:.1f}{unit}"
            )
    if not status["runs"]:
        print("no runs in progress")
    for run in status["runs"]:
        actors = ", ".join(
            f"{stage} {run['actors_started'].get(stage, 0)}/{n}"
            for stage, n in run["actors"].items()
        )
        print(
            f"run {run['run_id']}: {run['rows_done']}/{run['n_rows']} rows"
            + (" (detached)" if run["detached"] else "")
            + (f"; stage actors started/configured: {actors}" if actors else "")
        )
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from hemma_features.doctor import format_checks, run_checks

    checks = run_checks(args.address, args.config)
    print(format_checks(checks))
    failed = [c for c in checks if c.required and not c.ok]
    if failed:
        print(f"\n{len(failed)} required check(s) failed", file=sys.stderr)
        return 1
    return 0
