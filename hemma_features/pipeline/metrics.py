"""Run metrics: stage busy time and batch latency from the timing columns, essays/s."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from hemma_features.pipeline.executor import BATCH_ID_PREFIX, SECONDS_PREFIX


class StageTimings:
    """Collects each stage's batch durations (one per distinct batch id)."""

    def __init__(self) -> None:
        self.batches: dict[str, dict[str, float]] = {}
        self.rows: dict[str, int] = {}

    def absorb(self, table: pa.Table) -> pa.Table:
        """Record the timing columns of ``table`` and return it without them."""
        timing = [n for n in table.column_names if n.startswith(BATCH_ID_PREFIX)]
        for id_column in timing:
            stage = id_column[len(BATCH_ID_PREFIX) :]
            seconds = table[SECONDS_PREFIX + stage].to_pylist()
            seen = self.batches.setdefault(stage, {})
            self.rows[stage] = self.rows.get(stage, 0) + table.num_rows
            for batch_id, value in zip(table[id_column].to_pylist(), seconds, strict=True):
                seen[batch_id] = value
        drop = timing + [SECONDS_PREFIX + n[len(BATCH_ID_PREFIX) :] for n in timing]
        return table.drop_columns(drop) if drop else table

    def summary(self, actors: dict[str, int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for stage, batches in self.batches.items():
            durations = np.array(list(batches.values()), dtype=np.float64)
            out[stage] = {
                "actors": actors.get(stage),
                "batches": len(durations),
                "rows": self.rows.get(stage, 0),
                "busy_s": round(float(durations.sum()), 4),
                "latency_s": latency(durations),
            }
        return out


def latency(durations: np.ndarray) -> dict[str, float]:
    if not len(durations):
        return {"mean": 0.0, "p95": 0.0, "p99": 0.0}
    return {
        "mean": round(float(durations.mean()), 4),
        "p95": round(float(np.percentile(durations, 95)), 4),
        "p99": round(float(np.percentile(durations, 99)), 4),
    }


def run_metrics(
    name: str,
    n_essays: int,
    elapsed_s: float,
    stages: dict[str, Any],
    config: dict[str, Any],
    fingerprint: str,
    **extra: Any,
) -> dict[str, Any]:
    """The metrics JSON, shaped as the research team's runs record it."""
    return {
        "benchmarks": [
            {
                "name": name,
                "n_essays": n_essays,
                "elapsed_s": round(elapsed_s, 3),
                "essays_per_second": round(n_essays / elapsed_s, 3) if elapsed_s > 0 else 0.0,
            }
        ],
        "stages": stages,
        "config": config,
        "fingerprint": fingerprint,
        **extra,
    }
