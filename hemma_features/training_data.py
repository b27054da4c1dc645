"""Training data for transformer fine-tuning (G3): tokenized, chunked essays as Parquet.

Each essay is tokenized once (fast tokenizer, on the cluster's CPU actors or in-process),
cut into overlapping windows that each carry the model's special tokens, and written as one
row per chunk: ``essay_id``, ``chunk_index``, ``n_chunks``, ``input_ids`` (list<int32>),
``attention_mask`` (list<int8>) and the label columns, one folder per split when a split
column is given. ``coverage.json`` says how much plain truncation would have lost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hemma_features.blocks import ramped_blocks
from hemma_features.config import Config
from hemma_features.inputs import InputError, prepare_input

COVERAGE_FILE = "coverage.json"
DEFAULT_SPLIT = "train"


@dataclass
class TrainingDataResult:
    """Where the data went and what ``coverage.json`` says."""

    output_dir: Path
    coverage: dict[str, Any]
    files: list[Path]


def training_config(
    config: Config, tokenizer: str | None, max_length: int | None, overlap: int | None
) -> Config:
    """A copy of ``config`` with the run's tokenizer and window settings (and the training
    job's block size as the pipeline's)."""
    updated = config.model_copy(deep=True)
    updated.pipeline.block_rows = updated.training.block_rows
    if tokenizer is not None:
        updated.training.tokenizer = tokenizer
    if max_length is not None:
        updated.training.max_length = max_length
    if overlap is not None:
        updated.training.overlap = overlap
    return updated


def prepare_canonical(
    data: Any,
    *,
    id_column: str,
    text_column: str,
    label_columns: Sequence[str],
    split_column: str | None,
    max_text_chars: int,
) -> pa.Table:
    """The canonical input plus label and split columns, checked before any work."""
    extra = [*label_columns, *([split_column] if split_column else [])]
    if len(set(extra)) != len(extra):
        raise InputError(f"label and split columns repeat a name: {extra}")
    canonical = prepare_input(
        data,
        text_column=text_column,
        prompt_column=None,
        id_column=id_column,
        max_text_chars=max_text_chars,
        extra_columns=extra,
    )
    if split_column:
        missing = [i for i, v in enumerate(canonical[split_column].to_pylist()) if v is None]
        if missing:
            raise InputError(f"split column {split_column!r} is empty in rows {missing[:20]}")
    return canonical


def plan_run(
    data: Any,
    config: Config,
    *,
    tokenizer: str | None,
    max_length: int | None,
    overlap: int | None,
    id_column: str,
    text_column: str,
    label_columns: Sequence[str],
    split_column: str | None,
    with_features: str | Path | None,
) -> tuple[Config, pa.Table, pa.Table | None]:
    """Everything checked before any tokenizing: the run's config, the canonical input and
    the ``--with-features`` table."""
    cfg = training_config(config, tokenizer, max_length, overlap)
    canonical = prepare_canonical(
        data,
        id_column=id_column,
        text_column=text_column,
        label_columns=label_columns,
        split_column=split_column,
        max_text_chars=cfg.pipeline.max_text_chars,
    )
    essay_ids = canonical["essay_id"].to_pylist()
    features = load_features(Path(with_features), essay_ids) if with_features else None
    return cfg, canonical, features


def tokenize_in_process(canonical: pa.Table, config: Config) -> tuple[pa.Table, dict]:
    """Run the tokenize stage here, block by block (the ``inprocess`` path)."""
    from hemma_features.stages.tokenize_stage import TokenizeStage

    stage = TokenizeStage(config)
    blocks = [stage(b) for b in ramped_blocks(canonical, config.pipeline.block_rows)]
    return pa.concat_tables(blocks), stage.versions()


def explode_chunks(processed: pa.Table, label_columns: Sequence[str]) -> pa.Table:
    """One row per chunk, in essay order then chunk order, with the labels repeated."""
    ok = processed.filter(
        pc.and_(processed["error"].is_null(), pc.greater(processed["n_tokens"], 0))
    )
    chunks = ok["chunk_input_ids"].combine_chunks()
    n_chunks = pc.list_value_length(chunks).to_numpy(zero_copy_only=False).astype(np.int32)
    owner = np.repeat(np.arange(ok.num_rows), n_chunks)
    input_ids = pc.list_flatten(chunks)
    lengths = pc.list_value_length(input_ids).to_numpy(zero_copy_only=False)
    mask_values = pa.array(np.ones(int(lengths.sum()), dtype=np.int8))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    starts = np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
    chunk_index = (np.arange(len(owner)) - starts).astype(np.int32)
    columns = {
        "essay_id": ok["essay_id"].take(pa.array(owner)),
        "chunk_index": pa.array(chunk_index, pa.int32()),
        "n_chunks": pa.array(np.repeat(n_chunks, n_chunks), pa.int32()),
        "input_ids": input_ids.cast(pa.list_(pa.int32())),
        "attention_mask": pa.ListArray.from_arrays(offsets, mask_values),
    }
    for name in label_columns:
        columns[name] = ok[name].take(pa.array(owner))
    return pa.table(columns)


def load_features(features_path: Path, essay_ids: Sequence[Any]) -> pa.Table:
    """Read an ``extract`` output for ``--with-features`` and check, before any work, that
    it covers exactly the input's essay ids. Its ``error`` becomes ``features_error``."""
    try:
        features = pq.read_table(features_path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{features_path}: cannot read features Parquet: {exc}") from None
    if "essay_id" not in features.column_names:
        raise InputError(f"{features_path}: no essay_id column")
    have = set(features["essay_id"].to_pylist())
    want = set(essay_ids)
    not_in_features = sorted(want - have, key=str)
    not_in_input = sorted(have - want, key=str)
    if not_in_features or not_in_input:
        raise InputError(
            f"--with-features {features_path}: ids differ from the input: "
            f"{len(not_in_features)} input id(s) without features {not_in_features[:20]}, "
            f"{len(not_in_input)} feature id(s) not in the input {not_in_input[:20]}"
        )
    return features.rename_columns(
        ["features_error" if n == "error" else n for n in features.column_names]
    )


def join_features(chunks: pa.Table, features: pa.Table) -> pa.Table:
    """Add the columns of a :func:`load_features` table to every chunk row, by ``essay_id``."""
    clash = set(features.column_names) & set(chunks.column_names) - {"essay_id"}
    if clash:
        raise InputError(f"--with-features: columns {sorted(clash)} exist on both sides")
    position = {v: i for i, v in enumerate(features["essay_id"].to_pylist())}
    rows = pa.array([position[v] for v in chunks["essay_id"].to_pylist()], pa.int64())
    for name in features.column_names:
        if name != "essay_id":
            chunks = chunks.append_column(name, features[name].take(rows))
    return chunks


def coverage_report(
    processed: pa.Table,
    chunks_per_split: dict[str, int],
    config: Config,
    versions: dict[str, Any],
) -> dict[str, Any]:
    """The numbers behind the decision to chunk rather than truncate."""
    training = config.training
    specials = int(versions["special_tokens_per_chunk"])
    window = training.max_length - specials
    n_tokens = processed["n_tokens"].to_pylist()
    errors = processed["error"].to_pylist()
    ids = processed["essay_id"].to_pylist()
    chunked = [n for n, e in zip(n_tokens, errors, strict=True) if e is None and n]
    counts = [len(c) for c in processed["chunk_input_ids"].to_pylist() if c]
    no_chunks = [
        {"essay_id": i, "reason": e if e is not None else "text has no tokens"}
        for i, n, e in zip(ids, n_tokens, errors, strict=True)
        if e is not None or not n
    ]
    lost = [max(0, n - window) for n in chunked]
    return {
        "tokenizer": versions.get("tokenizer"),
        "tokenizer_path": versions.get("tokenizer_path"),
        "tokenizer_class": versions.get("tokenizer_class"),
        "transformers_version": versions.get("transformers"),
        "max_length": training.max_length,
        "overlap": training.overlap,
        "special_tokens_per_chunk": specials,
        "content_tokens_per_chunk": window,
        "counts": {
            "essays": processed.num_rows,
            "essays_with_chunks": len(chunked),
            "essays_without_chunks": len(no_chunks),
            "chunks": int(sum(counts)),
            "tokens": int(sum(chunked)),
        },
        # over the essays that produced chunks
        "percent_longer_than_max_length": round(100 * sum(1 for n in lost if n) / len(chunked), 4)
        if chunked
        else 0.0,
        "mean_tokens_lost_by_truncation": round(float(np.mean(lost)), 4) if lost else 0.0,
        "chunks_per_essay": {
            "mean": round(float(np.mean(counts)), 4) if counts else 0.0,
            "p95": round(float(np.percentile(counts, 95)), 4) if counts else 0.0,
        },
        "chunks_per_split": chunks_per_split,
        "no_chunks": no_chunks,
    }


def _split_folder(value: Any) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)).strip("._") or "split"
    return name


def write_dataset(
    chunks: pa.Table, output_dir: Path, split_column: str | None, rows_per_shard: int
) -> tuple[list[Path], dict[str | None, int]]:
    """Parquet shards in ``output_dir``: one folder per split value, or ``train/`` without a
    split column (so ``datasets.load_dataset("parquet", data_dir=...)`` never mistakes
    ``coverage.json`` for data)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stale = list(output_dir.rglob("*.parquet"))
    if stale:
        raise InputError(
            f"{output_dir} already holds Parquet files ({stale[0]} …): use a new folder"
        )
    groups: dict[str | None, pa.Table] = {}
    if split_column:
        for value in dict.fromkeys(chunks[split_column].to_pylist()):
            scalar = pa.scalar(value, chunks.schema.field(split_column).type)
            groups[value] = chunks.filter(pc.equal(chunks[split_column], scalar))
    else:
        groups[None] = chunks
    files: list[Path] = []
    for value, table in groups.items():
        folder = output_dir / (_split_folder(value) if split_column else DEFAULT_SPLIT)
        folder.mkdir(parents=True, exist_ok=True)
        for shard, start in enumerate(range(0, max(table.num_rows, 1), rows_per_shard)):
            path = folder / f"part-{shard:05d}.parquet"
            pq.write_table(table.slice(start, rows_per_shard), path)
            files.append(path)
    return files, {value: table.num_rows for value, table in groups.items()}


def finish(
    processed: pa.Table,
    config: Config,
    versions: dict[str, Any],
    *,
    output_dir: Path,
    label_columns: Sequence[str],
    split_column: str | None,
    features: pa.Table | None,
) -> TrainingDataResult:
    """Explode, join the features, write shards and coverage.json."""
    output_dir = Path(output_dir)
    extra = [*label_columns, *([split_column] if split_column else [])]
    chunks = explode_chunks(processed, extra)
    if features is not None:
        chunks = join_features(chunks, features)
    files, per_split = write_dataset(
        chunks, output_dir, split_column, config.training.rows_per_shard
    )
    folders = {_split_folder(k) if split_column else DEFAULT_SPLIT: v for k, v in per_split.items()}
    coverage = coverage_report(processed, folders, config, versions)
    # For split names datasets does not recognise as train/validation/test folders:
    # load_dataset("parquet", data_files=coverage["data_files"]).
    coverage["data_files"] = {name: str(output_dir / name / "*.parquet") for name in folders}
    (output_dir / COVERAGE_FILE).write_text(json.dumps(coverage, indent=2, default=str))
    return TrainingDataResult(output_dir, coverage, files)


def prepare_training_data_local(
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
    config: Config | str | None = None,
) -> TrainingDataResult:
    """:meth:`Session.prepare_training_data` in this process, without Ray."""
    from hemma_features.config import load_config

    cfg, canonical, features = plan_run(
        data,
        load_config(config),
        tokenizer=tokenizer,
        max_length=max_length,
        overlap=overlap,
        id_column=id_column,
        text_column=text_column,
        label_columns=label_columns,
        split_column=split_column,
        with_features=with_features,
    )
    processed, versions = tokenize_in_process(canonical, cfg)
    return finish(
        processed,
        cfg,
        versions,
        output_dir=Path(output_dir),
        label_columns=label_columns,
        split_column=split_column,
        features=features,
    )
