"""The coordinator: a Ray actor on the cluster that runs one extraction.

Ray Data's streaming executor cannot be driven from a Ray Client driver, so the pipeline
runs here, in a thread of an actor that reserves no CPU and serves concurrent calls. The
driver (local or through ``ray://``) pulls finished Arrow batches with :meth:`poll`.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any

import pyarrow as pa

from hemma_features.blocks import ramped_blocks
from hemma_features.config import Config
from hemma_features.pipeline.executor import apply_stage
from hemma_features.pipeline.metrics import StageTimings
from hemma_features.stages import TEXT_LIST_COLUMNS, stages_for

log = logging.getLogger(__name__)

ROW_INDEX = "_hf_row"
# Columns the stages read but the driver does not need back.
_INTERNAL_INPUTS = ("text", "prompt", *TEXT_LIST_COLUMNS)


class Coordinator:
    """Runs the Ray Data pipeline for one run and buffers its finished batches."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._ready: list[pa.Table] = []
        self._rows_done = 0
        self._n_rows = 0
        self._done = False
        self._error: str | None = None
        self._cancelled = False
        self._stage_info: dict[str, list[dict[str, Any]]] = {}
        self._timings = StageTimings()
        self._actors: dict[str, int] = {}
        self._started = 0.0
        self._thread: threading.Thread | None = None

    # -- called by the driver -------------------------------------------------------------

    def start(
        self,
        table: pa.Table,
        config: dict[str, Any],
        features: list[str],
        stage_classes: list[type] | None = None,
    ) -> int:
        """Start the pipeline over ``table`` (canonical columns plus the row index).

        ``stage_classes`` default to the stages the feature groups need.
        """
        cfg = Config.model_validate(config)
        stages = list(stage_classes) if stage_classes else stages_for(features)
        self._n_rows = table.num_rows
        self._started = time.time()
        self._thread = threading.Thread(
            target=self._run, args=(table, cfg, tuple(features), stages), daemon=True
        )
        self._thread.start()
        return self._n_rows

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
        state["table"] = pa.concat_tables(ready) if ready else None
        return state

    def summary(self) -> dict[str, Any]:
        """Stage timings, actors, and what the stage actors reported about themselves."""
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
            return {
                "stages": stages,
                "stage_info": info,
                "elapsed_s": time.time() - self._started,
            }

    def progress(self) -> dict[str, Any]:
        """Rows finished and rows in total, without taking any batches."""
        with self._lock:
            return {"rows_done": self._rows_done, "n_rows": self._n_rows, "done": self._done}

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

    # -- the pipeline thread --------------------------------------------------------------

    def _run(
        self, table: pa.Table, config: Config, features: tuple[str, ...], stages: list[type]
    ) -> None:
        import ray
        import ray.data

        try:
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
                batch = batch.drop_columns([c for c in _INTERNAL_INPUTS if c in batch.column_names])
                with self._lock:
                    if self._cancelled:
                        self._error = "cancelled"
                        break
                    self._ready.append(batch)
                    self._rows_done += batch.num_rows
                    self._lock.notify_all()
        except Exception as exc:
            log.exception("pipeline failed")
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
        finally:
            with self._lock:
                self._done = True
                self._lock.notify_all()
