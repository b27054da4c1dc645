"""The session's own cache, on the machine that drives the runs (the laptop).

It answers a repeated ``extract`` without contacting the cluster when every row is a hit.
The fingerprint of a remote cluster's results depends on the cluster's software, which
this machine does not have, so the session remembers the last fingerprint each address
reported for a (value config, feature selection) pair, like the team's previous tool kept
its server fingerprint. If the cluster's software changes, the next run that reaches the
cluster learns the new fingerprint; until then ``cache="refresh"`` recomputes. For the
embedded local Ray the fingerprint is computed here and is always current.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hemma_features.cache import (
    KEY,
    CacheCounts,
    ResultStore,
    default_cache_dir,
    row_keys,
    worth_caching,
)
from hemma_features.config import Config
from hemma_features.schema import feature_columns

_FINGERPRINTS = "fingerprints.json"


def cache_mode(cache: bool | str) -> str:
    """``True`` → ``on``, ``False`` → ``off``, ``"refresh"`` → ``refresh``."""
    if cache is True or cache == "on":
        return "on"
    if cache is False or cache == "off":
        return "off"
    if cache == "refresh":
        return "refresh"
    raise ValueError(f"cache must be True, False or 'refresh', not {cache!r}")


@dataclass
class Plan:
    """Which rows of a canonical input the cache answered."""

    fingerprint: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    hits: pa.Table | None = None  # input positions (``_hf_pos``) plus the cached columns
    hit_mask: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    counts: CacheCounts = field(default_factory=CacheCounts)


POSITION = "_hf_pos"


class ClientCache:
    """The laptop-side layer over a :class:`~hemma_features.cache.ResultStore`."""

    def __init__(self, config: Config, address: str, features: tuple[str, ...]) -> None:
        self.config = config
        self.address = address
        self.features = features
        self.store = ResultStore(config.cache.dir or default_cache_dir())
        cluster_root = Path(config.cache.cluster_dir or default_cache_dir()).expanduser()
        # On the embedded Ray the cluster's cache is this machine's: read it here, let the
        # coordinator write it, and do not keep a second copy.
        self.shared_with_cluster = address == "local" and _same_path(self.store.root, cluster_root)

    # -- fingerprints ---------------------------------------------------------------------

    def _memo_key(self) -> str:
        payload = json.dumps(
            [self.config.value_affecting(), sorted(self.features)], sort_keys=True, default=str
        )
        return f"{self.address}|{hashlib.sha256(payload.encode()).hexdigest()[:16]}"

    def known_fingerprint(self) -> tuple[str | None, dict[str, Any]]:
        """The fingerprint results for this config would have, and the environment behind
        it: computed for the embedded Ray, remembered for a remote cluster."""
        if self.address == "local":
            from hemma_features.environment import environment_versions
            from hemma_features.output import result_fingerprint

            environment = environment_versions(self.config, self.features)
            return result_fingerprint(self.config, self.features, environment), environment
        try:
            memo = json.loads((self.store.root / _FINGERPRINTS).read_text())
        except (OSError, ValueError):
            return None, {}
        entry = memo.get(self._memo_key()) or {}
        return entry.get("fingerprint"), entry.get("environment", {})

    def remember(self, fingerprint: str, environment: dict[str, Any]) -> None:
        """Record what the cluster reported (last writer wins; the file is replaced
        atomically, so a concurrent reader sees one version or the other)."""
        if self.address == "local" or not fingerprint:
            return
        path = self.store.root / _FINGERPRINTS
        try:
            memo = json.loads(path.read_text())
        except (OSError, ValueError):
            memo = {}
        memo[self._memo_key()] = {
            "fingerprint": fingerprint,
            "environment": environment,
            "seen": time.time(),
        }
        with contextlib.suppress(OSError):
            self.store.root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{_FINGERPRINTS}")
            tmp.write_text(json.dumps(memo, indent=1, default=str))
            os.replace(tmp, path)

    # -- rows -----------------------------------------------------------------------------

    def plan(self, canonical: pa.Table, mode: str) -> Plan:
        """Look up the rows of ``canonical`` that need computing (``error`` null)."""
        fingerprint, environment = self.known_fingerprint()
        plan = Plan(fingerprint=fingerprint, environment=environment)
        pending = np.asarray(canonical["error"].is_null().to_numpy(zero_copy_only=False))
        plan.hit_mask = np.zeros(canonical.num_rows, dtype=bool)
        if mode != "on" or fingerprint is None or not pending.any():
            plan.counts.misses = int(pending.sum())
            return plan
        keys = row_keys(canonical["text"].to_pylist(), canonical["prompt"].to_pylist(), fingerprint)
        wanted = [k for k, p in zip(keys, pending, strict=True) if p]
        found = self.store.lookup(fingerprint, wanted)
        plan.counts = found.counts
        plan.metadata = found.metadata
        if found.table is None:
            return plan
        plan.hit_mask, cached = found.align(keys, pending)
        rows = np.flatnonzero(plan.hit_mask)
        hits = cached.append_column(POSITION, pa.array(rows, pa.int64()))
        hits = hits.append_column("essay_id", canonical["essay_id"].take(pa.array(rows)))
        plan.hits = hits.append_column("error", pa.nulls(len(rows), pa.string()))
        return plan

    def save(
        self,
        computed: pa.Table,
        canonical: pa.Table,
        fingerprint: str,
        metadata: dict[str, Any],
    ) -> int:
        """Add the rows the cluster computed (``computed`` aligned with ``canonical``);
        returns bytes written. Like the cluster's cache, only rows :func:`worth_caching`."""
        if self.shared_with_cluster or not fingerprint:
            return 0
        if not worth_caching(metadata.get("environment", {}), metadata.get("skipped", {})):
            return 0
        keys = row_keys(canonical["text"].to_pylist(), canonical["prompt"].to_pylist(), fingerprint)
        columns = feature_columns(self.features)
        present = [c for c in columns if c in computed.column_names]
        rows = computed.select(present).append_column(KEY, pa.array(keys, pa.string()))
        rows = rows.filter(computed["error"].is_null())
        try:
            return self.store.add(fingerprint, rows, metadata)
        except OSError:
            return 0


def _same_path(a: Path, b: Path) -> bool:
    return os.path.realpath(a.expanduser()) == os.path.realpath(b.expanduser())
