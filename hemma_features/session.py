"""The driver side: connect to Ray, submit a run, pull Arrow batches, restore input order.

Works the same on an embedded local Ray, on a cluster joined with ``auto``, and through a
Ray Client (``ray://host:port``). The driver never imports torch, spaCy or Java: stages
load on the cluster.
"""

from __future__ import annotations

import logging
import platform
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa

from hemma_features.cache import part_metadata
from hemma_features.client_cache import POSITION, ClientCache, Plan, cache_mode
from hemma_features.config import Config, load_config
from hemma_features.inputs import prepare_input
from hemma_features.output import finalize, run_metadata
from hemma_features.pipeline.metrics import run_metrics
from hemma_features.pipeline.runner import ROW_INDEX, Coordinator, merge_stage_info
from hemma_features.schema import EMBEDDINGS, normalize_features

log = logging.getLogger(__name__)

HEAD_NODE_RESOURCE = "node:__internal_head__"


# Ray Client's proxy starts one server process per client; under load that start can fail
# once (a failed spawn, or the proxy tripping over its own half-started process: psutil's
# ZombieProcess) and succeed on the next try. Any "Initialization failure from server" means
# the handshake, token included, got through and the server side failed.
_SERVER_SIDE_FAILURES = ("Starting Ray client server failed", "Initialization failure from server")
_CLIENT_CONNECT_ATTEMPTS = 3


class ConnectError(RuntimeError):
    """The cluster could not be reached or does not match this client."""


class RunError(RuntimeError):
    """A run failed on the cluster (not a row problem: those come back in ``error``)."""


def _is_client_address(address: str) -> bool:
    return address.startswith("ray://")


def _is_server_side_failure(text: str) -> bool:
    return any(marker in text for marker in _SERVER_SIDE_FAILURES)


def _port_open(address: str, timeout_s: float = 3.0) -> bool:
    parsed = urlparse(address)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 10001), timeout_s):
            return True
    except OSError:
        return False


def explain_connect_failure(address: str, exc: BaseException, port_open: bool) -> str:
    """A message a person can act on, for a failed ``ray.init(address)``."""
    text = str(exc)
    if "version" in text.lower() and "mismatch" in text.lower():
        return (
            f"{address}: Ray Client needs the same Ray version and Python minor version on "
            f"both ends. This client runs Ray {_ray_version()} on Python "
            f"{platform.python_version()}. Ray said: {text}"
        )
    if not _is_client_address(address):
        return f"could not connect to Ray at {address!r}: {text}"
    if _is_server_side_failure(text):
        return (
            f"{address}: the head's Ray Client server could not start a session for this "
            f"client; see ray_client_server*.err in the head's Ray logs. ({text.strip()})"
        )
    if not port_open:
        return (
            f"nothing answers at {address}: is the cluster up and the tunnel open "
            f"(e.g. `ssh hemma -L 10001:127.0.0.1:10001 -N`)? ({text})"
        )
    return (
        f"{address} accepts connections but the Ray Client handshake failed ({text}). "
        "The head most likely uses token authentication (RAY_AUTH_MODE=token) and this "
        "process has no token or the wrong one: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
        "(or RAY_AUTH_TOKEN_PATH, a file holding the head's token) before connecting."
    )


def _ray_version() -> str:
    import ray

    return ray.__version__


def check_versions(server: dict[str, Any]) -> None:
    """Fail plainly when the cluster's Ray or Python minor version differs from ours."""
    ours_py = ".".join(platform.python_version_tuple()[:2])
    theirs_py = ".".join(str(server.get("python_version", "")).split(".")[:2])
    problems = []
    if server.get("ray_version") and server["ray_version"] != _ray_version():
        problems.append(f"Ray {server['ray_version']} on the cluster, {_ray_version()} here")
    if theirs_py and theirs_py != ours_py:
        problems.append(f"Python {theirs_py} on the cluster, {ours_py} here")
    if problems:
        raise ConnectError(
            "the client and the cluster must run the same Ray version and Python minor "
            "version: " + "; ".join(problems)
        )


class Session:
    """A connection to a Ray cluster (embedded local, ``auto`` or ``ray://``).

    Use :func:`connect` to make one; it is a context manager.
    """

    def __init__(
        self,
        address: str | None = None,
        config: Config | str | None = None,
        *,
        lazy: bool = False,
    ) -> None:
        self.config = load_config(config)
        self.address = address or self.config.cluster.address
        self.last_metrics: dict[str, Any] | None = None
        self._owns_ray = False
        self._connected = False
        if not lazy:
            self.ensure_connected()

    def ensure_connected(self) -> None:
        """Connect to the cluster unless this session already has (lazy sessions connect
        at their first run that needs the cluster)."""
        if self._connected:
            return
        self._connect()
        self._connected = True

    def _connect(self) -> None:
        import ray

        cluster = self.config.cluster
        if ray.is_initialized():
            log.info("reusing the Ray connection already open in this process")
            return
        try:
            if self.address == "local":
                ray.init(
                    address="local",  # a new embedded Ray, never a cluster found on this machine
                    num_cpus=cluster.num_cpus,
                    num_gpus=cluster.num_gpus,
                    object_store_memory=(
                        cluster.object_store_memory_mb * 1024 * 1024
                        if cluster.object_store_memory_mb
                        else None
                    ),
                    namespace=cluster.namespace,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            else:
                context = self._init_remote()
                if _is_client_address(self.address):
                    check_versions(
                        {
                            "ray_version": getattr(context, "ray_version", None),
                            "python_version": getattr(context, "python_version", None),
                        }
                    )
        except ConnectError:
            ray.shutdown()
            raise
        except Exception as exc:
            port_open = _is_client_address(self.address) and _port_open(self.address)
            raise ConnectError(explain_connect_failure(self.address, exc, port_open)) from exc
        self._owns_ray = True

    def _init_remote(self):
        import ray

        for attempt in range(1, _CLIENT_CONNECT_ATTEMPTS + 1):
            try:
                return ray.init(address=self.address, namespace=self.config.cluster.namespace)
            except Exception as exc:
                if not _is_server_side_failure(str(exc)) or attempt == _CLIENT_CONNECT_ATTEMPTS:
                    raise
                log.warning("Ray Client session failed to start (try %d), retrying", attempt)
                time.sleep(2.0 * attempt)
        raise AssertionError("unreachable")

    def _canonical(
        self,
        data: Any,
        text_column: str,
        prompt_column: str | None,
        id_column: str,
        prompt: str | None,
    ) -> pa.Table:
        return prepare_input(
            data,
            text_column=text_column,
            prompt_column=prompt_column,
            id_column=id_column,
            prompt=prompt,
            max_text_chars=self.config.pipeline.max_text_chars,
        )

    def cluster_resources(self) -> dict[str, float]:
        import ray

        self.ensure_connected()
        return dict(ray.cluster_resources())

    def extract(
        self,
        data: Any,
        *,
        text_column: str = "text",
        prompt_column: str | None = "prompt",
        id_column: str = "essay_id",
        prompt: str | None = None,
        features: Iterable[str] | str | None = None,
        cache: bool | str = True,
        progress: bool = True,
    ) -> pa.Table:
        """Compute features for ``data`` on the cluster and return the contract table.

        ``data``: a ``pyarrow.Table``, a pandas DataFrame, a list of dicts, or a path to a
        .parquet/.csv/.tsv/.jsonl file. ``prompt`` gives one prompt to every row.
        ``features``: any of ``embeddings``, ``tier1``, ``tier2``, ``tier3`` (default all);
        stages that are not needed do not run. ``cache``: ``True`` answers rows from this
        machine's cache, then the cluster's, and computes only the rest (when every row
        is a hit here, the cluster is not contacted); ``"refresh"`` recomputes every row
        and overwrites the cache; ``False`` neither reads nor writes it. Input problems
        that make the whole input unusable raise :class:`~hemma_features.InputError`
        before any work; a bad row comes back with ``error`` set. Metrics of the run
        (cache hits and misses included) land in :attr:`last_metrics`.
        """
        groups = normalize_features(features)
        mode = self._cache_mode(cache)
        canonical = self._canonical(data, text_column, prompt_column, id_column, prompt)
        started = time.perf_counter()
        n_rows = canonical.num_rows
        local = ClientCache(self.config, self.address, groups) if mode != "off" else None
        plan = local.plan(canonical, mode) if local else Plan(hit_mask=np.zeros(n_rows, bool))
        answered_here = plan.hits is not None and (
            EMBEDDINGS not in groups or plan.metadata.get("embedding_dim")
        )
        needs = np.asarray(canonical["error"].is_null().to_numpy(zero_copy_only=False))
        send = ~plan.hit_mask & (needs if answered_here else True)
        parts = [] if plan.hits is None else [plan.hits]
        earlier = [plan.metadata] if plan.metadata else []
        environment, fingerprint = plan.environment, plan.fingerprint
        summary: dict[str, Any] = {"stages": {}, "stage_info": {}, "cache": {}}
        first_result_s = None
        if send.any():
            positions = np.flatnonzero(send)
            to_send = canonical.take(pa.array(positions))
            processed, summary, _, first_result_s = self.run_stages(
                to_send, groups, progress=progress, cache=mode
            )
            earlier += summary.get("earlier_info", [])
            environment, fingerprint = summary["environment"], summary["fingerprint"]
            parts.append(processed.append_column(POSITION, pa.array(positions, pa.int64())))
        else:
            log.info("all rows answered on this machine; the cluster was not contacted")
        rest = ~plan.hit_mask & ~send  # input errors, when the cluster was not needed
        if rest.any():
            positions = np.flatnonzero(rest)
            errors = canonical.take(pa.array(positions)).select(["essay_id", "error"])
            parts.append(errors.append_column(POSITION, pa.array(positions, pa.int64())))
        versions, dim, skipped = merge_stage_info(summary["stage_info"], earlier)
        metadata = run_metadata(self.config, groups, versions, dim, skipped, environment)
        processed = _reassemble(parts, n_rows, POSITION)
        table = finalize(processed, groups, dim, metadata)
        elapsed = time.perf_counter() - started
        cache_report = {
            "mode": mode,
            "this_machine": plan.counts.as_dict(),
            "cluster": summary.get("cache", {}),
            "cluster_contacted": bool(send.any()),
        }
        if local is not None and send.any():
            local.remember(fingerprint, environment)
            sent = pa.array(np.flatnonzero(send))
            cache_report["this_machine"]["bytes_written"] = local.save(
                processed.take(sent),
                canonical.take(sent),
                fingerprint,
                part_metadata(groups, environment, versions, dim, skipped),
            )
        self.last_metrics = run_metrics(
            "extract",
            n_rows,
            elapsed,
            summary["stages"],
            self.config.model_dump(),
            metadata["fingerprint"],
            address=self.address,
            first_result_s=first_result_s,
            features=list(groups),
            rows_with_error=n_rows - table["error"].null_count,
            cache=cache_report,
        )
        if progress and not send.any():
            print(
                f"hemma_features: all {n_rows} rows from this machine's cache "
                f"({local.store.root if local else ''}); the cluster was not contacted",
                file=sys.stderr,
            )
        return table

    def submit(
        self,
        data: Any,
        *,
        text_column: str = "text",
        prompt_column: str | None = "prompt",
        id_column: str = "essay_id",
        prompt: str | None = None,
        features: Iterable[str] | str | None = None,
        cache: bool | str = True,
    ) -> str:
        """Start a detached run of :meth:`extract` and return its run id at once.

        The run goes on when this process ends: its coordinator is a detached actor that
        writes each finished batch to the run's folder on the cluster. Get the result with
        :meth:`fetch` (from any process), follow it with :meth:`runs`, stop it with
        :meth:`cancel`, continue an interrupted one with :meth:`resume`.
        """
        from hemma_features import detached

        groups = normalize_features(features)
        mode = self._cache_mode(cache)
        canonical = self._canonical(data, text_column, prompt_column, id_column, prompt)
        return detached.submit(self, canonical, groups, mode)

    def fetch(self, run_id: str, *, progress: bool = True) -> pa.Table:
        """The contract table of a detached run, waiting for the rest if it is going.

        Raises :class:`RunError` if the run failed, was cancelled, or was interrupted (then
        :meth:`resume` continues it)."""
        from hemma_features import detached

        return detached.fetch(self, run_id, progress=progress)

    def runs(self) -> list[dict[str, Any]]:
        """The cluster's detached runs, newest first: ``run_id``, ``state`` (running,
        done, failed, cancelled, interrupted), ``rows_done``, ``n_rows``, ``alive`` …
        Finished runs older than ``runs.retention_days`` are deleted on the way."""
        from hemma_features import detached

        return detached.list_runs(self)

    def cancel(self, run_id: str) -> str:
        """Stop a detached run; returns the state it ended in."""
        from hemma_features import detached

        return detached.cancel(self, run_id)

    def resume(self, run_id: str, *, cache: bool | str = True) -> dict[str, Any]:
        """Continue an interrupted detached run (coordinator killed, cluster restarted):
        only rows without a result are computed, with the run's own config. Returns
        ``n_rows`` and ``to_compute``; then :meth:`fetch` it."""
        from hemma_features import detached

        mode = self._cache_mode(cache)
        return detached.resume(self, run_id, mode)

    def _cache_mode(self, cache: bool | str) -> str:
        return cache_mode(cache) if self.config.cache.enabled else "off"

    def prepare_training_data(
        self,
        data: Any,
        *,
        output_dir: str | Path,
        tokenizer: str | None = None,
        max_length: int | None = None,
        overlap: int | None = None,
        id_column: str = "essay_id",
        text_column: str = "text",
        label_columns: Sequence[str] = (),
        split_column: str | None = None,
        with_features: str | Path | None = None,
        progress: bool = True,
    ):
        """Tokenize and chunk essays for fine-tuning on the cluster; write Parquet shards and
        ``coverage.json`` to ``output_dir`` (on this machine).

        Each essay becomes rows of at most ``max_length`` tokens (special tokens included);
        content windows advance by ``window - overlap``, the last one ends at the last
        token. ``tokenizer``, ``max_length`` and ``overlap`` default to the config's
        ``training`` section (tokenizer: the embedding model's). Returns a
        :class:`~hemma_features.training_data.TrainingDataResult`; metrics in
        :attr:`last_metrics`.
        """
        from hemma_features import training_data as td
        from hemma_features.stages.tokenize_stage import TokenizeStage

        config, canonical, features = td.plan_run(
            data,
            self.config,
            tokenizer=tokenizer,
            max_length=max_length,
            overlap=overlap,
            id_column=id_column,
            text_column=text_column,
            label_columns=label_columns,
            split_column=split_column,
            with_features=with_features,
        )
        processed, summary, elapsed, first_result_s = self.run_stages(
            canonical, [], stage_classes=[TokenizeStage], config=config, progress=progress
        )
        versions, _, _ = merge_stage_info(summary["stage_info"])
        result = td.finish(
            processed,
            config,
            versions,
            output_dir=Path(output_dir),
            label_columns=label_columns,
            split_column=split_column,
            features=features,
        )
        tokens = result.coverage["counts"]["tokens"]
        self.last_metrics = run_metrics(
            "prepare_training_data",
            canonical.num_rows,
            elapsed,
            summary["stages"],
            config.model_dump(),
            "",
            address=self.address,
            first_result_s=first_result_s,
            tokens=tokens,
            tokens_per_second=round(tokens / elapsed, 1) if elapsed else 0.0,
        )
        return result

    def run_stages(
        self,
        canonical: pa.Table,
        features: Iterable[str],
        stage_classes: list[type] | None = None,
        config: Config | None = None,
        progress: bool = True,
        cache: str = "off",
    ) -> tuple[pa.Table, dict[str, Any], float, float | None]:
        """Run stages over a canonical table on the cluster through a coordinator actor.

        ``cache`` is the cluster cache's mode (``on``, ``refresh``, ``off``; used only for
        feature stages). Returns the processed rows in input order, the coordinator's
        summary (with the fingerprint and cache counts), the elapsed seconds and the
        seconds to the first finished rows.
        """
        import ray

        self.ensure_connected()
        config = config or self.config
        n_rows = canonical.num_rows
        indexed = canonical.append_column(ROW_INDEX, pa.array(range(n_rows), pa.int64()))
        started = time.perf_counter()
        coordinator = coordinator_actor(config, f"hemma_features-run-{uuid.uuid4().hex[:12]}")
        try:
            ray.get(
                coordinator.start.remote(
                    ray.put(indexed),
                    config.model_dump(),
                    list(features),
                    stage_classes,
                    {"cache": cache},
                )
            )
            parts, first_result_s = self._pull(coordinator, n_rows, progress, started)
            summary = ray.get(coordinator.summary.remote())
        finally:
            ray.kill(coordinator)
        elapsed = time.perf_counter() - started
        return _reassemble(parts, n_rows), summary, elapsed, first_result_s

    def _pull(
        self, coordinator, n_rows: int, progress: bool, started: float
    ) -> tuple[list[pa.Table], float | None]:
        import ray
        from tqdm.auto import tqdm

        parts: list[pa.Table] = []
        first_result_s = None
        bar = tqdm(total=n_rows, unit="essay", desc="hemma_features", disable=not progress)
        try:
            while True:
                try:
                    state = ray.get(coordinator.poll.remote(1.0))
                except ray.exceptions.RayActorError as exc:
                    raise RunError(f"the run's coordinator actor died: {exc}") from exc
                if state["table"] is not None:
                    if first_result_s is None:
                        first_result_s = round(time.perf_counter() - started, 3)
                    parts.append(state["table"])
                    bar.update(state["table"].num_rows)
                if state["error"]:
                    raise RunError(f"the run failed on the cluster: {state['error']}")
                if state["done"]:
                    return parts, first_result_s
        finally:
            bar.close()

    def close(self) -> None:
        import ray

        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False
        self._connected = False

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def coordinator_actor(config: Config, name: str, *, detached: bool = False):
    """A new coordinator actor on the head node (where run folders and the cluster cache
    live), reserving no CPU. A detached one outlives the driver that made it."""
    import ray

    actor_cls = ray.remote(num_cpus=0, max_concurrency=16, max_restarts=0)(Coordinator)
    return actor_cls.options(
        name=name,
        namespace=config.cluster.namespace,
        lifetime="detached" if detached else None,
        resources={HEAD_NODE_RESOURCE: 0.001},
    ).remote()


def _reassemble(parts: list[pa.Table], n_rows: int, column: str = ROW_INDEX) -> pa.Table:
    """Concatenate batches and put the rows back in input order by their ``column`` (the
    row index, or the input position), checking that every input row is there exactly
    once."""
    table = pa.concat_tables(parts, promote_options="permissive")
    indices = table[column].to_numpy()
    distinct = len(np.unique(indices))
    if table.num_rows != n_rows or distinct != n_rows:
        raise RunError(f"got {table.num_rows} rows ({distinct} distinct) for {n_rows} input rows")
    return table.take(pa.array(np.argsort(indices))).drop_columns([column])


def connect(
    address: str | None = None, config: Config | str | None = None, *, lazy: bool = False
) -> Session:
    """Open a :class:`Session`.

    ``address``: ``None`` (the config's ``cluster.address``, ``local`` by default) or
    ``"local"`` starts an embedded Ray sized from config; ``"auto"`` joins a running
    cluster; ``"ray://host:port"`` connects a Ray Client (e.g. through an SSH tunnel).
    ``lazy=True`` connects at the first run that needs the cluster, so that a run this
    machine's cache answers works with the cluster busy or offline.
    """
    return Session(address, config, lazy=lazy)


_default_session: Session | None = None


def extract(data: Any, *, config: Config | str | None = None, **kwargs: Any) -> pa.Table:
    """:meth:`Session.extract` on a default session, opened at first use."""
    global _default_session
    if _default_session is None:
        _default_session = connect(config=config, lazy=True)
    return _default_session.extract(data, **kwargs)
