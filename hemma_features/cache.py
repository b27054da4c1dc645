"""Content-addressed result cache: finished rows as Parquet parts, one folder per fingerprint.

A row's key is a hash of its text, its prompt and the run's fingerprint (which covers the
feature groups, the value-affecting config and the versions of everything that computes:
see :mod:`hemma_features.environment`). Throughput settings are in none of these, so
changing actor counts or batch sizes keeps every hit.

Layout: ``ROOT/<fingerprint>/part-<time>-<random>.parquet``. Every write is a new file,
written under a temporary name and renamed into place, so concurrent writers never share a
file and a reader never sees half of one. Parts carry Parquet page checksums: a truncated
or corrupted part fails to read, is reported, renamed to ``*.corrupt`` and ignored, and its
rows are computed again. The same key in two parts (two runs computing the same row at
once) is harmless: either copy is valid, the first one read is used.

Written by hand because no maintained library offers a concurrent, append-only,
Arrow-native keyed store; it is Parquet and file renames, nothing more.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

KEY = "_hf_key"
PART_GLOB = "part-*.parquet"
_META_KEY = b"hemma_features.cache"
_STALE_TMP_S = 3600.0


def user_cache_home() -> Path:
    """``$XDG_CACHE_HOME/hemma_features`` or ``~/.cache/hemma_features``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hemma_features"


def default_cache_dir() -> Path:
    return user_cache_home() / "results"


def row_keys(
    texts: Sequence[str | None], prompts: Sequence[str | None], fingerprint: str
) -> list[str]:
    """One key per row: a hash of the fingerprint, the text and the prompt."""
    keys = []
    for text, prompt in zip(texts, prompts, strict=True):
        digest = hashlib.blake2b(fingerprint.encode(), digest_size=16)
        # Length-prefixed fields: no text can pose as another text/prompt split.
        for value in (text or "", prompt):
            data = b"" if value is None else value.encode()
            length = -1 if value is None else len(data)
            digest.update(length.to_bytes(8, "little", signed=True) + data)
        keys.append(digest.hexdigest())
    return keys


@dataclass
class CacheCounts:
    """What one lookup and the writes that followed it did."""

    hits: int = 0
    misses: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    rows_written: int = 0
    corrupt_parts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Lookup:
    """Rows found for the wanted keys: ``table`` has ``KEY`` and the cached columns, one
    row per distinct key found; ``metadata`` is what the newest part that held hits
    recorded about how they were computed."""

    table: pa.Table | None
    metadata: dict[str, Any]
    counts: CacheCounts

    def align(self, keys: Sequence[str], eligible: np.ndarray) -> tuple[np.ndarray, pa.Table]:
        """For rows with ``keys`` (only where ``eligible``): which were found, and their
        cached columns (without ``KEY``) in the order of those rows."""
        if self.table is None:
            return np.zeros(len(keys), dtype=bool), pa.table({})
        position = {k: i for i, k in enumerate(self.table[KEY].to_pylist())}
        found = np.array([e and k in position for k, e in zip(keys, eligible, strict=True)])
        rows = [position[keys[i]] for i in np.flatnonzero(found)]
        return found, self.table.take(pa.array(rows, pa.int64())).drop_columns([KEY])


class ResultStore:
    """The cache under one root folder (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    def folder(self, fingerprint: str) -> Path:
        if not fingerprint or "/" in fingerprint or fingerprint.startswith("."):
            raise ValueError(f"not a fingerprint: {fingerprint!r}")
        return self.root / fingerprint

    def parts(self, fingerprint: str) -> list[Path]:
        return sorted(self.folder(fingerprint).glob(PART_GLOB))

    # -- reading --------------------------------------------------------------------------

    def lookup(self, fingerprint: str, keys: Sequence[str]) -> Lookup:
        """The cached rows for ``keys`` (duplicates in ``keys`` are fine)."""
        counts = CacheCounts()
        wanted = pa.array(sorted(set(keys)), pa.string())
        found: list[pa.Table] = []
        seen = pa.array([], pa.string())
        metadata: dict[str, Any] = {}
        for part in reversed(self.parts(fingerprint)):  # newest first
            remaining = pc.filter(wanted, pc.invert(pc.is_in(wanted, seen)))
            if len(remaining) == 0:
                break
            try:
                part_keys = pq.read_table(part, columns=[KEY], page_checksum_verification=True)
                if not pc.any(pc.is_in(part_keys[KEY], remaining)).as_py():
                    continue
                table = pq.read_table(part, page_checksum_verification=True)
                part_meta = _part_metadata(table.schema)
            except (OSError, pa.ArrowException, ValueError) as exc:
                self._quarantine(part, exc, counts)
                continue
            counts.bytes_read += part.stat().st_size
            table = table.filter(pc.is_in(table[KEY], remaining))
            table = _first_per_key(table)
            found.append(table.replace_schema_metadata(None))
            seen = pa.concat_arrays([seen, table[KEY].combine_chunks()])
            metadata = metadata or part_meta
        table = pa.concat_tables(found, promote_options="permissive") if found else None
        hit_keys = set(seen.to_pylist())
        counts.hits = sum(k in hit_keys for k in keys)
        counts.misses = len(keys) - counts.hits
        return Lookup(table, metadata, counts)

    def _quarantine(self, part: Path, exc: BaseException, counts: CacheCounts) -> None:
        log.warning("cache part %s is unreadable (%s); ignored, its rows are recomputed", part, exc)
        counts.corrupt_parts.append(str(part))
        with contextlib.suppress(OSError):  # another reader moved it first
            part.rename(part.with_suffix(".corrupt"))

    # -- writing --------------------------------------------------------------------------

    def add(self, fingerprint: str, table: pa.Table, metadata: dict[str, Any]) -> int:
        """Write ``table`` (``KEY`` plus cached columns) as a new part; returns its bytes."""
        if table.num_rows == 0:
            return 0
        if KEY not in table.column_names:
            raise ValueError(f"a cache part needs the {KEY} column")
        folder = self.folder(fingerprint)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = folder / f".tmp-{name}"
        table = table.replace_schema_metadata(
            {_META_KEY: json.dumps({**metadata, "created": time.time()}, default=str).encode()}
        )
        pq.write_table(table, tmp, write_page_checksum=True, compression="zstd")
        os.replace(tmp, folder / name)  # atomic: readers see the whole part or none of it
        return (folder / name).stat().st_size

    # -- housekeeping ---------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """One entry per fingerprint: parts, rows, bytes, age, features, corrupt parts."""
        out = []
        for folder in sorted(p for p in self.root.glob("*") if p.is_dir()):
            parts = sorted(folder.glob(PART_GLOB))
            rows = 0
            features: list[str] = []
            for part in parts:
                try:
                    meta = pq.read_metadata(part)
                except (OSError, pa.ArrowException):
                    continue
                rows += meta.num_rows
                features = features or _part_metadata(meta.schema.to_arrow_schema()).get(
                    "features", []
                )
            mtimes = [p.stat().st_mtime for p in parts]
            out.append(
                {
                    "fingerprint": folder.name,
                    "parts": len(parts),
                    "rows": rows,
                    "bytes": sum(p.stat().st_size for p in parts),
                    "features": features,
                    "oldest": min(mtimes, default=None),
                    "newest": max(mtimes, default=None),
                    "corrupt_parts": len(list(folder.glob("*.corrupt"))),
                }
            )
        return out

    def prune(
        self, older_than_days: float | None = None, fingerprint: str | None = None
    ) -> dict[str, int]:
        """Delete parts older than ``older_than_days`` and/or all of ``fingerprint``'s parts;
        with neither, only corrupt parts and stale temporary files. Returns counts."""
        now = time.time()
        removed = {"parts": 0, "bytes": 0}
        folders = [self.folder(fingerprint)] if fingerprint else self._folders()
        for folder in folders:
            for path in folder.glob("*"):
                age = now - path.stat().st_mtime
                if path.match(PART_GLOB):
                    if older_than_days is None:
                        drop = fingerprint is not None
                    else:
                        drop = age > older_than_days * 86400
                    if drop:
                        removed["parts"] += 1
                        removed["bytes"] += path.stat().st_size
                else:
                    drop = path.suffix == ".corrupt" or (
                        path.name.startswith(".tmp-") and age > _STALE_TMP_S
                    )
                if drop:
                    path.unlink(missing_ok=True)
            if folder.is_dir() and not any(folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)
        return removed

    def _folders(self) -> list[Path]:
        return [p for p in self.root.glob("*") if p.is_dir()]


class CacheWriter:
    """Buffers finished rows and adds them as parts every ``flush_rows`` rows or
    ``flush_s`` seconds, so a crashed run's finished rows are hits next time.
    ``metadata`` is called at each write: what the stages reported may arrive late."""

    def __init__(
        self,
        store: ResultStore,
        fingerprint: str,
        metadata: Callable[[], dict[str, Any]],
        flush_rows: int = 256,
        flush_s: float = 10.0,
    ) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self.metadata = metadata
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.counts = CacheCounts()
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._last_flush = time.monotonic()

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self._buffer.append(table)
            self._buffered += table.num_rows
        if self._buffered >= self.flush_rows or (
            self._buffer and time.monotonic() - self._last_flush >= self.flush_s
        ):
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer, promote_options="permissive")
        self._buffer, self._buffered = [], 0
        try:
            self.counts.bytes_written += self.store.add(self.fingerprint, table, self.metadata())
            self.counts.rows_written += table.num_rows
        except OSError as exc:  # a full or read-only disk must not fail the run
            log.warning("could not write to the cache at %s: %s", self.store.root, exc)


def worth_caching(environment: Mapping[str, Any], skipped: Mapping[str, str]) -> bool:
    """Rows computed while a stage was skipped although the environment says it is
    installed (LanguageTool down: maybe transient) are not cached. With LanguageTool
    ``absent`` the fingerprint says so, and installing it turns those rows into misses."""
    return not skipped or str(environment.get("languagetool", "")).startswith("absent")


def part_metadata(
    features: Iterable[str],
    environment: Mapping[str, Any],
    versions: Mapping[str, Any],
    embedding_dim: int | None,
    skipped: Mapping[str, str],
) -> dict[str, Any]:
    """What a cache part records about how its rows were computed (read back by
    :meth:`ResultStore.lookup` for results no stage had to compute)."""
    return {
        "features": list(features),
        "environment": dict(environment),
        "versions": dict(versions),
        "embedding_dim": embedding_dim,
        "skipped": dict(skipped),
    }


def cacheable_rows(table: pa.Table, keys: Sequence[str], columns: Iterable[str]) -> pa.Table:
    """The rows of a processed batch worth caching (no error), as ``KEY`` + ``columns``."""
    ok = table["error"].is_null()
    present = [c for c in columns if c in table.column_names]
    rows = table.select(present).append_column(KEY, pa.array(keys, pa.string()))
    return rows.filter(ok)


def _first_per_key(table: pa.Table) -> pa.Table:
    keys = table[KEY].to_pylist()
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    if len(first) == len(keys):
        return table
    return table.take(pa.array(sorted(first.values())))


def _part_metadata(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(_META_KEY)
    return json.loads(raw) if raw else {}
