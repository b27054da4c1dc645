"""The coordinator: a Ray actor on the cluster that runs one extraction.

Ray Data's streaming executor cannot be driven from a Ray Client driver, so the pipeline
runs here, in a thread of an actor that reserves no CPU and serves concurrent calls. The
driver (local or through ``ray://``) pulls finished Arrow batches with :meth:`poll`; a
detached run instead writes them to its run folder (:mod:`hemma_features.pipeline.rundir`)
and the driver may be gone. Before computing, the coordinator looks every row up in the
cluster's result cache and sends only the misses through the stages; new results are
added to the cache as they arrive.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from typing import Any

import numpy as np
import pyarrow as pa

from hemma_features.blocks import ramped_blocks
from hemma_features.cache import (
    KEY,
    CacheCounts,
    CacheWriter,
    ResultStore,
    cacheable_rows,
    default_cache_dir,
    part_metadata,
    row_keys,
    worth_caching,
)
from hemma_features.config import Config
from hemma_features.environment import environment_versions
from hemma_features.output import result_fingerprint
from hemma_features.pipeline import rundir
from hemma_features.pipeline.executor import apply_stage
from hemma_features.pipeline.metrics import StageTimings
from hemma_features.schema import feature_columns
from hemma_features.stages import TEXT_LIST_COLUMNS, stages_for

log = logging.getLogger(__name__)

ROW_INDEX = "_hf_row"
# Columns the stages read but the driver does not need back.
_INTERNAL_INPUTS = ("text", "prompt", *TEXT_LIST_COLUMNS, KEY)
# Cache modes: look up and write ("on"), only write ("refresh"), neither ("off").
CACHE_MODES = ("on", "refresh", "off")
# A finished detached coordinator lingers this long so that last polls get their answer.
_DETACHED_LINGER_S = 5.0


class Coordinator:
    """Runs the Ray Data pipeline for one run and buffers (or writes) its finished rows."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._ready: list[pa.Table] = []
        self._rows_done = 0
        self._n_rows = 0
        self._done = False
        self._error: str | None = None
        self._cancelled = False
        self._stage_info: dict[str, list[dict[str, Any]]] = {}
        # Stage reports from before this coordinator: cache parts it returned, earlier
        # attempts of a resumed run. Versions and embedding size come from there when no
        # stage had to run.
        self._earlier_info: list[dict[str, Any]] = []
        self._timings = StageTimings()
        self._actors: dict[str, int] = {}
        self._started = 0.0
        self._thread: threading.Thread | None = None
        self._run_dir: rundir.RunDir | None = None
        self._cache_counts = CacheCounts()
        self._writer: CacheWriter | None = None
        self._writer_columns: tuple[str, ...] = ()
        # Rows whose text and prompt another row already has: computed once, copied out.
        self._copies: dict[str, list[tuple[int, Any]]] = {}
        self._environment: dict[str, str | None] = {}
        self._fingerprint = ""
        self._features: tuple[str, ...] = ()

    # -- called by the driver -------------------------------------------------------------

    def start(
        self,
        table: pa.Table | None,
        config: dict[str, Any],
        features: list[str],
        stage_classes: list[type] | None = None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start the pipeline over ``table`` (canonical columns plus the row index).

        ``stage_classes`` default to the stages the feature groups need (and only then is
        the cache used). ``options``: ``cache`` (one of :data:`CACHE_MODES`, default off),
        ``run_id`` (a detached run: results go to its folder under ``runs.dir`` on this
        node, not to :meth:`poll`), ``resume`` (continue that run: ``table`` is read from
        its folder) and ``info`` (what a new run folder's run.json starts with).
        Returns the rows in total, the rows to compute, the fingerprint and cache counts.
        """
        options = options or {}
        cfg = Config.model_validate(config)
        stages = list(stage_classes) if stage_classes else stages_for(features)
        self._features = tuple(features)
        self._started = time.time()
        if options.get("run_id"):
            table = self._open_run_dir(cfg, options["run_id"], table, options)
        assert table is not None
        self._n_rows += table.num_rows
        if not stage_classes:
            self._environment = environment_versions(cfg, features)
            self._fingerprint = result_fingerprint(cfg, features, self._environment)
            table = self._use_cache(table, cfg, options.get("cache", "off"))
        to_compute = table.num_rows
        self._thread = threading.Thread(
            target=self._run, args=(table, cfg, tuple(features), stages), daemon=True
        )
        self._thread.start()
        return {
            "n_rows": self._n_rows,
            "to_compute": to_compute,
            "fingerprint": self._fingerprint,
            "environment": self._environment,
            "cache": self._cache_counts.as_dict(),
        }

    def poll(self, timeout_s: float = 1.0) -> dict[str, Any]:
        """Finished rows since the last poll (one table or ``None``) and the run's state."""
        with self._lock:
            if not self._ready and not self._done:
                self._lock.wait(timeout=timeout_s)
            ready, self._ready = self._ready, []
            state = {
                "rows_done": self._rows_done,
                "n_rows": self._n_rows,
                "done": self._done,
                "error": self._error,
            }
        state["table"] = pa.concat_tables(ready, promote_options="permissive") if ready else None
        return state

    def summary(self) -> dict[str, Any]:
        """Stage timings, actors, what the stage actors reported, cache counts."""
        with self._lock:
            info = {name: list(reports) for name, reports in self._stage_info.items()}
            stages = self._timings.summary(self._actors)
            for name, reports in info.items():
                # Start-up: how long after the run began the first actor of each stage could
                # take work, and how long its model took to load.
                first = min(reports, key=lambda r: r["ready_at"])
                stages.setdefault(name, {}).update(
                    ready_after_s=round(first["ready_at"] - self._started, 2),
                    load_s=first["load_s"],
                )
            counts = self._cache_counts.as_dict()
            if self._writer is not None:
                written = self._writer.counts
                counts.update(
                    bytes_written=written.bytes_written, rows_written=written.rows_written
                )
            return {
                "stages": stages,
                "stage_info": info,
                "earlier_info": list(self._earlier_info),
                "elapsed_s": time.time() - self._started,
                "cache": counts,
                "fingerprint": self._fingerprint,
                "environment": self._environment,
            }

    def progress(self) -> dict[str, Any]:
        """Rows finished and rows in total, without taking any batches."""
        with self._lock:
            return {
                "rows_done": self._rows_done,
                "n_rows": self._n_rows,
                "done": self._done,
                "error": self._error,
                "actors": dict(self._actors),
                "actors_started": {n: len(r) for n, r in self._stage_info.items()},
                "detached": self._run_dir is not None,
            }

    def stage_pids(self) -> dict[str, list[int]]:
        with self._lock:
            return {n: [r["pid"] for r in reports] for n, reports in self._stage_info.items()}

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            self._lock.notify_all()

    def ping(self) -> bool:
        return True

    # -- called by stage actors -----------------------------------------------------------

    def report_stage(self, stage: str, info: dict[str, Any]) -> None:
        with self._lock:
            self._stage_info.setdefault(stage, []).append(info)

    # -- set-up ---------------------------------------------------------------------------

    def _open_run_dir(
        self, config: Config, run_id: str, table: pa.Table | None, options: dict[str, Any]
    ) -> pa.Table:
        """Create the run folder (new run) or read what is left to do from it (resume)."""
        root = rundir.runs_root(config)
        self._run_dir = run = rundir.RunDir.under(root, run_id)
        if not options.get("resume"):
            assert table is not None
            rundir.cleanup_runs(root, config.runs.retention_days)
            run.create(table, {**options.get("info", {}), "run_id": run.run_id, **_whereabouts()})
            return table
        info = run.read_info()
        full = run.read_input()
        done = run.done_rows(ROW_INDEX)
        self._rows_done = self._n_rows = len(done)
        self._earlier_info = list(info.get("earlier_info", []))
        for name, reports in info.get("stage_info", {}).items():
            self._earlier_info += [
                {**r, "skipped": {name: r["skipped"]} if r.get("skipped") else {}} for r in reports
            ]
        run.update_info(
            state=rundir.RUNNING, resumes=info.get("resumes", 0) + 1, error=None, **_whereabouts()
        )
        return rundir.missing_rows(full, done, ROW_INDEX)

    def _use_cache(self, table: pa.Table, config: Config, mode: str) -> pa.Table:
        """Emit the rows the cluster's cache holds; return the rows left to compute."""
        if mode not in CACHE_MODES:
            raise ValueError(f"cache mode must be one of {CACHE_MODES}, not {mode!r}")
        if mode == "off" or not config.cache.enabled:
            return table
        store = ResultStore(config.cache.cluster_dir or default_cache_dir())
        keys = row_keys(table["text"].to_pylist(), table["prompt"].to_pylist(), self._fingerprint)
        table = table.append_column(KEY, pa.array(keys, pa.string()))
        self._writer = CacheWriter(
            store,
            self._fingerprint,
            self._cache_part_metadata,
            flush_rows=config.cache.flush_rows,
            flush_s=config.cache.flush_s,
        )
        self._writer_columns = feature_columns(self._features)
        pending = table.filter(table["error"].is_null())
        if mode == "refresh" or pending.num_rows == 0:
            self._cache_counts.misses = pending.num_rows
            return self._compute_once(table)
        found = store.lookup(self._fingerprint, pending[KEY].to_pylist())
        self._cache_counts = found.counts
        if found.table is None:
            return self._compute_once(table)
        if found.metadata:
            self._earlier_info.append(found.metadata)
        eligible = np.asarray(table["error"].is_null().to_numpy(zero_copy_only=False))
        hit_mask, cached = found.align(keys, eligible)
        hits = table.filter(pa.array(hit_mask)).select([ROW_INDEX, "essay_id", "error"])
        for name in cached.column_names:
            hits = hits.append_column(name, cached[name])
        self._emit(hits)
        return self._compute_once(table.filter(pa.array(~hit_mask)))

    def _compute_once(self, table: pa.Table) -> pa.Table:
        """Keep one row per key; the others get its results (:meth:`_with_copies`), so
        equal inputs get equal outputs within a run and in every later cached run (an
        embedding's last bits depend on which texts share its batch)."""
        keys = table[KEY].to_pylist()
        ok = table["error"].is_null().to_pylist()
        ids = table["essay_id"].to_pylist()
        row_index = table[ROW_INDEX].to_pylist()
        first: dict[str, int] = {}
        keep = []
        for i, key in enumerate(keys):
            if ok[i] and key in first:
                self._copies.setdefault(key, []).append((row_index[i], ids[i]))
            else:
                first.setdefault(key, i)
                keep.append(i)
        return table if len(keep) == len(keys) else table.take(pa.array(keep))

    def _with_copies(self, batch: pa.Table) -> pa.Table:
        """``batch`` plus a copy of each computed row for every row that shares its key."""
        if not self._copies:
            return batch
        take, rows, ids = [], [], []
        for i, key in enumerate(batch[KEY].to_pylist()):
            for row, essay_id in self._copies.get(key, ()):
                take.append(i)
                rows.append(row)
                ids.append(essay_id)
        if not take:
            return batch
        extra = batch.take(pa.array(take))
        for name, values in ((ROW_INDEX, rows), ("essay_id", ids)):
            index = extra.schema.get_field_index(name)
            extra = extra.set_column(index, name, pa.array(values, batch.schema.field(name).type))
        return pa.concat_tables([batch, extra])

    def _cache_part_metadata(self) -> dict[str, Any]:
        with self._lock:
            versions, dim, skipped = merge_stage_info(self._stage_info)
        return part_metadata(self._features, self._environment, versions, dim, skipped)

    def _cache_allowed(self) -> bool:
        with self._lock:
            _, _, skipped = merge_stage_info(self._stage_info)
        return worth_caching(self._environment, skipped)

    # -- results --------------------------------------------------------------------------

    def _emit(self, batch: pa.Table) -> None:
        """Hand finished rows to the driver (or the run folder) and count them."""
        if self._run_dir is not None:
            self._run_dir.write_part(batch)
        with self._lock:
            if self._run_dir is None:
                self._ready.append(batch)
            self._rows_done += batch.num_rows
            self._lock.notify_all()
        if self._run_dir is not None:
            self._run_dir.update_info(rows_done=self._rows_done, n_rows=self._n_rows)

    # -- the pipeline thread --------------------------------------------------------------

    def _run(
        self, table: pa.Table, config: Config, features: tuple[str, ...], stages: list[type]
    ) -> None:
        try:
            if table.num_rows:
                self._run_pipeline(table, config, features, stages)
        except Exception as exc:
            log.exception("pipeline failed")
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
        finally:
            if self._writer is not None:
                self._writer.flush()
            with self._lock:
                self._done = True
                self._lock.notify_all()
            if self._run_dir is not None:
                self._finish_run_dir()

    def _run_pipeline(
        self, table: pa.Table, config: Config, features: tuple[str, ...], stages: list[type]
    ) -> None:
        import ray
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.execution_options.preserve_order = False  # the driver restores order
        me = ray.get_runtime_context().current_actor
        ds = ray.data.from_arrow(ramped_blocks(table, config.pipeline.block_rows))
        for stage_cls in stages:
            self._actors[stage_cls.name] = stage_cls.resources(config).actors
            ds = apply_stage(ds, stage_cls, config, features, coordinator=me)
        # No prefetch: a prefetching iterator held finished rows back until the end.
        batches = ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0)
        for batch in batches:
            batch = self._timings.absorb(batch)
            if self._writer is not None and self._cache_allowed():
                self._writer.add(
                    cacheable_rows(batch, batch[KEY].to_pylist(), self._writer_columns)
                )
            if KEY in batch.column_names:
                batch = self._with_copies(batch)
            batch = batch.drop_columns([c for c in _INTERNAL_INPUTS if c in batch.column_names])
            with self._lock:
                if self._cancelled:
                    self._error = "cancelled"
                    break
            self._emit(batch)

    def _finish_run_dir(self) -> None:
        """Record how the run ended; a detached coordinator then goes away by itself."""
        import ray

        assert self._run_dir is not None
        state = rundir.DONE
        if self._error == "cancelled":
            state = rundir.CANCELLED
        elif self._error:
            state = rundir.FAILED
        summary = self.summary()
        stage_info = {
            name: [
                {k: r[k] for k in ("versions", "embedding_dim", "skipped") if k in r} for r in rs
            ]
            for name, rs in summary["stage_info"].items()
        }
        self._run_dir.update_info(
            state=state,
            error=self._error,
            rows_done=self._rows_done,
            n_rows=self._n_rows,
            stage_info=stage_info,
            earlier_info=summary["earlier_info"],
            cache=summary["cache"],
            stages=summary["stages"],
            finished=time.time(),
            environment=self._environment,
            fingerprint=self._fingerprint,
        )
        time.sleep(_DETACHED_LINGER_S)
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def _whereabouts() -> dict[str, Any]:
    """Where this coordinator runs, for people (and tests) who need to find it."""
    return {"coordinator_pid": os.getpid(), "coordinator_host": socket.gethostname()}


def merge_stage_info(
    stage_info: dict[str, list[dict[str, Any]]],
    earlier: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> tuple[dict[str, str | None], int | None, dict[str, str]]:
    """Versions, embedding size and skipped stages from stage reports (``stage_info``) and
    from earlier reports (cache parts, earlier attempts: ``versions``, ``embedding_dim``,
    ``skipped`` as a stage → reason mapping). Live reports win."""
    versions: dict[str, str | None] = {}
    dim = None
    skipped: dict[str, str] = {}
    for report in earlier:
        versions.update(report.get("versions") or {})
        dim = report.get("embedding_dim") or dim
        skipped.update(report.get("skipped") or {})
    for name, reports in stage_info.items():
        for report in reports:
            versions.update(report.get("versions", {}))
            dim = report.get("embedding_dim", dim)
            if report.get("skipped"):
                skipped[name] = report["skipped"]
    versions.pop("languagetool_server", None)
    return versions, dim, skipped
