"""A detached run's folder on the cluster: its input, its finished parts, its state.

Layout of ``RUNS/<run_id>/``::

    input.parquet     the canonical input with the row index (written once, at submit)
    run.json          config, features, state, counts, what the stages reported
    parts/part-<n>.parquet   finished rows, written as they arrive (atomic renames)

Everything a run has finished is on disk, so a client can die, a coordinator can die, the
cluster can restart: :func:`missing_rows` tells a resumed run what is left to compute.
Pure file code, no Ray: the coordinator and small Ray tasks on the head node call it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hemma_features.cache import user_cache_home
from hemma_features.config import Config

log = logging.getLogger(__name__)

RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
FINISHED_STATES = (DONE, FAILED, CANCELLED)
# What a run listing shows of each run.json.
_LISTED = (
    "run_id",
    "state",
    "rows_done",
    "n_rows",
    "features",
    "address",
    "created",
    "updated",
    "finished",
    "error",
    "resumes",
    "cache",
)


def runs_root(config: Config) -> Path:
    """The runs folder, resolved on the machine that calls it (the head node)."""
    return Path(config.runs.dir).expanduser() if config.runs.dir else user_cache_home() / "runs"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + uuid.uuid4().hex[:6]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class RunDir:
    """One run's folder."""

    path: Path

    @classmethod
    def under(cls, root: str | os.PathLike[str], run_id: str) -> RunDir:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"not a run id: {run_id!r}")
        return cls(Path(root).expanduser() / run_id)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def parts_dir(self) -> Path:
        return self.path / "parts"

    def exists(self) -> bool:
        return (self.path / "run.json").is_file()

    # -- state ----------------------------------------------------------------------------

    def create(self, table: pa.Table, info: dict[str, Any]) -> None:
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, self.path / "input.parquet", write_page_checksum=True)
        self.write_info({**info, "state": RUNNING, "created": time.time()})

    def read_info(self) -> dict[str, Any]:
        return json.loads((self.path / "run.json").read_text())

    def write_info(self, info: dict[str, Any]) -> None:
        info = {**info, "updated": time.time()}
        _atomic_write_bytes(self.path / "run.json", json.dumps(info, default=str).encode())

    def update_info(self, **changes: Any) -> dict[str, Any]:
        info = {**self.read_info(), **changes}
        self.write_info(info)
        return info

    def read_input(self) -> pa.Table:
        return pq.read_table(self.path / "input.parquet", page_checksum_verification=True)

    # -- results --------------------------------------------------------------------------

    def write_part(self, table: pa.Table) -> Path:
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet"
        tmp = self.parts_dir / f".tmp-{name}"
        pq.write_table(table, tmp, write_page_checksum=True)
        os.replace(tmp, self.parts_dir / name)
        return self.parts_dir / name

    def part_names(self) -> list[str]:
        return sorted(p.name for p in self.parts_dir.glob("part-*.parquet"))

    def read_parts(self, skip: Iterable[str] = ()) -> tuple[list[str], pa.Table | None]:
        """The parts not in ``skip``, as one table; unreadable parts are reported, renamed
        ``*.corrupt`` and left out (a resume computes their rows again)."""
        skip = set(skip)
        names, tables = [], []
        for name in self.part_names():
            if name in skip:
                continue
            path = self.parts_dir / name
            try:
                tables.append(pq.read_table(path, page_checksum_verification=True))
            except (OSError, pa.ArrowException) as exc:
                log.warning("run part %s is unreadable (%s); left out", path, exc)
                path.rename(path.with_suffix(".corrupt"))
                continue
            names.append(name)
        table = pa.concat_tables(tables, promote_options="permissive") if tables else None
        return names, table

    def done_rows(self, row_column: str) -> pa.Array:
        """Row indices that already have a result (distinct)."""
        # Whole parts, not just the row column: only a full read verifies every page's
        # checksum, and a part that fails must be recomputed, not trusted.
        _, table = self.read_parts()
        if table is None:
            return pa.array([], pa.int64())
        return pc.unique(table[row_column].combine_chunks())


def missing_rows(table: pa.Table, done: pa.Array, row_column: str) -> pa.Table:
    """The rows of ``table`` whose index is not in ``done``."""
    return table.filter(pc.invert(pc.is_in(table[row_column], done)))


def list_runs(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every run under ``root`` with its state, newest first."""
    out = []
    for path in Path(root).expanduser().glob("*/run.json"):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        info["run_id"] = path.parent.name
        out.append({k: info.get(k) for k in _LISTED})
    return sorted(out, key=lambda i: i.get("created", 0), reverse=True)


def cleanup_runs(root: str | os.PathLike[str], retention_days: float) -> list[str]:
    """Delete finished runs whose last update is older than ``retention_days``."""
    cutoff = time.time() - retention_days * 86400
    removed = []
    for info in list_runs(root):
        if info.get("state") in FINISHED_STATES and info.get("updated", 0) < cutoff:
            shutil.rmtree(Path(root).expanduser() / info["run_id"], ignore_errors=True)
            removed.append(info["run_id"])
    return removed
