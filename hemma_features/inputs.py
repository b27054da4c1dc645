"""Input: read any supported data into the canonical table and check it before any work.

The canonical table has ``essay_id``, ``text``, ``prompt`` and ``error``. Problems with the
input as a whole (unreadable file, missing column, duplicate ids) raise :class:`InputError`
before anything runs; problems with one row (empty, whitespace-only, oversize or non-string
text) set that row's ``error`` and the row still comes back in the output.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

SUPPORTED_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".ndjson")
CANONICAL_COLUMNS = ("essay_id", "text", "prompt", "error")


class InputError(ValueError):
    """The input cannot be used at all; nothing was computed."""


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """Read a .parquet, .csv, .tsv or .jsonl file, with a clear error when that fails."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"{file}: unsupported file type {suffix!r}; use one of {SUPPORTED_SUFFIXES}"
        )
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    try:
        if suffix == ".parquet":
            return pq.read_table(file)
        if suffix in (".csv", ".tsv"):
            tsv = suffix == ".tsv"
            table = pacsv.read_csv(
                file,
                parse_options=pacsv.ParseOptions(
                    delimiter="\t" if tsv else ",",
                    # TSV files such as ASAP's carry stray quotes inside essays, unescaped.
                    quote_char=False if tsv else '"',
                    newlines_in_values=not tsv,
                ),
                read_options=pacsv.ReadOptions(block_size=1 << 26),
            )
            # Arrow reads a column holding invalid UTF-8 as binary instead of failing.
            binary = [f.name for f in table.schema if pa.types.is_binary(f.type)]
            if binary:
                raise InputError(f"{file}: not valid UTF-8 text (in column(s) {binary})")
            return table
        return pajson.read_json(file, read_options=pajson.ReadOptions(block_size=1 << 26))
    except (pa.ArrowInvalid, OSError) as exc:
        message = str(exc)
        if "UTF8" in message or "utf-8" in message.lower():
            raise InputError(f"{file}: not valid UTF-8 text ({message.splitlines()[0]})") from None
        raise InputError(
            f"{file}: cannot read it as {suffix[1:]}: {message.splitlines()[0]}"
        ) from None


def _columns_of(data: Any) -> tuple[dict[str, list[Any]], dict[str, pa.DataType]]:
    """Column name -> Python values for each supported container, plus Arrow types if known."""
    if isinstance(data, (str, os.PathLike)):
        data = read_table(data)
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        return {n: data[n].to_pylist() for n in data.column_names}, {
            f.name: f.type for f in data.schema
        }
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        frame = data.reset_index(drop=True)
        return {str(c): _from_pandas(frame[c].tolist()) for c in frame.columns}, {}
    if isinstance(data, Sequence) and not isinstance(data, (bytes, str)):
        names: dict[str, None] = {}
        for i, row in enumerate(data):
            if not isinstance(row, Mapping):
                raise InputError(f"row {i}: expected a mapping (dict), got {type(row).__name__}")
            names.update(dict.fromkeys(row))
        return {n: [row.get(n) for row in data] for n in names}, {}
    raise InputError(
        f"unsupported input {type(data).__name__}: pass a pyarrow.Table, a pandas DataFrame, "
        f"a list of dicts or a path ending in {SUPPORTED_SUFFIXES}"
    )


def _from_pandas(values: list[Any]) -> list[Any]:
    # pandas marks missing values with NaN / NA / NaT; Arrow and we mean None.
    import math

    def missing(v: Any) -> bool:
        return (
            v is None
            or (isinstance(v, float) and math.isnan(v))
            or type(v).__name__
            in (
                "NAType",
                "NaTType",
            )
        )

    return [None if missing(v) else v for v in values]


def text_problem(value: Any, max_chars: int, what: str = "text") -> str | None:
    """Why a row's text cannot be processed, or ``None`` when it is fine."""
    if value is None:
        return f"{what} is missing (null)"
    if not isinstance(value, str):
        return f"{what} is {type(value).__name__}, expected a string"
    if not value:
        return f"{what} is empty"
    if not value.strip():
        return f"{what} is whitespace-only"
    if len(value) > max_chars:
        return (
            f"{what} has {len(value):,} characters, more than pipeline.max_text_chars={max_chars:,}"
        )
    return None


def prepare_input(
    data: Any,
    *,
    text_column: str = "text",
    prompt_column: str | None = "prompt",
    id_column: str = "essay_id",
    prompt: str | None = None,
    max_text_chars: int = 100_000,
    extra_columns: Sequence[str] = (),
) -> pa.Table:
    """The canonical table (``essay_id``, ``text``, ``prompt``, ``error``) for ``data``.

    ``prompt`` gives one prompt for every row and wins over ``prompt_column``; a missing
    prompt column means no prompt (the prompt features come back null). ``extra_columns``
    (labels, a split) are carried along unchanged after the canonical ones.
    """
    columns, types = _columns_of(data)
    available = list(columns)
    roles = [("id", id_column), ("text", text_column)]
    roles += [("requested", name) for name in extra_columns]
    for role, name in roles:
        if name not in columns:
            raise InputError(f"{role} column {name!r} not found; the input has columns {available}")
    ids = columns[id_column]
    n_rows = len(ids)
    missing_ids = [i for i, v in enumerate(ids) if v is None]
    if missing_ids:
        raise InputError(f"{len(missing_ids)} row(s) have no {id_column}: rows {missing_ids[:20]}")
    duplicates = sorted((v for v, n in Counter(ids).items() if n > 1), key=str)
    if duplicates:
        raise InputError(
            f"{len(duplicates)} duplicate {id_column} value(s): {duplicates[:20]}"
            + (" …" if len(duplicates) > 20 else "")
        )

    errors: list[str | None] = [None] * n_rows
    texts: list[str | None] = []
    for i, value in enumerate(columns[text_column]):
        problem = text_problem(value, max_text_chars)
        errors[i] = problem
        texts.append(value if isinstance(value, str) and problem is None else None)

    prompts: list[str | None]
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("prompt must be a non-empty string")
        prompts = [prompt] * n_rows
    elif prompt_column and prompt_column in columns:
        prompts = []
        for i, value in enumerate(columns[prompt_column]):
            if value is not None and not isinstance(value, str):
                errors[i] = errors[i] or f"prompt is {type(value).__name__}, expected a string"
                value = None
            prompts.append(value if value and value.strip() else None)
    else:
        prompts = [None] * n_rows

    id_type = types.get(id_column)
    try:
        id_array = pa.array(ids, type=id_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise InputError(
            f"{id_column} values must all be of one type (e.g. all int or all str)"
        ) from None
    table = pa.table(
        {
            "essay_id": id_array,
            "text": pa.array(texts, type=pa.string()),
            "prompt": pa.array(prompts, type=pa.string()),
            "error": pa.array(errors, type=pa.string()),
        }
    )
    for name in extra_columns:
        if name in CANONICAL_COLUMNS:
            raise InputError(f"column {name!r} clashes with a column of the output")
        try:
            table = table.append_column(name, pa.array(columns[name], type=types.get(name)))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise InputError(f"column {name!r} mixes value types") from None
    return table
