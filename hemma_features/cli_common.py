"""What the ``hemma-features`` subcommands share: cluster options and result output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hemma_features.schema import read_metadata


def add_cluster_options(parser: argparse.ArgumentParser, inprocess: bool = False) -> None:
    """--config and --address: every subcommand that may talk to a cluster has them."""
    parser.add_argument(
        "--config",
        default=None,
        help="YAML config path or bundled name (local, hemma); default: local",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="'local' (embedded Ray), 'auto', 'ray://HOST:PORT'"
        + (", or 'inprocess' (no Ray)" if inprocess else "")
        + "; default: the config's cluster.address",
    )


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def summary(table, metrics: dict | None, output: Path) -> str:
    meta = read_metadata(table)
    n = table.num_rows
    failed = n - table["error"].null_count
    lines = [
        f"wrote {n} rows to {output} ({failed} with error)",
        f"features: {', '.join(meta['features'])}; fingerprint {meta['fingerprint']}",
    ]
    if metrics:
        bench = metrics["benchmarks"][0]
        lines.append(
            f"{bench['n_essays']} essays in {bench['elapsed_s']:.1f} s "
            f"({bench['essays_per_second']:.2f} essays/s)"
        )
        for stage, values in metrics.get("stages", {}).items():
            lat = values["latency_s"]
            lines.append(
                f"  {stage:<12} actors {values['actors']}  batches {values['batches']:>4}  "
                f"busy {values['busy_s']:8.1f} s  latency mean {lat['mean']:.2f} s  "
                f"p95 {lat['p95']:.2f} s"
            )
    cache = (metrics or {}).get("cache")
    if cache and cache["mode"] != "off":
        here, cluster = cache["this_machine"], cache.get("cluster") or {}
        line = f"cache: {here.get('hits', 0)} hits on this machine"
        if cache["cluster_contacted"]:
            line += (
                f", {cluster.get('hits', 0)} on the cluster, {cluster.get('misses', 0)} "
                f"computed; {_mb(here.get('bytes_read', 0) + cluster.get('bytes_read', 0))} "
                f"read, {_mb(here.get('bytes_written', 0) + cluster.get('bytes_written', 0))} "
                "written"
            )
        else:
            line += f" ({_mb(here.get('bytes_read', 0))} read); the cluster was not contacted"
        lines.append(line)
        for part in here.get("corrupt_parts", []) + cluster.get("corrupt_parts", []):
            lines.append(f"  corrupt cache part ignored and set aside: {part}")
    for stage, reason in (meta.get("skipped") or {}).items():
        lines.append(f"skipped {stage}: its columns are null ({reason.splitlines()[0][:200]})")
    if failed:
        errors = table.filter(table["error"].is_valid())
        lines.append("first errors:")
        for row in errors.select(["essay_id", "error"]).slice(0, 5).to_pylist():
            lines.append(f"  {row['essay_id']!r}: {row['error'][:160]}")
    return "\n".join(lines)


def write_result(table, output: Path, metrics: dict | None, metrics_path: Path | None) -> None:
    """Write a result table (and metrics) and print the end-of-run summary."""
    import pyarrow.parquet as pq

    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, output)
    if metrics_path and metrics is not None:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(metrics, indent=2))
    print(summary(table, metrics, output))
