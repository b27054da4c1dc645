"""One adapter that turns any stage into a Ray Data actor pool.

Each stage class declares its name, resources and batch size; :func:`apply_stage` maps it
onto a dataset with ``ActorPoolStrategy``. The actor wrapper times every batch (the timing
travels with the rows, so it survives Ray Data re-batching between stages) and reports the
stage's model versions, embedding size and pid to the run's coordinator once, at start.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pyarrow as pa

from hemma_features.config import Config
from hemma_features.stages import EmbeddingStage, LanguageToolStage, Stage

BATCH_ID_PREFIX = "_hf_batch_"
SECONDS_PREFIX = "_hf_seconds_"


def timing_columns(stage_name: str) -> tuple[str, str]:
    return f"{BATCH_ID_PREFIX}{stage_name}", f"{SECONDS_PREFIX}{stage_name}"


class StageActor:
    """A stage running inside a Ray Data actor."""

    def __init__(
        self,
        stage_cls: type[Stage],
        config: dict[str, Any],
        features: tuple[str, ...],
        coordinator: Any = None,
    ) -> None:
        start = time.perf_counter()
        self.stage = stage_cls(Config.model_validate(config), features)
        self.batch_column, self.seconds_column = timing_columns(stage_cls.name)
        if coordinator is not None:
            import ray

            info = describe_stage(self.stage)
            info["load_s"] = round(time.perf_counter() - start, 3)
            info["ready_at"] = time.time()

            ray.get(coordinator.report_stage.remote(stage_cls.name, info))

    def __call__(self, batch: pa.Table) -> pa.Table:
        start = time.perf_counter()
        out = self.stage(batch)
        seconds = time.perf_counter() - start
        n = out.num_rows
        out = out.append_column(self.batch_column, pa.array([uuid.uuid4().hex] * n, pa.string()))
        return out.append_column(self.seconds_column, pa.array([seconds] * n, pa.float64()))

    def __del__(self) -> None:
        stage = getattr(self, "stage", None)
        if stage is not None:
            stage.close()


def describe_stage(stage: Stage) -> dict[str, Any]:
    """What the coordinator needs to know about a running stage actor."""
    info: dict[str, Any] = {"versions": stage.versions(), "pid": os.getpid()}
    if isinstance(stage, EmbeddingStage):
        info["embedding_dim"] = stage.dim
    if isinstance(stage, LanguageToolStage) and stage.unavailable_reason:
        info["skipped"] = stage.unavailable_reason
    return info


def apply_stage(ds, stage_cls: type[Stage], config: Config, features, coordinator=None):
    """``ds.map_batches`` with the stage's own actor pool, resources and batch size."""
    import ray.data

    res = stage_cls.resources(config)
    return ds.map_batches(
        StageActor,
        fn_constructor_kwargs={
            "stage_cls": stage_cls,
            "config": config.model_dump(),
            "features": tuple(features),
            "coordinator": coordinator,
        },
        compute=ray.data.ActorPoolStrategy(
            size=res.actors,
            max_tasks_in_flight_per_actor=config.pipeline.max_in_flight_batches,
        ),
        num_cpus=res.num_cpus,
        num_gpus=res.num_gpus or None,
        # One call per block: the coordinator sizes the blocks (pipeline.block_rows, smaller
        # at first); each stage batches inside a call with its own batch_size.
        batch_size=None,
        batch_format="pyarrow",
        zero_copy_batch=True,
        udf_modifying_row_count=False,
        # A crashed actor is restarted and its batch retried (Ray Data's defaults for actor
        # pools, stated here because "every row exactly once" depends on them).
        max_restarts=-1,
        max_task_retries=-1,
    )
